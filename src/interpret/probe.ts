/**
 * Decoding the persona: a linear softmax probe from the residual stream to the posterior over archetypes.
 *
 * Training data (default): in-context persona items from the training pools (a new character drawn from the
 * world's prior, 0..5 earlier scenes, a target lead), read at the last prompt token; the target is the exact
 * Bayesian posterior over archetypes given the earlier scenes (under the subject's kind prior). Alternatively
 * every scene-lead end of corpus-style documents, with the posterior given the document's earlier scenes. The probe is fitted by soft-label
 * cross-entropy with L2 on standardised features, per layer; the layer with the lowest held-out KL wins.
 * Agreement is then measured on in-context probes (held-out names and contexts, k = 0..5 earlier scenes of a new
 * character, read at the last prompt token) against the Bayesian posterior of each probe.
 */
import { mean, pearson } from '../measurement/stats.ts';
import { posterior, type Observation } from '../world/bayes.ts';
import { inferenceProbes, END_OF_TEXT, type EvalItem } from '../world/index.ts';
import type { Kind, World } from '../world/schema.ts';
import { activationsAt, checkLayer, layerHook, type ModelHandle } from './activations.ts';
import { documentLeads, personaItems, type DocumentLeads, type Pool } from './contexts.ts';
import { archetypeDocuments, leadActivations } from './space.ts';

export interface SoftmaxProbe {
  layer: number;
  hook: string;
  archetypes: string[];
  dim: number;
  /** Feature standardisation. */
  mean: Float32Array;
  std: Float32Array;
  /** [classes, dim] */
  weights: Float32Array;
  bias: Float32Array;
}

export function archetypePosterior(world: World, evidence: readonly Observation[], kind: Kind): number[] {
  return posterior(world, evidence, { kind }).archetypes.map((a) => a.posterior);
}

/**
 * Fits softmax regression with soft targets: X [n, dim] (standardised here), Y [n, classes] rows summing to 1.
 * Full-batch Adam.
 */
export function fitSoftmaxProbe(
  X: Float32Array,
  Y: Float32Array,
  n: number,
  dim: number,
  classes: number,
  opts: { l2?: number; iterations?: number; lr?: number } = {},
): { mean: Float32Array; std: Float32Array; weights: Float32Array; bias: Float32Array; loss: number } {
  if (X.length !== n * dim || Y.length !== n * classes)
    throw new Error('fitSoftmaxProbe: X or Y does not match n x dim / n x classes');
  if (n === 0) throw new Error('fitSoftmaxProbe: no training rows');
  const l2 = opts.l2 ?? 3e-2;
  const iters = opts.iterations ?? 250;
  const lr = opts.lr ?? 0.05;
  const mu = new Float32Array(dim);
  const sd = new Float32Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mu[j] += X[i * dim + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) sd[j] += (X[i * dim + j] - mu[j]) ** 2 / n;
  for (let j = 0; j < dim; j++) sd[j] = Math.sqrt(sd[j]) + 1e-6;
  const Z = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) Z[i * dim + j] = (X[i * dim + j] - mu[j]) / sd[j];
  const W = new Float32Array(classes * dim);
  const b = new Float32Array(classes);
  // Start the bias at the log of the mean target: the probe begins at the average posterior.
  for (let c = 0; c < classes; c++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += Y[i * classes + c];
    b[c] = Math.log(s / n + 1e-6);
  }
  const mW = new Float32Array(W.length);
  const vW = new Float32Array(W.length);
  const mB = new Float32Array(classes);
  const vB = new Float32Array(classes);
  const gW = new Float32Array(W.length);
  const gB = new Float32Array(classes);
  const p = new Float64Array(classes);
  let loss = NaN;
  for (let it = 1; it <= iters; it++) {
    gW.fill(0);
    gB.fill(0);
    loss = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let s = b[c];
        for (let j = 0; j < dim; j++) s += W[c * dim + j] * Z[i * dim + j];
        p[c] = s;
        if (s > max) max = s;
      }
      let z = 0;
      for (let c = 0; c < classes; c++) z += p[c] = Math.exp(p[c] - max);
      for (let c = 0; c < classes; c++) {
        p[c] /= z;
        const y = Y[i * classes + c];
        if (y > 0) loss -= (y * Math.log(p[c] + 1e-12)) / n;
        const g = (p[c] - y) / n;
        gB[c] += g;
        for (let j = 0; j < dim; j++) gW[c * dim + j] += g * Z[i * dim + j];
      }
    }
    for (let k = 0; k < W.length; k++) gW[k] += l2 * W[k];
    const b1 = 0.9;
    const b2 = 0.999;
    const c1 = 1 - b1 ** it;
    const c2 = 1 - b2 ** it;
    for (let k = 0; k < W.length; k++) {
      mW[k] = b1 * mW[k] + (1 - b1) * gW[k];
      vW[k] = b2 * vW[k] + (1 - b2) * gW[k] * gW[k];
      W[k] -= (lr * (mW[k] / c1)) / (Math.sqrt(vW[k] / c2) + 1e-8);
    }
    for (let c = 0; c < classes; c++) {
      mB[c] = b1 * mB[c] + (1 - b1) * gB[c];
      vB[c] = b2 * vB[c] + (1 - b2) * gB[c] * gB[c];
      b[c] -= (lr * (mB[c] / c1)) / (Math.sqrt(vB[c] / c2) + 1e-8);
    }
  }
  return { mean: mu, std: sd, weights: W, bias: b, loss };
}

/** Probe posteriors for rows [n, dim]. */
export function probePredict(probe: SoftmaxProbe, rows: Float32Array): Float32Array {
  const { dim } = probe;
  const C = probe.archetypes.length;
  if (rows.length % dim !== 0) throw new Error(`probe: activations do not split into rows of ${dim}`);
  const n = rows.length / dim;
  const out = new Float32Array(n * C);
  const z = new Float64Array(dim);
  const s = new Float64Array(C);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) z[j] = (rows[i * dim + j] - probe.mean[j]) / probe.std[j];
    let max = -Infinity;
    for (let c = 0; c < C; c++) {
      let v = probe.bias[c];
      for (let j = 0; j < dim; j++) v += probe.weights[c * dim + j] * z[j];
      s[c] = v;
      if (v > max) max = v;
    }
    let tot = 0;
    for (let c = 0; c < C; c++) tot += s[c] = Math.exp(s[c] - max);
    for (let c = 0; c < C; c++) out[i * C + c] = s[c] / tot;
  }
  return out;
}

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

export interface ProbeResult {
  layer: number;
  archetypes: string[];
  trainRows: number;
  /** Per layer: KL and TV on held-out documents, TV on the training rows, and the TV of the mean target. */
  perLayer: { layer: number; valKL: number; valTV: number; trainTV: number; valTVBaseline: number }[];
  /** Agreement with the Bayesian posterior on in-context probes, at the chosen layer. */
  agreement: Agreement;
  probe: SoftmaxProbe;
}

function trainTVOf(probe: SoftmaxProbe, X: Float32Array, Y: Float32Array, n: number, C: number): number {
  const pred = probePredict(probe, X);
  let tv = 0;
  for (let i = 0; i < n * C; i++) tv += Math.abs(pred[i] - Y[i]) / 2;
  return tv / Math.max(1, n);
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

export interface ProbeOptions {
  /**
   * Training positions: 'items' (default) — the last prompt token of in-context persona items from the
   * training pools (contexts.ts, personaItems), the same kind of position the evaluation reads; 'documents' —
   * every scene-lead end of corpus-style documents.
   */
  source?: 'items' | 'documents';
  /** Training items or documents (default 600 items / 240 documents). */
  size?: number;
  /**
   * Pool of names and contexts of the training items (default 'heldout', like the evaluation probes, with
   * another seed): the network's activations on names and contexts it never saw sit far from those on training
   * ones, and a linear readout fitted on one does not extrapolate to the other.
   */
  pool?: Pool;
  seed?: number;
  layers?: number[];
  evalItems?: EvalItem[];
  /** Evaluation probes per (k, domain) when evalItems is not given (default 4). */
  evalPerCell?: number;
  l2?: number;
  iterations?: number;
}

/** Probe training (per layer, layer by held-out KL) and agreement with Bayes on in-context probes. */
export function archetypeProbe(handle: ModelHandle, world: World, opts: ProbeOptions = {}): ProbeResult {
  const { model, tokenizer } = handle;
  const layers = opts.layers ?? Array.from({ length: model.config.nLayers }, (_, l) => l);
  for (const l of layers) checkLayer(model, l);
  const hooks = layers.map((l) => layerHook(l));
  const C = world.archetypes.length;
  const dim = model.config.dim;
  const seed = opts.seed ?? 61;
  let acts: Map<string, Float32Array>;
  let Y: Float32Array;
  let isVal: boolean[];
  if ((opts.source ?? 'items') === 'documents') {
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
    // Split by document: every fifth document is held out for choosing the layer.
    isVal = rec.rows.map((r) => r.doc % 5 === 4);
  } else {
    const items = personaItems(world, opts.size ?? 600, seed + 1, 5, opts.pool ?? 'heldout');
    const seqs = items.map((it) => tokenizer.encode(END_OF_TEXT + it.prompt));
    acts = activationsAt(
      model,
      seqs,
      seqs.map(() => [-1]),
      hooks,
    );
    Y = new Float32Array(items.length * C);
    items.forEach((it, i) =>
      Y.set(archetypePosterior(world, it.evidence, it.subject === 'human' ? 'human' : 'ai'), i * C),
    );
    isVal = items.map((_, i) => i % 5 === 4);
  }
  const rows = isVal.length;
  const pick = (src: Float32Array, width: number, val: boolean) => {
    const idx = Array.from({ length: rows }, (_, i) => i).filter((i) => isVal[i] === val);
    const out = new Float32Array(idx.length * width);
    idx.forEach((i, k) => out.set(src.subarray(i * width, (i + 1) * width), k * width));
    return { data: out, n: idx.length };
  };
  const yTrain = pick(Y, C, false);
  const yVal = pick(Y, C, true);
  // Baseline: the mean training target for every row (a probe that reads nothing).
  const meanTarget = new Float64Array(C);
  for (let i = 0; i < yTrain.n; i++)
    for (let c = 0; c < C; c++) meanTarget[c] += yTrain.data[i * C + c] / yTrain.n;
  let baseTV = 0;
  for (let i = 0; i < yVal.n; i++)
    for (let c = 0; c < C; c++) baseTV += Math.abs(meanTarget[c] - yVal.data[i * C + c]) / 2;
  baseTV /= Math.max(1, yVal.n);
  const fits = layers.map((layer, li) => {
    const xTrain = pick(acts.get(hooks[li])!, dim, false);
    const xVal = pick(acts.get(hooks[li])!, dim, true);
    const fit = fitSoftmaxProbe(xTrain.data, yTrain.data, xTrain.n, dim, C, {
      l2: opts.l2,
      iterations: opts.iterations,
    });
    const probe: SoftmaxProbe = {
      layer,
      hook: hooks[li],
      archetypes: world.archetypes.map((a) => a.name),
      dim,
      mean: fit.mean,
      std: fit.std,
      weights: fit.weights,
      bias: fit.bias,
    };
    const pred = probePredict(probe, xVal.data);
    let kl = 0;
    let tv = 0;
    for (let i = 0; i < xVal.n; i++) {
      for (let c = 0; c < C; c++) {
        const q = yVal.data[i * C + c];
        const p = pred[i * C + c];
        if (q > 0) kl += q * Math.log(q / Math.max(p, 1e-12));
        tv += Math.abs(p - q) / 2;
      }
    }
    return {
      probe,
      valKL: kl / Math.max(1, xVal.n),
      valTV: tv / Math.max(1, xVal.n),
      trainTV: trainTVOf(probe, xTrain.data, yTrain.data, xTrain.n, C),
    };
  });
  let best = 0;
  fits.forEach((f, i) => {
    if (f.valKL < fits[best].valKL) best = i;
  });
  const probe = fits[best].probe;
  const items =
    opts.evalItems ??
    inferenceProbes(world, { seed, ks: [0, 1, 2, 3, 4, 5], inferencePerCell: opts.evalPerCell ?? 4 });
  const seqs = items.map((it) => tokenizer.encode(END_OF_TEXT + it.prompt));
  const evalActs = activationsAt(
    model,
    seqs,
    seqs.map(() => [-1]),
    [probe.hook],
  ).get(probe.hook)!;
  const pred = probePredict(probe, evalActs);
  const kindOf = (it: EvalItem): Kind => (it.subject === 'human' ? 'human' : 'ai');
  const bayes = items.map((it) => archetypePosterior(world, it.evidence, kindOf(it)));
  const priors = items.map((it) => archetypePosterior(world, [], kindOf(it)));
  return {
    layer: probe.layer,
    archetypes: probe.archetypes,
    trainRows: yTrain.n,
    perLayer: fits.map((f) => ({
      layer: f.probe.layer,
      valKL: f.valKL,
      valTV: f.valTV,
      trainTV: f.trainTV,
      valTVBaseline: baseTV,
    })),
    agreement: agreement(
      pred,
      bayes,
      priors,
      items.map((it) => it.k),
    ),
    probe,
  };
}
