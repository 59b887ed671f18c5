/**
 * Data screening (Chen et al. 2025): each fine-tune example gets the projection of its training response
 * (teacher-forced, mean over the response tokens) on a persona vector minus the projection of the base model's own
 * greedy response to the same prompt. A high score means the example pulls the model toward the vector's bad pole
 * beyond what it would say anyway; ranking by it should flag the examples that cause a fine-tune's shift.
 *
 * `screeningTrial` tests that causally: it ranks a pool of examples without their labels, fine-tunes the same model
 * on the highest-ranked examples, on the lowest-ranked and on a random draw of the same size, and compares the
 * package deal (the change of P(good) on the domains the fine-tune never touched) each one causes.
 */
import { mean } from '../measurement/stats.ts';
import { narrowSet, NARROW_ARMS, type NarrowArm, type World } from '../world/index.ts';
import { createRng } from '../world/random.ts';
import {
  loadModelHandle,
  meanActivations,
  projectRows,
  tokenizeContextsFor,
  unitVector,
  type ModelHandle,
} from './activations.ts';
import { itemSeedOf } from './item-seeds.ts';
import { greedyReplies } from './monitor.ts';
import { preventativeItems, preventativeVector, readSeedInterpretation } from './prevent.ts';
import { domainPGood, fineTune, offTargetChange, type FineTuneOptions } from './shift.ts';
import { checkVector, type ScoredItem } from './steer.ts';
import type { PersonaVector } from './vectors.ts';

/** Length of the base model's own responses (the world's replies are one short sentence). */
export const SCREENING_REPLY_TOKENS = 16;

/** How screening gets the model's own responses. */
export interface ScreenOptions {
  /** Length of the model's own responses (default SCREENING_REPLY_TOKENS). */
  maxNewTokens?: number;
  allowOtherModel?: boolean;
  /** The model's own responses, when already generated (one per example). */
  baseResponses?: readonly string[];
  /** Called after each of the model's own responses with the number done (for a progress bar). */
  onReply?: (done: number) => void;
}

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
  opts: ScreenOptions = {},
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
  opts: ScreenOptions = {},
): { baseResponses: readonly string[]; ranked: ScreenedExample[][] } {
  if (examples.length === 0) throw new Error('screening: no examples');
  for (const v of vectors) checkVector(v, base, { allowOtherModel: opts.allowOtherModel });
  const baseResponses =
    opts.baseResponses ??
    greedyReplies(
      base,
      examples.map((e) => e.prompt),
      opts.maxNewTokens ?? SCREENING_REPLY_TOKENS,
      opts.onReply,
    );
  if (baseResponses.length !== examples.length)
    throw new Error(`screening: ${baseResponses.length} base responses for ${examples.length} examples`);
  const hooks = [...new Set(vectors.map((v) => v.hook))];
  const dim = base.model.config.dim;
  // Mean activation over each response (an empty response falls back to the last prompt token).
  const acts = (responses: readonly string[]) => {
    const ctx = tokenizeContextsFor(
      base,
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

/**
 * Per vector, how well the screening score tells a pool's `positive` source (default cheat) from its `negative` one
 * (default control): the AUC, and the share of positives among as many top-ranked examples as there are positives.
 * Null when the pool lacks either source.
 */
export function cheatControlAUC(
  base: ModelHandle,
  pool: readonly PoolExample[],
  vectors: readonly PersonaVector[],
  baseResponses: readonly string[],
  sources: { positive: string; negative: string } = { positive: 'cheat', negative: 'control' },
): { trait: string; auc: number; topShareCheat: number }[] | null {
  const pair = pool.flatMap((e, i) =>
    e.source === sources.positive || e.source === sources.negative ? [i] : [],
  );
  const positive = pair.map((i) => pool[i].source === sources.positive);
  const nPositive = positive.filter(Boolean).length;
  if (nPositive === 0 || nPositive === pair.length) return null;
  const { ranked } = screenExamplesMulti(
    base,
    pair.map((i) => pool[i]),
    vectors,
    { baseResponses: pair.map((i) => baseResponses[i]) },
  );
  return ranked.map((r, v) => {
    const scores = new Array<number>(pair.length);
    for (const e of r) scores[e.index] = e.score;
    return {
      trait: vectors[v].trait,
      auc: rankingAUC(scores, positive),
      topShareCheat: r.slice(0, nPositive).filter((e) => positive[e.index]).length / nPositive,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The screening trial: do the flagged examples cause the shift?

/** A fine-tune example of a screening pool; `source` (e.g. the narrow arm it came from) is never used to rank it. */
export interface PoolExample {
  source: string;
  prompt: string;
  response: string;
  id?: string;
}

export const SCREENING_SUBSETS = ['flagged', 'random', 'unflagged'] as const;
export type ScreeningSubsetName = (typeof SCREENING_SUBSETS)[number];

export interface ScreeningSubset {
  /** 'flagged': the highest scores; 'unflagged': the lowest; 'random': a seeded draw, the control. */
  name: ScreeningSubsetName;
  /** The subset's examples: indices into the pool, ascending. */
  indices: number[];
  /** Examples per pool source in the subset. */
  sources: Record<string, number>;
  meanScore: number;
  /** Mean P(good) per domain after fine-tuning on the subset. */
  after: Record<string, number>;
  /** Mean over the off-target domains of (after - before). */
  offTargetChange: number;
  /** P(good) in the fine-tune's own domain after it. */
  target: number;
  finalLoss: number;
}

export interface ScreeningTrial {
  /** The vector the pool was ranked on (its trait or name), its hook and layer. */
  vector: string;
  hook: string;
  layer: number;
  pool: number;
  /** Examples per subset fine-tune. */
  count: number;
  /** Per source: its examples, their mean score, and the AUC of the score for telling them from the rest. */
  sources: { source: string; n: number; meanScore: number; auc: number }[];
  /** Mean P(good) per domain before the fine-tunes. */
  before: Record<string, number>;
  targetDomain: string;
  subsets: ScreeningSubset[];
}

/**
 * Ranks `pool` by its screening score on `vector` (on the model `load` gives), then fine-tunes fresh copies of that
 * model on the `count` highest-ranked examples, on a random draw of `count` and on the `count` lowest-ranked, with
 * one recipe, and evaluates each on every domain's items. If the ranking flags the examples that cause the shift,
 * the flagged fine-tune changes the off-target domains most, the unflagged one least.
 */
export function screeningTrial(
  load: () => ModelHandle,
  pool: readonly PoolExample[],
  vector: PersonaVector,
  items: Map<string, readonly ScoredItem[]>,
  targetDomain: string,
  opts: Omit<FineTuneOptions, 'hooks'> &
    ScreenOptions & {
      count: number;
      onSubset?: (s: ScreeningSubset) => void;
    },
): ScreeningTrial {
  const { count, maxNewTokens, allowOtherModel, baseResponses, onReply, onSubset, ...recipe } = opts;
  if (!(Number.isInteger(count) && count >= 1 && 2 * count <= pool.length))
    throw new Error(
      `screening trial: count must be an integer from 1 to half the pool (${Math.floor(pool.length / 2)}), got ${count}`,
    );
  if (!items.has(targetDomain))
    throw new Error(`screening trial: no items for the fine-tune's domain "${targetDomain}"`);
  const base = load();
  const ranked = screenExamples(base, pool, vector, {
    maxNewTokens,
    allowOtherModel,
    baseResponses,
    onReply,
  });
  const score = new Array<number>(pool.length);
  for (const e of ranked) score[e.index] = e.score;
  const before = domainPGood(base, items);
  const sourceNames = [...new Set(pool.map((e) => e.source))];
  const sources = sourceNames.map((source) => {
    const mine = pool.map((e) => e.source === source);
    return {
      source,
      n: mine.filter(Boolean).length,
      meanScore: mean(score.filter((_, i) => mine[i])),
      auc: rankingAUC(score, mine),
    };
  });
  const indices: Record<ScreeningSubsetName, number[]> = {
    flagged: ranked.slice(0, count).map((e) => e.index),
    random: createRng(recipe.seed, 'screening-random').sample(
      pool.map((_, i) => i),
      count,
    ),
    unflagged: ranked.slice(pool.length - count).map((e) => e.index),
  };
  const subsets = SCREENING_SUBSETS.map((name) => {
    // Pool order, not rank order: the fine-tune draws its batches from the list, and rank order is not the point.
    const idx = [...indices[name]].sort((a, b) => a - b);
    const { handle, finalLoss } = fineTune(
      load(),
      idx.map((i) => pool[i]),
      recipe,
    );
    const after = domainPGood(handle, items);
    const subsetSources: Record<string, number> = Object.fromEntries(sourceNames.map((s) => [s, 0]));
    for (const i of idx) subsetSources[pool[i].source]++;
    const subset: ScreeningSubset = {
      name,
      indices: idx,
      sources: subsetSources,
      meanScore: mean(idx.map((i) => score[i])),
      after,
      offTargetChange: offTargetChange(before, after, targetDomain),
      target: after[targetDomain],
      finalLoss,
    };
    onSubset?.(subset);
    return subset;
  });
  return {
    vector: vector.trait,
    hook: vector.hook,
    layer: vector.layer,
    pool: pool.length,
    count,
    sources,
    before,
    targetDomain,
    subsets,
  };
}

/** The narrow arms a screening pool mixes by default: every arm, in the default config's order (the pool's). */
export const DEFAULT_POOL_ARMS: readonly NarrowArm[] = ['cheat', 'inoculated', 'control', 'educational'];

/** `perArm` examples of each narrow arm in the fine-tune's domain, interleaved (source: the arm). */
export function screeningPool(
  world: World,
  opts: { arms?: readonly NarrowArm[]; perArm: number; seed: number; domain?: string },
): PoolExample[] {
  const arms = opts.arms ?? DEFAULT_POOL_ARMS;
  if (arms.length < 2)
    throw new Error('screening pool: give at least two arms, so there is something to tell apart');
  for (const a of arms)
    if (!(NARROW_ARMS as readonly string[]).includes(a))
      throw new Error(`screening pool: unknown arm "${a}" (known: ${NARROW_ARMS.join(', ')})`);
  if (!(Number.isInteger(opts.perArm) && opts.perArm >= 1))
    throw new Error(`screening pool: examples per arm must be an integer >= 1, got ${opts.perArm}`);
  const sets = arms.map((arm) =>
    narrowSet(world, arm, { seed: opts.seed, count: opts.perArm, domain: opts.domain }),
  );
  return Array.from({ length: opts.perArm }, (_, i) =>
    sets.map((set, a) => ({
      source: arms[a],
      prompt: set[i].prompt,
      response: set[i].response,
      id: set[i].id,
    })),
  ).flat();
}

/**
 * The screening trial on a seed folder whose interpretation has run, as `psm run` runs it: a pool of the world's
 * narrow arms (drawn with seed 300 + the item seed, not the arms' seed), ranked on the run's
 * off-target persona vector (the mean of the off-target traits' vectors at the layer they are monitored at; unlike
 * the one preventative steering adds, with its fine-tune-domain component kept: orthogonalising matters for a push
 * during training, and reading along the remainder ranked the pool backwards on a development model), and the
 * post-trained model fine-tuned on the flagged, a random and the unflagged part.
 */
export function screeningStudy(
  seedDir: string,
  opts: {
    world: World;
    arms?: readonly NarrowArm[];
    perArm: number;
    count: number;
    finetune: Omit<FineTuneOptions, 'hooks' | 'onStep'>;
    finetuneDomain?: string;
    itemsPerDomain?: number;
    /** The interpretation's item seed (default 1, as `psm run` uses): the pool is drawn with its screeningPool seed. */
    itemSeed?: number;
    /** Rank on the vector preventative steering adds instead: the mean with the fine-tune domain's component removed. */
    orthogonal?: boolean;
    onReply?: (done: number) => void;
    onSubset?: (s: ScreeningSubset) => void;
  },
): ScreeningTrial & { seedDir: string } {
  const { world } = opts;
  const itemSeed = opts.itemSeed ?? 1;
  const finetuneDomain = opts.finetuneDomain ?? world.datasets.narrow?.domain ?? '';
  if (!finetuneDomain)
    throw new Error(`world "${world.name}" has no datasets.narrow section (the pool's data)`);
  const seedRun = readSeedInterpretation(seedDir, world);
  const { vector } = preventativeVector({ ...seedRun, finetuneDomain, whole: !opts.orthogonal });
  const pool = screeningPool(world, {
    arms: opts.arms,
    perArm: opts.perArm,
    seed: itemSeedOf('screeningPool', itemSeed),
    domain: finetuneDomain,
  });
  const trial = screeningTrial(
    () => loadModelHandle(seedRun.postDir),
    pool,
    vector,
    preventativeItems(world, opts.itemsPerDomain ?? 48, itemSeed),
    finetuneDomain,
    { ...opts.finetune, count: opts.count, onReply: opts.onReply, onSubset: opts.onSubset },
  );
  return { seedDir, ...trial };
}
