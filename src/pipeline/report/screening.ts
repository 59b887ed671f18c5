/** Data screening over seeds: each trait vector's AUC for cheat vs control, and the screening trial where it ran. */
import { estimate, pearson, type Estimate } from '../../measurement/stats.ts';
import type { InterpretSummary } from '../../interpret/index.ts';
import type { SeedResult } from '../results.ts';

/** Data screening over seeds: each trait vector's AUC for cheat vs control, and the trial where it ran. */
export interface ScreeningAggregate {
  /** Per trait vector, over the seeds that recorded it (empty when none did). */
  aucByTrait: { trait: string; auc: Estimate }[];
  /** The screening trial, over the seeds that ran it (interpretation version 18 on); null when none did. */
  trial: {
    seeds: number;
    vector: string;
    pool: number;
    count: number;
    /**
     * Per subset (flagged, random, unflagged): the off-target change of P(good) and the target's P(good) after, and
     * Bayes's off-target change from the part's evidence (null unless every seed recorded it).
     */
    subsets: {
      name: string;
      offTargetChange: Estimate;
      target: Estimate;
      bySeed: number[];
      bayes: Estimate | null;
    }[];
    /** Correlation of the network's off-target change with Bayes's over every (seed, part); null without Bayes. */
    bayesR: number | null;
    /** Per pool source (narrow arm): mean score and AUC against the rest, over seeds, and its share of the flagged. */
    sources: { source: string; meanScore: Estimate; auc: Estimate; flaggedShare: Estimate }[];
    /** Seeds whose flagged fine-tune lowered off-target P(good) more than both the random and the unflagged one. */
    flaggedWorstSeeds: number;
  } | null;
}

/** Screening over the interpreted seeds (null when none recorded it). */
export function aggregateScreening(
  seeds: readonly Pick<SeedResult, 'interpret' | 'screeningBayes'>[],
): ScreeningAggregate | null {
  const withScreening = seeds
    .map((sd) => sd.interpret)
    .filter((it): it is InterpretSummary => Boolean(it?.screening?.length));
  const tried = seeds.filter((sd) => sd.interpret?.screeningTrial);
  if (withScreening.length === 0 && tried.length === 0) return null;
  // A pool without both cheat and control examples gives no per-trait AUC (an empty list).
  const traits = withScreening[0]?.screening!.map((x) => x.trait) ?? [];
  const trials = tried.map((sd) => sd.interpret!.screeningTrial!);
  const bayes = tried.every((sd) => sd.screeningBayes) ? tried.map((sd) => sd.screeningBayes!) : null;
  const bayesOf = (seedIndex: number, part: string) =>
    bayes?.[seedIndex].find((b) => b.part === part)?.offTargetChange ?? NaN;
  const first = trials[0];
  return {
    aucByTrait: traits.map((trait) => ({
      trait,
      auc: estimate(
        withScreening
          .map((it) => it.screening!.find((x) => x.trait === trait)?.auc ?? NaN)
          .filter(Number.isFinite),
      ),
    })),
    trial: first
      ? {
          seeds: trials.length,
          vector: first.vector,
          pool: first.pool,
          count: first.count,
          subsets: first.subsets.map(({ name }) => {
            const per = trials.map((t) => t.subsets.find((x) => x.name === name)!);
            return {
              name,
              offTargetChange: estimate(per.map((x) => x.offTargetChange)),
              target: estimate(per.map((x) => x.target)),
              bySeed: per.map((x) => x.offTargetChange),
              bayes: bayes ? estimate(trials.map((_, i) => bayesOf(i, name))) : null,
            };
          }),
          bayesR: bayes
            ? pearson(
                trials.flatMap((t) => t.subsets.map((x) => x.offTargetChange)),
                trials.flatMap((t, i) => t.subsets.map((x) => bayesOf(i, x.name))),
              )
            : null,
          sources: first.sources.map(({ source }) => {
            const per = trials.map((t) => t.sources.find((x) => x.source === source)!);
            return {
              source,
              meanScore: estimate(per.map((x) => x.meanScore)),
              auc: estimate(per.map((x) => x.auc)),
              flaggedShare: estimate(
                trials.map(
                  (t) => (t.subsets.find((x) => x.name === 'flagged')!.sources[source] ?? 0) / t.count,
                ),
              ),
            };
          }),
          flaggedWorstSeeds: trials.filter((t) => {
            const change = (n: string) => t.subsets.find((x) => x.name === n)!.offTargetChange;
            return change('flagged') < change('random') && change('flagged') < change('unflagged');
          }).length,
        }
      : null,
  };
}
