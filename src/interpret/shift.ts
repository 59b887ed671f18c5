/**
 * Fine-tune shift prediction and data screening (Chen et al. 2025).
 *
 * Shift: for each fine-tuned model and trait, the change of the mean projection of the last prompt token onto
 * the trait's vector (taken from the model before the fine-tune) on the trait's held-out Assistant prompts,
 * against the change of trait expression (mean P(bad) on the same items). The correlation across arms and
 * traits says how well the activation shift predicts the behavioural shift.
 *
 * Screening: each fine-tune example gets the projection of its training response (teacher-forced, mean over
 * the response tokens) minus the projection of the base model's own greedy response to the same prompt. A high
 * score means the example pulls the model toward the trait's bad pole; ranking by it flags the examples that
 * cause the shift.
 */
import { clippedLogit, mean, pearson } from '../measurement/stats.ts';
import type { HookSet } from '../model/hooks.ts';
import { fineTuneInPlace, type FineTuneRecipe } from '../training/finetune.ts';
import { supervisedChats, type ChatExample } from '../world/index.ts';
import {
  meanActivations,
  modelHandle,
  projectRows,
  tokenizeContexts,
  unitVector,
  type ModelHandle,
} from './activations.ts';
import { greedyReplies } from './monitor.ts';
import { checkVector, pGoodOf, scoreItems, type ScoredItem } from './steer.ts';
import type { PersonaVector } from './vectors.ts';

export interface ModelState {
  /** Mean last-prompt projection per trait. */
  projection: Record<string, number>;
  /** Mean P(bad) per trait. */
  pBad: Record<string, number>;
  /**
   * Mean log-odds of the bad option per trait (P clipped to [1e-6, 1 - 1e-6]). A projection acts on the option
   * logits, so near P = 0 or 1 a shift shows in the log-odds long after the probability has stopped moving.
   */
  logOddsBad: Record<string, number>;
}

/** Probabilities are clipped this far from 0 and 1 before taking log-odds. */
const LOG_ODDS_CLIP = 1e-6;

/** Projections and trait expression of one model on each trait's items (vectors may come from another model). */
export function modelState(
  handle: ModelHandle,
  items: Map<string, readonly ScoredItem[]>,
  vectors: readonly PersonaVector[],
): ModelState {
  const projection: Record<string, number> = {};
  const pBad: Record<string, number> = {};
  const logOddsBad: Record<string, number> = {};
  for (const v of vectors) {
    const its = items.get(v.trait);
    if (!its || its.length === 0) throw new Error(`shift: no items for trait "${v.trait}"`);
    checkVector(v, handle, { allowOtherModel: true });
    const { pGood, lastToken } = scoreItems(handle, its, { record: [v.hook] });
    projection[v.trait] = mean(
      projectRows(
        lastToken.get(v.hook)!,
        handle.model.config.dim,
        unitVector(v.vector, `vector "${v.trait}"`),
      ),
    );
    pBad[v.trait] = mean(pGood.map((p) => 1 - p));
    logOddsBad[v.trait] = mean(pGood.map((p) => clippedLogit(1 - p, LOG_ODDS_CLIP)));
  }
  return { projection, pBad, logOddsBad };
}

export interface ShiftPoint {
  model: string;
  trait: string;
  /** Change of the mean projection (after - before). */
  projectionShift: number;
  /** Change of mean P(bad) (after - before). */
  expressionShift: number;
  /** Change of the mean log-odds of the bad option (after - before). */
  logOddsShift: number;
}

export interface ShiftPrediction {
  points: ShiftPoint[];
  /** Correlation over every (model, trait) point. */
  r: number;
  /** Correlation leaving out the traits in `exclude` (e.g. the fine-tune's own domain). */
  rExcluding: number | null;
  excluded: string[];
  /** Per trait, correlation across models (NaN with fewer than 3 models). */
  perTrait: Record<string, number>;
  /** The same against the change in log-odds (a reading that does not saturate; not the goal's measure). */
  perTraitLogOdds: Record<string, number>;
}

export function shiftPrediction(
  before: ModelState,
  afters: readonly { label: string; state: ModelState }[],
  exclude: readonly string[] = [],
): ShiftPrediction {
  const points: ShiftPoint[] = [];
  for (const { label, state } of afters) {
    for (const trait of Object.keys(before.projection)) {
      points.push({
        model: label,
        trait,
        projectionShift: state.projection[trait] - before.projection[trait],
        expressionShift: state.pBad[trait] - before.pBad[trait],
        logOddsShift: state.logOddsBad[trait] - before.logOddsBad[trait],
      });
    }
  }
  const r = pearson(
    points.map((p) => p.projectionShift),
    points.map((p) => p.expressionShift),
  );
  const kept = points.filter((p) => !exclude.includes(p.trait));
  const rExcluding =
    exclude.length > 0 && kept.length > 2
      ? pearson(
          kept.map((p) => p.projectionShift),
          kept.map((p) => p.expressionShift),
        )
      : null;
  const perTrait: Record<string, number> = {};
  const perTraitLogOdds: Record<string, number> = {};
  for (const trait of Object.keys(before.projection)) {
    const ps = points.filter((p) => p.trait === trait);
    const x = ps.map((p) => p.projectionShift);
    perTrait[trait] =
      ps.length >= 3
        ? pearson(
            x,
            ps.map((p) => p.expressionShift),
          )
        : NaN;
    perTraitLogOdds[trait] =
      ps.length >= 3
        ? pearson(
            x,
            ps.map((p) => p.logOddsShift),
          )
        : NaN;
  }
  return { points, r, rExcluding, excluded: [...exclude], perTrait, perTraitLogOdds };
}

// ---------------------------------------------------------------------------------------------------------------
// Data screening

export interface ScreenedExample {
  index: number;
  id?: string;
  /** Projection of the training response minus that of the base model's own response. */
  score: number;
  trainProjection: number;
  baseProjection: number;
  baseResponse: string;
}

/** Scores fine-tune examples against one vector, highest (most trait-bad) first. */
export function screenExamples(
  base: ModelHandle,
  examples: readonly { id?: string; prompt: string; response: string }[],
  v: PersonaVector,
  opts: { maxNewTokens?: number; allowOtherModel?: boolean; baseResponses?: string[] } = {},
): ScreenedExample[] {
  return screenExamplesMulti(base, examples, [v], opts).ranked[0];
}

/**
 * Screening against several vectors at once (the base model's responses are generated once): for each vector,
 * the examples ranked by score, highest first.
 */
export function screenExamplesMulti(
  base: ModelHandle,
  examples: readonly { id?: string; prompt: string; response: string }[],
  vectors: readonly PersonaVector[],
  opts: { maxNewTokens?: number; allowOtherModel?: boolean; baseResponses?: string[] } = {},
): { baseResponses: string[]; ranked: ScreenedExample[][] } {
  if (examples.length === 0) throw new Error('screening: no examples');
  for (const v of vectors) checkVector(v, base, { allowOtherModel: opts.allowOtherModel });
  const baseResponses =
    opts.baseResponses ??
    greedyReplies(
      base,
      examples.map((e) => e.prompt),
      opts.maxNewTokens ?? 24,
    );
  if (baseResponses.length !== examples.length)
    throw new Error(`screening: ${baseResponses.length} base responses for ${examples.length} examples`);
  const hooks = [...new Set(vectors.map((v) => v.hook))];
  const dim = base.model.config.dim;
  // Mean activation over each response (an empty response falls back to the last prompt token).
  const acts = (responses: readonly string[]) => {
    const ctx = tokenizeContexts(
      base.tokenizer,
      examples.map((e, i) => ({ prompt: e.prompt, response: responses[i] })),
    );
    const out = new Map(hooks.map((h) => [h, new Float32Array(ctx.length * dim)]));
    for (const span of ['response', 'last-prompt'] as const) {
      const idx = ctx
        .map((c, i) => (c.response.length > 0 === (span === 'response') ? i : -1))
        .filter((i) => i >= 0);
      if (idx.length === 0) continue;
      const a = meanActivations(
        base.model,
        idx.map((i) => ctx[i]),
        hooks,
        span,
      );
      for (const h of hooks)
        idx.forEach((i, k) => out.get(h)!.set(a.data.get(h)!.subarray(k * dim, (k + 1) * dim), i * dim));
    }
    return out;
  };
  const train = acts(examples.map((e) => e.response));
  const own = acts(baseResponses);
  const ranked = vectors.map((v) => {
    const unit = unitVector(v.vector, `vector "${v.trait}"`);
    const pt = projectRows(train.get(v.hook)!, dim, unit);
    const po = projectRows(own.get(v.hook)!, dim, unit);
    return examples
      .map((e, index) => ({
        index,
        id: e.id,
        score: pt[index] - po[index],
        trainProjection: pt[index],
        baseProjection: po[index],
        baseResponse: baseResponses[index],
      }))
      .sort((a, b) => b.score - a.score || a.index - b.index);
  });
  return { baseResponses, ranked };
}

/** Area under the ROC curve of a ranking score for flagging `positive` examples (ties count one half). */
export function rankingAUC(scores: readonly number[], positive: readonly boolean[]): number {
  const pos = scores.filter((_, i) => positive[i]);
  const neg = scores.filter((_, i) => !positive[i]);
  if (pos.length === 0 || neg.length === 0) return NaN;
  let s = 0;
  for (const p of pos) for (const n of neg) s += p > n ? 1 : p === n ? 0.5 : 0;
  return s / (pos.length * neg.length);
}

// ---------------------------------------------------------------------------------------------------------------
// Fine-tuning with optional preventative steering (the pipeline's supervised recipe, for in-library trials)

export type FineTuneOptions = FineTuneRecipe;

/**
 * Fine-tunes handle.model in place on chat examples (the shared recipe, training/finetune.ts). Returns a fresh handle
 * (the old one's hash no longer matches the weights).
 */
export function fineTune(
  handle: ModelHandle,
  examples: readonly ChatExample[] | readonly { prompt: string; response: string }[],
  opts: FineTuneOptions,
): { finalLoss: number; handle: ModelHandle } {
  const { model, tokenizer } = handle;
  const { finalLoss } = fineTuneInPlace(model, supervisedChats(tokenizer, examples), opts);
  return { finalLoss, handle: modelHandle(model, tokenizer, `${handle.source} (fine-tuned)`) };
}

/**
 * What a preventative trial does to the residual stream while the fine-tune trains (and never after it).
 * 'add': a persona vector added at one layer (preventative steering, Chen et al. 2025), so the optimiser need not
 * move the weights along it. 'ablate': directions projected out at every listed layer (concept ablation fine-tuning,
 * Casademunt et al. 2025), so the fine-tune can neither read nor use them.
 */
export interface PreventativeIntervention {
  method: 'add' | 'ablate';
  /** For 'ablate': the name of the subspace projected out. */
  subspace?: string;
  /** What is added or ablated, in words. */
  vector: string;
  layers: number[];
  /** The strength of 'add' in steering units; null for 'ablate'. */
  alpha: number | null;
  hooks: HookSet;
}

/**
 * An intervention built from the plain fine-tune (CAFT's directions come from the activation change it causes):
 * `tuned` is the plainly fine-tuned model, `load` gives a fresh copy of the model before it.
 */
export type DeferredIntervention = (plain: {
  tuned: ModelHandle;
  load: () => ModelHandle;
}) => PreventativeIntervention;

export interface PreventativeTrial {
  method: PreventativeIntervention['method'];
  /** For 'ablate': the subspace projected out (prevent.ts ABLATION_SUBSPACES; absent before version 15: 'traits'). */
  subspace?: string;
  vector: string;
  layers: number[];
  alpha: number | null;
  /** Mean P(good) per domain: before the fine-tune, after it without steering, after it with steering. */
  before: Record<string, number>;
  plain: Record<string, number>;
  steered: Record<string, number>;
  /** Mean over the off-target domains of (after - before), without and with steering. */
  offTargetDrop: { plain: number; steered: number };
  /** P(good) in the fine-tune's own domain after each (the narrow behaviour is learned when it falls). */
  target: { before: number; plain: number; steered: number };
  /** 1 - steered drop / plain drop (>= 0.5: steering cut the drop at least in half). */
  reduction: number;
  /**
   * The Assistant's position on the assistant axis (0: the archetypes' mean, 1: the post-trained Assistant) before
   * the fine-tune and after it without and with the intervention; absent when the trials were not given a persona
   * space (and before interpretation version 17).
   */
  axis?: { before: number; plain: number; steered: number };
}

/** Options of `preventativeTrials`: the fine-tune's recipe, and where to place each model in persona space. */
export type PreventativeTrialOptions = Omit<FineTuneOptions, 'hooks'> & {
  /** A model's position on the assistant axis (placeAssistant's axisPosition), recorded for every trial. */
  axisPosition?: (handle: ModelHandle) => number;
};

/**
 * Preventative trials: the same fine-tune from fresh copies of a model, once plain and once under each
 * intervention (removed for evaluation), each evaluated on items of every domain. The plain fine-tune is shared,
 * and deferred interventions are built from it.
 */
export function preventativeTrials(
  load: () => ModelHandle,
  examples: readonly { prompt: string; response: string }[],
  interventions: readonly (PreventativeIntervention | DeferredIntervention)[],
  items: Map<string, readonly ScoredItem[]>,
  targetDomain: string,
  opts: PreventativeTrialOptions,
  onTrial?: (t: PreventativeTrial) => void,
): PreventativeTrial[] {
  const { axisPosition, ...recipe } = opts;
  if (interventions.length === 0) throw new Error('preventative trial: no interventions');
  const evalAll = (h: ModelHandle) => {
    const out: Record<string, number> = {};
    for (const [d, its] of items) out[d] = mean(pGoodOf(h, its));
    return out;
  };
  const first = load();
  const before = evalAll(first);
  const axisBefore = axisPosition?.(first);
  const tuned = fineTune(first, examples, recipe).handle;
  const plain = evalAll(tuned);
  const axisPlain = axisPosition?.(tuned);
  const off = [...items.keys()].filter((d) => d !== targetDomain);
  const drop = (after: Record<string, number>) => mean(off.map((d) => after[d] - before[d]));
  const dPlain = drop(plain);
  return interventions.map((intervention) => {
    const { hooks, ...what } =
      typeof intervention === 'function' ? intervention({ tuned, load }) : intervention;
    const steeredModel = fineTune(load(), examples, { ...recipe, hooks }).handle;
    const steered = evalAll(steeredModel);
    const dSteered = drop(steered);
    const trial: PreventativeTrial = {
      ...what,
      before,
      plain,
      steered,
      offTargetDrop: { plain: dPlain, steered: dSteered },
      target: { before: before[targetDomain], plain: plain[targetDomain], steered: steered[targetDomain] },
      reduction: dPlain < 0 ? 1 - dSteered / dPlain : NaN,
      ...(axisPosition
        ? { axis: { before: axisBefore!, plain: axisPlain!, steered: axisPosition(steeredModel) } }
        : {}),
    };
    onTrial?.(trial);
    return trial;
  });
}
