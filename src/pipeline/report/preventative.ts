/**
 * Preventative trials over seeds: each method (for concept ablation, each subspace) that ran in every seed, its
 * reduction of the off-target drop per seed, pooled, and where it left the Assistant on the assistant axis.
 */
import { estimate, type Estimate } from '../../measurement/stats.ts';
import type { InterpretSummary, PreventativeTrial } from '../../interpret/index.ts';
import { PREVENTATIVE_NAMES } from './prose.ts';

/** One preventative method (for concept ablation: one subspace) over seeds. */
export interface PreventativeAggregate {
  /** 'add', or 'ablate/<subspace>' (preventativeKey). */
  key: string;
  method: PreventativeTrial['method'];
  reduction: Estimate;
  /**
   * 1 - (sum of steered drops) / (sum of plain drops) over seeds: each seed weighted by how far the fine-tune dragged
   * the persona. A seed whose plain drop is near zero makes its own ratio arbitrary; here it just adds little.
   */
  pooled: number;
  /** The fine-tune domain's P(good) fell by more than 0.2 under the intervention in every seed. */
  targetLearned: boolean;
  /** Per seed: the reduction and the layers the intervention acted at. */
  bySeed: { seed: number; layers: number[]; reduction: number }[];
  /**
   * The Assistant's position on the assistant axis (1: the post-trained Assistant) after the plain fine-tune and
   * after the one with the intervention, over seeds; null unless every seed recorded it (version 17 on).
   */
  axis: { plain: Estimate; steered: Estimate } | null;
}

/** A trial's method and, for concept ablation, its subspace (trials before interpretation version 15: 'traits'). */
export function preventativeKey(t: Pick<PreventativeTrial, 'method' | 'subspace'>): string {
  return t.method === 'ablate' ? `ablate/${t.subspace ?? 'traits'}` : t.method;
}

/**
 * A seed's preventative trials. Interpretations before version 11 recorded one additive trial as an object, with
 * `layer` for `layers` and no method; they read as that one 'add' trial.
 */
export function preventativeTrialsOf(it: InterpretSummary | undefined): PreventativeTrial[] {
  const recorded = it?.preventative as unknown;
  if (!recorded) return [];
  if (Array.isArray(recorded)) return recorded as PreventativeTrial[];
  const { layer, ...rest } = recorded as Omit<PreventativeTrial, 'method' | 'layers'> & { layer: number };
  return [{ ...rest, method: 'add', layers: [layer] }];
}

/**
 * The methods the preventative goal (I4) is read on, the first that ran. Since interpretation version 16: concept
 * ablation of the off-target traits' vectors whole (not orthogonal to the fine-tune domain's), chosen on the models
 * of an earlier 3-seed run (a development set), where it cut the drop by 0.92 on average (0.98, 0.98, 0.80; coding
 * still learned in every seed) against 0.63 for the fine-tune's own activation shift, 0.52 for the traits' vectors
 * orthogonal to the fine-tune domain's and 0.19 for random directions of the same size (docs/interpret.md). At
 * version 15 the shift (chosen there over the traits' vectors); before it, the traits' vectors (chosen over adding one
 * vector at one layer).
 */
export const PREVENTATIVE_GOAL_KEYS = ['ablate/traits-whole', 'ablate/shift', 'ablate/traits'];

/** Each preventative method that ran in every seed, over the seeds (in PREVENTATIVE_NAMES' order). */
export function aggregatePreventative(
  seeds: readonly { seed: number; trials: readonly PreventativeTrial[] | null }[],
): PreventativeAggregate[] {
  const keys = new Set(seeds.flatMap((s) => (s.trials ?? []).map(preventativeKey)));
  const order = Object.keys(PREVENTATIVE_NAMES);
  const rank = (k: string) => (order.includes(k) ? order.indexOf(k) : order.length);
  return [...keys]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .flatMap((key): PreventativeAggregate[] => {
      const trials = seeds.map(({ seed, trials: ts }) => ({
        seed,
        trial: (ts ?? []).find((t) => preventativeKey(t) === key),
      }));
      if (trials.length === 0 || trials.some((t) => !t.trial)) return [];
      const sum = (f: (t: PreventativeTrial) => number) => trials.reduce((a, { trial }) => a + f(trial!), 0);
      const bySeed = trials.map(({ seed, trial }) => ({
        seed,
        layers: trial!.layers,
        // A reduction of no drop is NaN, which results.json holds as null: read back, it is NaN again, not 0.
        reduction: trial!.reduction ?? NaN,
      }));
      return [
        {
          key,
          method: trials[0].trial!.method,
          reduction: estimate(bySeed.map((b) => b.reduction)),
          pooled: 1 - sum((t) => t.offTargetDrop.steered) / sum((t) => t.offTargetDrop.plain),
          targetLearned: trials.every(({ trial }) => trial!.target.steered < trial!.target.before - 0.2),
          bySeed,
          axis: trials.every(({ trial }) => trial!.axis)
            ? {
                plain: estimate(trials.map(({ trial }) => trial!.axis!.plain)),
                steered: estimate(trials.map(({ trial }) => trial!.axis!.steered)),
              }
            : null,
        },
      ];
    });
}

/** The aggregate the preventative goal (I4) is read on: the first of PREVENTATIVE_GOAL_KEYS that ran, else any. */
export function preventativeGoal(
  aggregates: readonly PreventativeAggregate[],
): PreventativeAggregate | undefined {
  for (const key of PREVENTATIVE_GOAL_KEYS) {
    const found = aggregates.find((p) => p.key === key);
    if (found) return found;
  }
  return aggregates.at(0);
}

/** A preventative method's report name. */
export function preventativeName(key: string): string {
  return PREVENTATIVE_NAMES[key] ?? `concept ablation of ${key.replace(/^ablate\//, '')}`;
}
