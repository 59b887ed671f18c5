/**
 * Decoding the persona: a linear softmax probe from the residual stream to the posterior over archetypes.
 *
 * Training data (default, `source: 'chains'`): persona chains from the held-out pools of names and contexts, like
 * the evaluation probes but with another seed: a new character drawn from the world's prior (its subject drawn
 * like the inference probes'), scenes in distinct domains showing its behaviour, then the lead of one more scene.
 * Every scene's lead end is a training row (0..5 earlier scenes as evidence), read at the lead's last token: the
 * same kind of position the evaluation reads, one row per scene of one forward pass (2000 chains: 12000 rows). The target is the exact
 * Bayesian posterior over archetypes given the earlier scenes, under the subject's kind prior. Alternatively
 * ('items') the last prompt token of one-target persona items, or ('documents') every scene-lead end of
 * corpus-style documents.
 *
 * Features (default): the residual streams of all layers at the position, concatenated, standardised and then
 * whitened with a little shrinkage (the evidence sits in low-variance directions that per-feature scaling leaves
 * ill-conditioned: a fit that stops early, as a fixed number of Adam steps does, barely reads them). The
 * logits are log prior(archetype | the subject's kind) + W x + b: the prior is an offset, so the probe learns only
 * the likelihood ratio the evidence gives (posterior = prior x likelihood), it returns the prior exactly when it
 * reads nothing, and archetypes of the other kind get probability 0. W and b minimise soft-label cross-entropy +
 * L2 / 2 |W|^2 (convex; L-BFGS to convergence), with the L2 strength chosen from a small grid by KL on a held-out
 * fifth of the characters, then refitted on every row.
 *
 * Agreement is then measured on in-context probes (held-out names and contexts, k = 0..5 earlier scenes of a new
 * character, read at the last prompt token) against the Bayesian posterior of each probe.
 */
import {
  fitPreparedSoftmax,
  prepareFeatures,
  transformFeatures,
  type PreparedFeatures,
  type SoftmaxFit,
} from '../measurement/softmax-regression.ts';
import { mean, pearson } from '../measurement/stats.ts';
import { archetypePrior, posterior, type Observation } from '../world/bayes.ts';
import {
  bindScene,
  compileWorld,
  drawBehaviour,
  sampleCharacter,
  sceneContinuation,
  sceneLead,
} from '../world/generator.ts';
import { inferenceProbes, END_OF_TEXT, type EvalItem } from '../world/index.ts';
import { createRng } from '../world/random.ts';
import { makeActor, plainScene, sceneFormat, type Subject } from '../world/scenes.ts';
import type { Kind, World } from '../world/schema.ts';
import { activationsAt, checkLayer, encodePrompt, layerHook, type ModelHandle } from './activations.ts';
import { documentLeads, personaItems, type DocumentLeads, type Pool } from './contexts.ts';
import { archetypeDocuments, leadActivations } from './space.ts';

export { DEFAULT_SHRINK, fitSoftmaxProbe, type FitOptions } from '../measurement/softmax-regression.ts';

/** The L2 grid tried by default (on whitened features; 3e-2 alone with the unwhitened Adam solver). */
export const DEFAULT_PROBE_L2 = [1e-1, 1e-2, 1e-3, 1e-4];

export interface SoftmaxProbe {
  /** The deepest layer read (the only one unless layers are concatenated). */
  layer: number;
  hook: string;
  /** Layers whose residual streams are concatenated, in this order, into a feature row (default [layer]). */
  layers?: number[];
  /** Their hooks (default [hook]). */
  hooks?: string[];
  archetypes: string[];
  /** Feature width: the model's dim x layers.length. */
  dim: number;
  /** Feature standardisation. */
  mean: Float32Array;
  std: Float32Array;
  /** [classes, dim], on standardised features (any whitening folded in). */
  weights: Float32Array;
  bias: Float32Array;
  /** Whether the log prior of the subject's kind is added to the logits (probePredict then needs it; default false). */
  priorOffset?: boolean;
}

export function archetypePosterior(world: World, evidence: readonly Observation[], kind: Kind): number[] {
  return posterior(world, evidence, { kind }).archetypes.map((a) => a.posterior);
}

const kindOf = (subject: Subject): Kind => (subject === 'human' ? 'human' : 'ai');

/** log prior over archetypes for each kind (-Infinity for the other kind's archetypes). */
function logPriors(world: World): Record<Kind, number[]> {
  const lp = (k: Kind) => archetypePrior(world, k).map((p) => (p > 0 ? Math.log(p) : -Infinity));
  return { human: lp('human'), ai: lp('ai') };
}

/** Row-major [rows, classes] log priors of the given kinds. */
function offsetRows(world: World, kinds: readonly Kind[]): Float32Array {
  const lp = logPriors(world);
  const C = world.archetypes.length;
  const out = new Float32Array(kinds.length * C);
  kinds.forEach((k, i) => out.set(lp[k], i * C));
  return out;
}

/**
 * Probe posteriors for feature rows [n, dim] (the probe's layers concatenated in order). A probe with a prior
 * offset needs each row's log prior (`logPriors`, [n, classes] row-major, -Infinity allowed).
 */
export function probePredict(
  probe: SoftmaxProbe,
  rows: Float32Array,
  logPriors?: Float32Array | null,
): Float32Array {
  const { dim } = probe;
  const C = probe.archetypes.length;
  if (rows.length % dim !== 0) throw new Error(`probe: activations do not split into rows of ${dim}`);
  const n = rows.length / dim;
  if (probe.priorOffset && (!logPriors || logPriors.length !== n * C))
    throw new Error(`probe: a probe with a prior offset needs ${n} x ${C} log priors`);
  const off = probe.priorOffset ? logPriors! : null;
  const out = new Float32Array(n * C);
  const z = new Float64Array(dim);
  const s = new Float64Array(C);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) z[j] = (rows[i * dim + j] - probe.mean[j]) / probe.std[j];
    let max = -Infinity;
    for (let c = 0; c < C; c++) {
      let v = probe.bias[c] + (off ? off[i * C + c] : 0);
      if (v !== -Infinity) for (let j = 0; j < dim; j++) v += probe.weights[c * dim + j] * z[j];
      s[c] = v;
      if (v > max) max = v;
    }
    let tot = 0;
    for (let c = 0; c < C; c++) tot += s[c] = Math.exp(s[c] - max);
    for (let c = 0; c < C; c++) out[i * C + c] = s[c] / tot;
  }
  return out;
}

/** Concatenates per-hook activation rows [n, modelDim] into feature rows [n, modelDim x hooks]. */
function concatRows(acts: Map<string, Float32Array>, hooks: readonly string[], n: number, modelDim: number) {
  if (hooks.length === 1) return acts.get(hooks[0])!;
  const D = modelDim * hooks.length;
  const out = new Float32Array(n * D);
  hooks.forEach((h, q) => {
    const a = acts.get(h)!;
    for (let i = 0; i < n; i++) out.set(a.subarray(i * modelDim, (i + 1) * modelDim), i * D + q * modelDim);
  });
  return out;
}

/** Probe posteriors for prompts (read at the last token, separator in front), e.g. the world's inference probes. */
export function probeItems(
  handle: ModelHandle,
  world: World,
  probe: SoftmaxProbe,
  items: readonly { prompt: string; subject: Subject }[],
): Float32Array {
  const hooks = probe.hooks ?? [probe.hook];
  const seqs = items.map((it) => encodePrompt(handle, it.prompt));
  const acts = activationsAt(
    handle.model,
    seqs,
    seqs.map(() => [-1]),
    hooks,
  );
  const X = concatRows(acts, hooks, items.length, handle.model.config.dim);
  return probePredict(
    probe,
    X,
    probe.priorOffset
      ? offsetRows(
          world,
          items.map((it) => kindOf(it.subject)),
        )
      : null,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Agreement with Bayes

export interface Agreement {
  n: number;
  /** Mean total-variation distance between probe and Bayesian posteriors. */
  tv: number;
  /** The same for the evidence-free prior (the baseline a probe that reads nothing would reach). */
  tvPrior: number;
  /** Mean KL(Bayes || probe) in nats. */
  kl: number;
  /** Correlation over every (item, archetype) probability. */
  r: number;
  /** Correlation of the updates (posterior - prior) of probe and Bayes. */
  rUpdate: number;
  /** Share of items where both put most mass on the same archetype. */
  top1: number;
  byK: { k: number; tv: number; tvPrior: number; n: number }[];
}

export function agreement(
  pred: Float32Array,
  bayes: readonly number[][],
  priors: readonly number[][],
  ks: readonly number[],
): Agreement {
  const n = bayes.length;
  const C = bayes[0]?.length ?? 0;
  const tvs: number[] = [];
  const tvp: number[] = [];
  const kls: number[] = [];
  const xs: number[] = [];
  const ys: number[] = [];
  const ux: number[] = [];
  const uy: number[] = [];
  let top = 0;
  for (let i = 0; i < n; i++) {
    let tv = 0;
    let tp = 0;
    let kl = 0;
    let ap = 0;
    let ab = 0;
    for (let c = 0; c < C; c++) {
      const p = pred[i * C + c];
      const q = bayes[i][c];
      tv += Math.abs(p - q) / 2;
      tp += Math.abs(priors[i][c] - q) / 2;
      if (q > 0) kl += q * Math.log(q / Math.max(p, 1e-12));
      xs.push(p);
      ys.push(q);
      if (priors[i][c] > 0) {
        ux.push(p - priors[i][c]);
        uy.push(q - priors[i][c]);
      }
      if (p > pred[i * C + ap]) ap = c;
      if (q > bayes[i][ab]) ab = c;
    }
    tvs.push(tv);
    tvp.push(tp);
    kls.push(kl);
    if (ap === ab) top++;
  }
  const kset = [...new Set(ks)].sort((a, b) => a - b);
  return {
    n,
    tv: mean(tvs),
    tvPrior: mean(tvp),
    kl: mean(kls),
    r: pearson(xs, ys),
    rUpdate: pearson(ux, uy),
    top1: top / n,
    byK: kset.map((k) => {
      const idx = ks.map((x, i) => (x === k ? i : -1)).filter((i) => i >= 0);
      return { k, tv: mean(idx.map((i) => tvs[i])), tvPrior: mean(idx.map((i) => tvp[i])), n: idx.length };
    }),
  };
}

/** Agreement of a probe with Bayes on prompts with known evidence (the world's inference probes, say). */
export function itemAgreement(
  handle: ModelHandle,
  world: World,
  probe: SoftmaxProbe,
  items: readonly { prompt: string; subject: Subject; evidence: Observation[] }[],
): Agreement {
  const pred = probeItems(handle, world, probe, items);
  return agreement(
    pred,
    items.map((it) => archetypePosterior(world, it.evidence, kindOf(it.subject))),
    items.map((it) => archetypePosterior(world, [], kindOf(it.subject))),
    items.map((it) => it.evidence.length),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Training positions

/** A persona chain: a character's scenes, each lead end a training position. */
export interface PersonaChain {
  subject: Subject;
  kind: Kind;
  /** Intro line, then the scenes (every one whole except the last, which ends with its lead). */
  text: string;
  /** Per scene: the character offset in `text` where its lead ends and the character's earlier scenes. */
  leads: { end: number; domain: string; evidence: Observation[] }[];
}

/**
 * Persona chains from either pool: a new character whose subject is drawn as the inference probes draw it (the
 * kinds' shares, then the Assistant's share of AIs), its archetype and traits from the world's prior, then
 * min(domains, maxK + 1) scenes in distinct domains in random order, each showing its behaviour (with the
 * world's noise) except the last, which ends with its lead. The lead end of scene j has j earlier scenes.
 */
export function personaChains(world: World, n: number, seed: number, maxK = 5, pool: Pool = 'heldout') {
  const cw = compileWorld(world);
  const domains = world.domains.map((d) => d.name);
  const names = pool === 'train' ? world.names.train : world.names.heldout;
  const kinds = world.documents.kinds;
  const out: PersonaChain[] = [];
  for (let i = 0; i < n; i++) {
    const rng = createRng(seed, 'persona-chain', i);
    const subject: Subject = rng.bernoulli(kinds.human.share)
      ? 'human'
      : rng.bernoulli(kinds.ai.anonymousShare)
        ? 'assistant'
        : 'ai';
    const kind = kindOf(subject);
    const ch = sampleCharacter(cw, rng, kind);
    const actor = makeActor(cw, rng, subject, pool);
    const order = rng.sample(domains, Math.min(domains.length, maxK + 1));
    let text = actor.intro;
    const leads: PersonaChain['leads'] = [];
    const evidence: Observation[] = [];
    order.forEach((d, j) => {
      const last = j === order.length - 1;
      const behaviour = last ? 'good' : drawBehaviour(cw, rng, ch.traits[d], null);
      const spec = plainScene(cw, rng, d, sceneFormat(cw, rng, subject), behaviour, pool);
      const binding = bindScene(cw, rng, actor.name ?? '', names);
      text += '\n' + sceneLead(cw, spec, binding);
      leads.push({ end: text.length, domain: d, evidence: [...evidence] });
      if (!last) {
        text += sceneContinuation(cw, spec, binding);
        evidence.push({ domain: d, behaviour });
      }
    });
    out.push({ subject, kind, text, leads });
  }
  return out;
}

/** Token positions of the chains' lead ends (prefix-consistent tokenisation only, within maxTokens). */
function chainPositions(chains: readonly PersonaChain[], handle: ModelHandle) {
  const seqs: number[][] = [];
  const positions: number[][] = [];
  const rows: { chain: number; lead: PersonaChain['leads'][number] }[] = [];
  const maxTokens = handle.model.config.maxSeqLen;
  chains.forEach((ch, c) => {
    let ids = handle.tokenizer.encode(END_OF_TEXT + ch.text);
    if (ids.length > maxTokens) ids = ids.slice(0, maxTokens);
    const ps: number[] = [];
    for (const lead of ch.leads) {
      const prefix = handle.tokenizer.encode(END_OF_TEXT + ch.text.slice(0, lead.end));
      if (prefix.length > ids.length) break;
      if (!prefix.every((t, j) => ids[j] === t)) continue;
      ps.push(prefix.length - 1);
      rows.push({ chain: c, lead });
    }
    seqs.push(ids);
    positions.push(ps);
  });
  return { seqs, positions, rows };
}

// ---------------------------------------------------------------------------------------------------------------
// The probe

export interface ProbeResult {
  /** The deepest layer the chosen probe reads. */
  layer: number;
  /** The layers it reads (concatenated). */
  layers: number[];
  /** The chosen L2 strength. */
  l2: number;
  archetypes: string[];
  /** Rows of the final fit (every row when refitted, else the training rows). */
  trainRows: number;
  /**
   * Per candidate feature set (one per layer, or one for the concatenation, whose `layer` is its deepest) at its
   * chosen L2: KL and TV on the held-out rows, TV on the training rows, the TV of the mean target and of the
   * kind prior on the held-out rows.
   */
  perLayer: {
    layer: number;
    layers: number[];
    l2: number;
    valKL: number;
    valTV: number;
    trainTV: number;
    valTVBaseline: number;
    valTVPrior: number;
  }[];
  /** Every (feature set, L2) tried, with its held-out KL and TV. */
  grid: { layers: number[]; l2: number; valKL: number; valTV: number }[];
  /** Agreement with the Bayesian posterior on in-context probes, for the chosen probe. */
  agreement: Agreement;
  probe: SoftmaxProbe;
}

function leadDataset(
  world: World,
  leads: readonly DocumentLeads[],
  rows: { doc: number; lead: DocumentLeads['leads'][number] }[],
) {
  const C = world.archetypes.length;
  const Y = new Float32Array(rows.length * C);
  const cache = new Map<string, number[]>();
  rows.forEach((r, i) => {
    const kind = leads[r.doc].kind;
    const key = kind + JSON.stringify(r.lead.evidence);
    let post = cache.get(key);
    if (!post) cache.set(key, (post = archetypePosterior(world, r.lead.evidence, kind)));
    Y.set(post, i * C);
  });
  return Y;
}

/**
 * The defaults were chosen on held-out training-style rows of development models (runs/default-docwindows-s3),
 * never on the evaluation probes; scripts/probe-study.ts compares them with the earlier settings.
 */
export interface ProbeOptions {
  /**
   * Training positions: 'chains' (default) — every scene-lead end of persona chains (personaChains: a new
   * character, up to 5 earlier scenes, each lead read at its last token; one row per scene); 'items' —
   * the last prompt token of one-target persona items (contexts.ts, personaItems); 'documents' — every scene-lead
   * end of corpus-style documents.
   */
  source?: 'chains' | 'items' | 'documents';
  /** Training chains, items or documents (default 2000 chains / 600 items / 240 documents). */
  size?: number;
  /**
   * Pool of names and contexts of chains and items (default 'heldout', like the evaluation probes, with another
   * seed): the network's activations on names and contexts it never saw sit far from those on training ones,
   * and a linear readout fitted on one does not extrapolate to the other.
   */
  pool?: Pool;
  seed?: number;
  /** Layers to read (default all). */
  layers?: number[];
  /**
   * Concatenate the layers' residual streams into one feature row (default true); false fits one probe per
   * layer and keeps the layer with the lowest held-out KL.
   */
  concat?: boolean;
  /**
   * Add the log prior of the subject's kind to the logits (default true): the probe learns the likelihood ratio
   * only, returns the prior when its weights are zero, and gives the other kind's archetypes probability 0.
   * The kind is the one the prior baseline of `agreement` knows too.
   */
  priorOffset?: boolean;
  /** Whiten the standardised features (default true with L-BFGS). */
  whiten?: boolean;
  /**
   * Shrinkage of the whitening (default DEFAULT_SHRINK): whiten with covariance + shrink x identity on the
   * standardised scale. The L2 penalty on whitened weights penalises the variance of the logits; directions the
   * training rows barely span would otherwise go unpenalised (with fewer rows than features, wildly so).
   */
  shrink?: number;
  /** 'lbfgs' (default) or 'adam' (the fixed-step solver of earlier versions). */
  solver?: 'lbfgs' | 'adam';
  /**
   * L2 strength, or a grid from which the value with the lowest held-out KL is kept (default DEFAULT_PROBE_L2
   * when whitened, 3e-2 otherwise).
   */
  l2?: number | number[];
  /** Iterations per fit (L-BFGS: at most, default 300; Adam: exactly, default 250). */
  iterations?: number;
  /** Refit on every row (the held-out fifth included) with the chosen layers and L2 (default true). */
  refit?: boolean;
  evalItems?: EvalItem[];
  /** Evaluation probes per (k, domain) when evalItems is not given (default 4). */
  evalPerCell?: number;
}

/** Probe training (feature set and L2 by held-out KL) and agreement with Bayes on in-context probes. */
export function archetypeProbe(handle: ModelHandle, world: World, opts: ProbeOptions = {}): ProbeResult {
  const { model, tokenizer } = handle;
  const layers = opts.layers ?? Array.from({ length: model.config.nLayers }, (_, l) => l);
  if (layers.length === 0) throw new Error('probe: no layers to read');
  for (const l of layers) checkLayer(model, l);
  const hooks = layers.map((l) => layerHook(l));
  const C = world.archetypes.length;
  const modelDim = model.config.dim;
  const seed = opts.seed ?? 61;
  const solver = opts.solver ?? 'lbfgs';
  const whiten = opts.whiten ?? solver === 'lbfgs';
  const priorOffset = opts.priorOffset ?? true;
  const l2s = opts.l2 === undefined ? (whiten ? DEFAULT_PROBE_L2 : [3e-2]) : [opts.l2].flat();
  if (l2s.length === 0 || l2s.some((x) => !(x >= 0))) throw new Error('probe: l2 must be >= 0');
  // Larger L2 first: each fit starts from the previous one's solution.
  const grid = [...l2s].sort((a, b) => b - a);
  const source = opts.source ?? 'chains';
  let acts: Map<string, Float32Array>;
  let Y: Float32Array;
  let kinds: Kind[];
  let isVal: boolean[];
  if (source === 'documents') {
    const perArchetype = Math.max(2, Math.ceil((opts.size ?? 240) / world.archetypes.length));
    const leads = documentLeads(
      world,
      archetypeDocuments(world, perArchetype, seed),
      tokenizer,
      model.config.maxSeqLen,
    );
    const rec = leadActivations(handle, leads, hooks, 0);
    acts = rec.acts;
    Y = leadDataset(world, leads, rec.rows);
    kinds = rec.rows.map((r) => leads[r.doc].kind);
    // Split by document: every fifth document is held out for choosing the layer.
    isVal = rec.rows.map((r) => r.doc % 5 === 4);
  } else if (source === 'items') {
    const items = personaItems(world, opts.size ?? 600, seed + 1, 5, opts.pool ?? 'heldout');
    const seqs = items.map((it) => tokenizer.encode(END_OF_TEXT + it.prompt));
    acts = activationsAt(
      model,
      seqs,
      seqs.map(() => [-1]),
      hooks,
    );
    Y = new Float32Array(items.length * C);
    kinds = items.map((it) => kindOf(it.subject));
    items.forEach((it, i) => Y.set(archetypePosterior(world, it.evidence, kinds[i]), i * C));
    isVal = items.map((_, i) => i % 5 === 4);
  } else {
    const chains = personaChains(world, opts.size ?? 2000, seed + 1, 5, opts.pool ?? 'heldout');
    const pos = chainPositions(chains, handle);
    acts = activationsAt(model, pos.seqs, pos.positions, hooks);
    Y = new Float32Array(pos.rows.length * C);
    kinds = pos.rows.map((r) => chains[r.chain].kind);
    pos.rows.forEach((r, i) => Y.set(archetypePosterior(world, r.lead.evidence, kinds[i]), i * C));
    // Split by character: every fifth chain is held out.
    isVal = pos.rows.map((r) => r.chain % 5 === 4);
  }
  const rows = isVal.length;
  const trainIdx = isVal.map((v, i) => (v ? -1 : i)).filter((i) => i >= 0);
  const valIdx = isVal.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
  if (trainIdx.length === 0 || valIdx.length === 0)
    throw new Error(`probe: ${rows} rows leave no training or no held-out rows; use a larger size`);
  const pick = (src: Float32Array, width: number, idx: readonly number[]) => {
    const out = new Float32Array(idx.length * width);
    idx.forEach((i, k) => out.set(src.subarray(i * width, (i + 1) * width), k * width));
    return out;
  };
  const offsets = priorOffset ? offsetRows(world, kinds) : null;
  const yTrain = pick(Y, C, trainIdx);
  const yVal = pick(Y, C, valIdx);
  const oTrain = offsets ? pick(offsets, C, trainIdx) : null;
  const oVal = offsets ? pick(offsets, C, valIdx) : null;
  const nT = trainIdx.length;
  const nV = valIdx.length;
  // Baselines on the held-out rows: the mean training target (a probe that reads nothing, not even the kind)
  // and the kind prior (what a probe with the prior offset and zero weights returns).
  const lp = logPriors(world);
  const meanTarget = new Float64Array(C);
  for (let i = 0; i < nT; i++) for (let c = 0; c < C; c++) meanTarget[c] += yTrain[i * C + c] / nT;
  let baseTV = 0;
  let priorTV = 0;
  valIdx.forEach((r, i) => {
    for (let c = 0; c < C; c++) {
      baseTV += Math.abs(meanTarget[c] - yVal[i * C + c]) / 2;
      priorTV += Math.abs(Math.exp(lp[kinds[r]][c]) - yVal[i * C + c]) / 2;
    }
  });
  baseTV /= nV;
  priorTV /= nV;
  const scoreRows = (pred: Float32Array, target: Float32Array, n: number) => {
    let kl = 0;
    let tv = 0;
    for (let i = 0; i < n * C; i++) {
      const q = target[i];
      const p = pred[i];
      if (q > 0) kl += q * Math.log(q / Math.max(p, 1e-12));
      tv += Math.abs(p - q) / 2;
    }
    return { kl: kl / n, tv: tv / n };
  };
  const makeProbe = (ls: number[], prep: PreparedFeatures, fit: SoftmaxFit): SoftmaxProbe => ({
    layer: Math.max(...ls),
    hook: layerHook(Math.max(...ls)),
    layers: ls,
    hooks: ls.map((l) => layerHook(l)),
    archetypes: world.archetypes.map((a) => a.name),
    dim: prep.dim,
    mean: prep.mean,
    std: prep.std,
    weights: fit.weights,
    bias: fit.bias,
    priorOffset,
  });
  const featureSets = (opts.concat ?? true) ? [layers] : layers.map((l) => [l]);
  const tried: ProbeResult['grid'] = [];
  const candidates = featureSets.map((ls) => {
    const X = concatRows(
      acts,
      ls.map((l) => layerHook(l)),
      rows,
      modelDim,
    );
    const width = modelDim * ls.length;
    const xTrain = pick(X, width, trainIdx);
    const xVal = pick(X, width, valIdx);
    const prep = prepareFeatures(xTrain, nT, width, whiten, opts.shrink);
    const F = transformFeatures(prep, xTrain, nT);
    let best: { l2: number; fit: SoftmaxFit; probe: SoftmaxProbe; kl: number; tv: number } | null = null;
    let init: Float64Array | undefined;
    for (const l2 of grid) {
      const fit = fitPreparedSoftmax(prep, F, yTrain, nT, C, {
        l2,
        iterations: opts.iterations,
        solver,
        offset: oTrain,
        init,
      });
      init = fit.theta;
      const probe = makeProbe(ls, prep, fit);
      const s = scoreRows(probePredict(probe, xVal, oVal), yVal, nV);
      tried.push({ layers: ls, l2, valKL: s.kl, valTV: s.tv });
      if (!best || s.kl < best.kl) best = { l2, fit, probe, kl: s.kl, tv: s.tv };
    }
    const b = best!;
    return {
      ls,
      X,
      width,
      best: b,
      row: {
        layer: b.probe.layer,
        layers: ls,
        l2: b.l2,
        valKL: b.kl,
        valTV: b.tv,
        trainTV: scoreRows(probePredict(b.probe, xTrain, oTrain), yTrain, nT).tv,
        valTVBaseline: baseTV,
        valTVPrior: priorTV,
      },
    };
  });
  let chosen = candidates[0];
  for (const c of candidates) if (c.best.kl < chosen.best.kl) chosen = c;
  let probe = chosen.best.probe;
  let trainRows = nT;
  if (opts.refit ?? true) {
    const prep = prepareFeatures(chosen.X, rows, chosen.width, whiten, opts.shrink);
    const fit = fitPreparedSoftmax(prep, transformFeatures(prep, chosen.X, rows), Y, rows, C, {
      l2: chosen.best.l2,
      iterations: opts.iterations,
      solver,
      offset: offsets,
    });
    probe = makeProbe(chosen.ls, prep, fit);
    trainRows = rows;
  }
  const items =
    opts.evalItems ??
    inferenceProbes(world, { seed, ks: [0, 1, 2, 3, 4, 5], inferencePerCell: opts.evalPerCell ?? 4 });
  return {
    layer: probe.layer,
    layers: chosen.ls,
    l2: chosen.best.l2,
    archetypes: probe.archetypes,
    trainRows,
    perLayer: candidates.map((c) => c.row),
    grid: tried,
    agreement: itemAgreement(handle, world, probe, items),
    probe,
  };
}
