/**
 * Steering: add alpha times a persona vector at chosen layers while scoring, generating or training; ablate a
 * direction; cap the projection on a direction (the assistant-axis capping rule). Re-running the trait battery
 * under steering gives dose-response curves. Preventative steering is a HookSet handed to the Trainer during
 * a fine-tune: the vector is added while training and removed after.
 *
 * Units: alpha is measured in ALPHA_UNIT x the layer's mean residual-stream norm (a vector's `residualNorm`),
 * along the unit direction of the vector, so alphas mean the same push at every layer and in every model:
 * alpha = 8 adds a vector of 0.8 x the typical residual norm.
 */
import type { Tensor } from '../autograd/tensor.ts';
import { mean, variance } from '../measurement/stats.ts';
import {
  ablateDirectionHook,
  addVectorHook,
  capProjectionHook,
  HookSet,
  type HookFn,
  type PositionSelector,
} from '../model/hooks.ts';
import {
  checkLayer,
  layerHook,
  choiceItemAsRead,
  unitVector,
  type ModelHandle,
  type ResidKind,
} from './activations.ts';
import {
  scoreChoicesShared,
  scoreFromTrace,
  traceChoices,
  type ChoiceTrace,
} from './scoring.ts';
import type { PersonaVector } from './persona-vector.ts';

/** alpha = 1 pushes by this fraction of the layer's mean residual norm. */
export const ALPHA_UNIT = 0.1;
/**
 * Dense near 0: at |alpha| = 8 the option sets of these small models lose 7-30 nats of probability (the push breaks
 * the model), so the dose-response is read where the model stays coherent (see `coherentAlphas`).
 */
export const DEFAULT_ALPHAS = [-4, -2, -1, 0, 1, 2, 4];

/** A two-way item as the interpret tools score it (the separator is put in front of the prompt). */
export interface ScoredItem {
  id?: string;
  domain: string;
  prompt: string;
  good: readonly string[];
  bad: readonly string[];
}

/** Items grouped by domain, in order; with perDomain, only the first that many of each. */
export function byDomain<T extends { domain: string }>(
  items: readonly T[],
  perDomain?: number,
): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const list = m.get(it.domain) ?? [];
    if (perDomain === undefined || list.length < perDomain) list.push(it);
    m.set(it.domain, list);
  }
  return m;
}

export interface VectorCheckOptions {
  /** Apply a vector extracted from another model (e.g. the post-trained model's vector on a fine-tune). */
  allowOtherModel?: boolean;
}

/** Throws a clear error when a vector does not belong to this model or does not fit its residual stream. */
export function checkVector(v: PersonaVector, handle: ModelHandle, opts: VectorCheckOptions = {}): void {
  const dim = handle.model.config.dim;
  if (v.vector.length !== dim || v.dim !== v.vector.length) {
    throw new Error(
      `vector "${v.trait}" (${v.hook}) has ${v.vector.length} elements but ${handle.source}'s residual stream has ${dim}: ` +
        'it comes from another model or hook shape',
    );
  }
  checkLayer(handle.model, v.layer);
  if (!opts.allowOtherModel && v.modelHash !== handle.hash) {
    throw new Error(
      `vector "${v.trait}" was extracted from model ${v.modelHash.slice(0, 12)}, not from ${handle.source} (${handle.hash.slice(0, 12)}); ` +
        'pass allowOtherModel (--allow-other-model) to apply it to another model on purpose',
    );
  }
}

/** The added vector for a strength alpha: alpha x ALPHA_UNIT x residualNorm along the unit direction. */
export function steeringVector(v: PersonaVector, alpha: number): Float32Array {
  if (!Number.isFinite(alpha)) throw new Error(`steering: alpha ${alpha} is not finite`);
  const u = unitVector(v.vector, `vector "${v.trait}"`);
  const s = alpha * ALPHA_UNIT * v.residualNorm;
  if (!Number.isFinite(s))
    throw new Error(`steering: alpha ${alpha} x residual norm ${v.residualNorm} is not finite`);
  const out = u.map((x) => x * s);
  for (const x of out)
    if (!Number.isFinite(x))
      throw new Error(
        `steering "${v.trait}": alpha ${alpha} overflows float32 (non-finite vector); use a smaller alpha`,
      );
  return out;
}

function finiteGuard(inner: HookFn, what: string): HookFn {
  return (x, ctx) => {
    const y = (inner(x, ctx) ?? x) as Tensor;
    const d = y.data;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]))
        throw new Error(
          `${what} produced a non-finite activation (${d[i]}) at ${ctx.name}; use a smaller alpha`,
        );
    }
    return y;
  };
}

export interface SteerOptions extends VectorCheckOptions {
  /** Layers to steer at (default: the vector's own layer); the same direction is added at each. */
  layers?: number[];
  hookKind?: ResidKind;
  where?: PositionSelector;
}

/** Adds `alpha` steering with `v` to a HookSet (checks model, shape and layers). */
export function addSteering(
  set: HookSet,
  handle: ModelHandle,
  v: PersonaVector,
  alpha: number,
  opts: SteerOptions = {},
): HookSet {
  checkVector(v, handle, opts);
  const layers = opts.layers ?? [v.layer];
  for (const l of layers) checkLayer(handle.model, l);
  if (alpha === 0) return set;
  const add = steeringVector(v, alpha);
  for (const l of layers) {
    const name = opts.hookKind
      ? layerHook(l, opts.hookKind)
      : l === v.layer
        ? v.hook
        : layerHook(l, hookKindOf(v.hook));
    set.add(
      name,
      finiteGuard(addVectorHook(add, 1, opts.where ?? 'all'), `steering "${v.trait}" with alpha ${alpha}`),
    );
  }
  return set;
}

export function hookKindOf(hook: string): ResidKind {
  const m = /^blocks\.\d+\.(\w+)$/.exec(hook);
  if (!m) throw new Error(`"${hook}" is not a per-layer hook`);
  return m[1] as ResidKind;
}

/** P(good) of items (separator in front of each prompt), optionally under hooks; NaN results are an error. */
export function pGoodOf(
  handle: ModelHandle,
  items: readonly ScoredItem[],
  hooks?: HookSet,
  what = 'scoring',
): number[] {
  return scoreItems(handle, items, { hooks, what }).pGood;
}

/**
 * P(good) of items with the prompt shared by the wordings (scoring.ts), and the activations of the last prompt
 * token at the `record` hooks ([n, dim] each), in one pass.
 */
export function scoreItems(
  handle: ModelHandle,
  items: readonly ScoredItem[],
  opts: { hooks?: HookSet; record?: readonly string[]; what?: string } = {},
): { pGood: number[]; logMass: number[]; lastToken: Map<string, Float32Array> } {
  const what = opts.what ?? 'scoring';
  const {
    pGood: p,
    logMass,
    lastToken,
  } = scoreChoicesShared(
    handle.model,
    handle.tokenizer,
    items.map((it) => choiceItemAsRead(handle, it)),
    {
      hooks: opts.hooks,
      record: opts.record,
    },
  );
  checkFinitePGood(p, items, what);
  return { pGood: p, logMass, lastToken };
}

function checkFinitePGood(pGood: readonly number[], items: readonly ScoredItem[], what: string): void {
  pGood.forEach((v, i) => {
    if (!Number.isFinite(v))
      throw new Error(
        `${what}: P(good) of item ${items[i].id ?? i} is ${v} (the intervention broke the model; use a smaller alpha)`,
      );
  });
}

export interface DoseResponse {
  trait: string;
  layers: number[];
  alphas: number[];
  /** Mean P(good) over the items at each alpha. */
  pGood: number[];
  /** Mean log probability of the items' option sets at each alpha (scoring.ts `logMass`). */
  logMass: number[];
  /**
   * Per alpha: the model still answers coherently, i.e. the option sets keep at least half of the probability they
   * have unsteered (mean log mass within ln 2 of alpha 0's). Beyond that the push breaks the model rather than
   * moving the persona (the reference work likewise reads steering only where the model stays coherent).
   */
  coherent: boolean[];
  n: number;
  /** P(good) falls (weakly) as alpha grows: adding the trait-bad direction makes the bad option likelier. */
  monotonic: boolean;
  /** The same over the coherent alphas around alpha 0 only, and false when fewer than three of them are coherent. */
  monotonicCoherent: boolean;
  /**
   * Over the same coherent alphas: the largest change of P(good) from one alpha to the next, in standard errors of the
   * paired difference over items (negative when it always falls; absent before interpretation version 7).
   */
  maxRiseZ?: number;
  /** Monotone where coherent up to sampling noise: no rise beyond 1.96 paired standard errors (>= 3 coherent alphas). */
  monotonicCoherentWithinNoise?: boolean;
}

/** Rises of P(good) between adjacent doses beyond this many paired standard errors count as real. */
export const RISE_Z = 1.96;

/** |z| cap: a change with no spread over items has an unbounded z, and JSON has no infinities. */
const Z_CAP = 1000;

/**
 * Largest change between adjacent doses in units of the standard error of the per-item difference (items are the
 * same at every dose, so the difference is paired); positive = a rise. NaN with fewer than two doses.
 */
export function maxPairedRiseZ(perItem: readonly (readonly number[])[]): number {
  let worst = NaN;
  for (let a = 1; a < perItem.length; a++) {
    const d = perItem[a].map((p, j) => p - perItem[a - 1][j]);
    const m = mean(d);
    const sd = d.length > 1 ? Math.sqrt(variance(d)) : 0;
    const z = sd > 0 ? m / (sd / Math.sqrt(d.length)) : Math.sign(m) * Z_CAP;
    const capped = Math.max(-Z_CAP, Math.min(Z_CAP, z));
    worst = Number.isNaN(worst) ? capped : Math.max(worst, capped);
  }
  return worst;
}

/** Non-increasing within a tolerance. */
export function isMonotonicDecreasing(ys: readonly number[], tol = 1e-3): boolean {
  for (let i = 1; i < ys.length; i++) if (ys[i] > ys[i - 1] + tol) return false;
  return true;
}

/** Index of the reference dose: alpha 0 (unsteered) when the grid has it, else the alpha with the most log mass. */
function referenceDose(alphas: readonly number[], logMass: readonly number[]): number {
  const zero = alphas.indexOf(0);
  return zero >= 0 ? zero : logMass.indexOf(Math.max(...logMass));
}

/** A coherent alpha keeps the option sets' mean log mass within ln 2 of the reference dose's. */
export function coherentAlphas(alphas: readonly number[], logMass: readonly number[]): boolean[] {
  const ref = logMass[referenceDose(alphas, logMass)];
  return logMass.map((m) => m >= ref - Math.LN2);
}

/** The contiguous run of coherent alphas that holds the reference dose, as [from, to). */
export function coherentRange(
  alphas: readonly number[],
  coherent: readonly boolean[],
  logMass: readonly number[],
) {
  const center = referenceDose(alphas, logMass);
  let from = center;
  let to = center + 1;
  while (from > 0 && coherent[from - 1]) from--;
  while (to < alphas.length && coherent[to]) to++;
  return { from, to };
}

/** At least three doses, so a dose-response can show a trend. */
export const MIN_COHERENT_DOSES = 3;

/** Monotone over the coherent alphas around 0, counting only when that range holds MIN_COHERENT_DOSES alphas. */
export function monotonicWhereCoherent(
  alphas: readonly number[],
  pGood: readonly number[],
  coherent: readonly boolean[],
  logMass: readonly number[],
): boolean {
  const { from, to } = coherentRange(alphas, coherent, logMass);
  return to - from >= MIN_COHERENT_DOSES && isMonotonicDecreasing(pGood.slice(from, to));
}

/** One dose of a dose-response: P(good) per item, their mean, and the option sets' mean log mass. */
export interface DoseScore {
  perItem: number[];
  pGood: number;
  logMass: number;
}

/** Items scored once without steering, with what a later pass needs to resume after any block (scoring.ts). */
export interface TracedItems {
  items: readonly ScoredItem[];
  trace: ChoiceTrace;
}

/** Traces items for repeated steering at single layers (`doseResponse`'s `trace`): memory ~ items x layers. */
export function traceItems(handle: ModelHandle, items: readonly ScoredItem[]): TracedItems {
  const trace = traceChoices(
    handle.model,
    handle.tokenizer,
    items.map((it) => choiceItemAsRead(handle, it)),
  );
  checkFinitePGood(trace.base.pGood, items, 'unsteered scoring');
  return { items, trace };
}

/**
 * The trait battery re-run under steering at each alpha. With `trace` (from `traceItems` on the same items), alpha 0
 * is the traced scores and a push at one layer's hook_resid_post runs only the blocks after it: the same numbers, at
 * a fraction of the cost when a caller scans layers, alphas or vectors over the same items.
 */
export function doseResponse(
  handle: ModelHandle,
  items: readonly ScoredItem[],
  v: PersonaVector,
  alphas: readonly number[] = DEFAULT_ALPHAS,
  opts: SteerOptions & { trace?: TracedItems } = {},
): DoseResponse {
  if (items.length === 0) throw new Error(`dose-response for "${v.trait}": no items`);
  checkVector(v, handle, opts);
  const traced = opts.trace;
  if (
    traced &&
    (traced.items.length !== items.length || traced.items.some((it, i) => it.prompt !== items[i].prompt))
  )
    throw new Error(`dose-response for "${v.trait}": the trace is of other items`);
  const layers = opts.layers ?? [v.layer];
  const scoreDose = (alpha: number): { pGood: number[]; logMass: number[] } => {
    const hooks = addSteering(new HookSet(), handle, v, alpha, opts);
    const what = `steering "${v.trait}" with alpha ${alpha}`;
    if (traced && hooks.names().length === 0) return traced.trace.base;
    const resumeAt = layers.length === 1 ? layerHook(layers[0], 'hook_resid_post') : null;
    if (traced && hooks.names().every((n) => n === resumeAt)) {
      const r = scoreFromTrace(handle.model, traced.trace, layers[0], hooks);
      checkFinitePGood(r.pGood, items, what);
      return r;
    }
    return scoreItems(handle, items, { hooks, what });
  };
  const sorted = [...alphas].sort((a, b) => a - b);
  const scored = sorted.map((alpha): DoseScore => {
    const r = scoreDose(alpha);
    return { perItem: r.pGood, pGood: mean(r.pGood), logMass: mean(r.logMass) };
  });
  const pGood = scored.map((x) => x.pGood);
  const logMass = scored.map((x) => x.logMass);
  const coherent = coherentAlphas(sorted, logMass);
  const { from, to } = coherentRange(sorted, coherent, logMass);
  const maxRiseZ = maxPairedRiseZ(scored.slice(from, to).map((x) => x.perItem));
  return {
    trait: v.trait,
    layers: opts.layers ?? [v.layer],
    alphas: sorted,
    pGood,
    logMass,
    coherent,
    n: items.length,
    monotonic: isMonotonicDecreasing(pGood),
    monotonicCoherent: monotonicWhereCoherent(sorted, pGood, coherent, logMass),
    maxRiseZ,
    monotonicCoherentWithinNoise: to - from >= MIN_COHERENT_DOSES && maxRiseZ <= RISE_Z,
  };
}

/** Mean P(good) without and with the vector's direction projected out at the given layers. */
export function ablationEffect(
  handle: ModelHandle,
  items: readonly ScoredItem[],
  v: PersonaVector,
  opts: SteerOptions & { base?: number } = {},
): { trait: string; layers: number[]; base: number; ablated: number } {
  checkVector(v, handle, opts);
  const layers = opts.layers ?? [v.layer];
  const set = new HookSet();
  for (const l of layers) {
    checkLayer(handle.model, l);
    set.add(
      layerHook(l, opts.hookKind ?? hookKindOf(v.hook)),
      ablateDirectionHook(v.vector, opts.where ?? 'all'),
    );
  }
  const base = opts.base ?? mean(pGoodOf(handle, items));
  const ablated = mean(pGoodOf(handle, items, set, `ablating "${v.trait}"`));
  return { trait: v.trait, layers, base, ablated };
}

/** The capping rule of the assistant axis: the projection on `direction` is kept >= min at a layer. */
export function cappingHooks(
  handle: ModelHandle,
  direction: Float32Array,
  layer: number,
  min: number,
  hookKind: ResidKind = 'hook_resid_post',
  where: PositionSelector = 'all',
): HookSet {
  checkLayer(handle.model, layer);
  if (direction.length !== handle.model.config.dim) {
    throw new Error(
      `capping: direction has ${direction.length} elements, the model's residual stream has ${handle.model.config.dim}`,
    );
  }
  if (!Number.isFinite(min)) throw new Error(`capping: threshold ${min} is not finite`);
  return new HookSet().add(layerHook(layer, hookKind), capProjectionHook(direction, { min }, where));
}

/** q-quantile (0..1) by linear interpolation. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * Preventative steering for a fine-tune: pass the result as TrainerOptions.hooks. The vector is added at
 * `blocks.{layer}.hook_resid_post` at every position while training, so the optimiser does not need to move
 * the weights along it; train without the hooks' effect afterwards simply by not passing them.
 * A PersonaVector's alpha is in steering units (ALPHA_UNIT x residual norm along its unit direction); a raw
 * Float32Array is added as alpha x vector.
 */
export function preventativeSteeringHooks(
  vector: PersonaVector | Float32Array,
  layer: number,
  alpha: number,
): HookSet {
  if (!Number.isInteger(layer) || layer < 0)
    throw new Error(`preventative steering: unknown layer ${layer} (layers are 0, 1, ...)`);
  if (!Number.isFinite(alpha)) throw new Error(`preventative steering: alpha ${alpha} is not finite`);
  const raw = vector instanceof Float32Array ? vector : null;
  const add = raw ? raw.map((x) => x * alpha) : steeringVector(vector as PersonaVector, alpha);
  for (const x of add)
    if (!Number.isFinite(x))
      throw new Error(`preventative steering: alpha ${alpha} gives a non-finite vector`);
  const what = raw
    ? 'preventative steering'
    : `preventative steering with "${(vector as PersonaVector).trait}"`;
  return new HookSet().add(layerHook(layer), finiteGuard(addVectorHook(add, 1), `${what} (alpha ${alpha})`));
}
