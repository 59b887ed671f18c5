/**
 * A run's seeds pooled into what the report says: persona inference, post-training, the narrow arms, how much the
 * persona model explains, and the interpretation, each as an estimate over seeds; then the goals read on them.
 */
import { estimate, linearFit, mean, type Estimate } from '../../measurement/stats.ts';
import type { BatteryResult, EvidenceWeights, RunResults, SeedResult } from '../results.ts';
import { goals } from './goals.ts';
import { aggregatePreventative, preventativeTrialsOf } from './preventative.ts';
import { aggregateScreening } from './screening.ts';
import type { InterpretAggregate, Summary } from './types.ts';

type World = RunResults['world'];

/** The report's summary of one variant's seeds (the standard pipeline by default). */
export function summarize(results: RunResults, variant = 'standard'): Summary {
  const seeds = results.seeds.filter((s) => s.variant === variant);
  const w = results.world;
  const summary: Summary = {
    seeds: seeds.length,
    personaInference: personaInferenceSummary(seeds),
    postTraining: postTrainingSummary(seeds, w),
    arms: armsSummary(seeds, w),
    psmExplains: psmExplainsSummary(seeds),
    interpret: interpretAggregate(seeds),
    goals: [],
  };
  summary.goals = goals(summary);
  return summary;
}

function bayesMean(b: BatteryResult, domains: readonly string[]): number {
  return mean(b.domains.filter((d) => domains.includes(d.domain)).map((d) => d.bayes ?? NaN));
}

/** (A) Per k: the network against Bayes and how it weighs each earlier scene; the package deal. */
function personaInferenceSummary(seeds: readonly SeedResult[]): Summary['personaInference'] {
  const ks = seeds[0]?.personaCheck.byK.map((p) => p.k) ?? [];
  const byK = ks.map((k) => {
    const pts = seeds.map((s) => s.personaCheck.byK.find((p) => p.k === k)!);
    const ev = seeds.map((s) => s.personaCheck.evidence?.find((e) => e.k === k));
    const recorded = ev.every((e) => e !== undefined) ? (ev as EvidenceWeights[]) : null;
    const meanWeights = (pick: (e: EvidenceWeights) => number[]) =>
      recorded ? pick(recorded[0]).map((_, j) => mean(recorded.map((e) => pick(e)[j]))) : null;
    return {
      k,
      correlation: estimate(pts.map((p) => p.correlation).filter(Number.isFinite)),
      model: estimate(pts.map((p) => p.model)),
      bayes: mean(pts.map((p) => p.bayes)),
      networkWeights: meanWeights((e) => e.network),
      bayesWeights: meanWeights((e) => e.bayes),
      residualSd: recorded ? estimate(recorded.map((e) => e.residualSd)) : null,
    };
  });
  const pkg = (v: 'good' | 'bad') =>
    seeds.map((s) => s.personaCheck.packageDeal.find((p) => p.evidence === v)!);
  return {
    meanCorrelation: estimate(seeds.map((s) => s.personaCheck.meanCorrelation)),
    byK,
    packageGood: estimate(pkg('good').map((p) => p.model)),
    packageBad: estimate(pkg('bad').map((p) => p.model)),
    packageBayes: {
      good: mean(pkg('good').map((p) => p.bayes)),
      bad: mean(pkg('bad').map((p) => p.bayes)),
    },
    emergedAll: seeds.every((s) => s.personaCheck.emerged),
  };
}

/** (B) The untrained domains' mean P(good) before and after post-training, and Bayes's rise. */
function postTrainingSummary(seeds: readonly SeedResult[], w: World): Summary['postTraining'] {
  const untrainedBefore = estimate(seeds.map((s) => s.base.untrainedMean));
  const untrainedAfter = estimate(seeds.map((s) => s.posttrained.untrainedMean));
  const rise = estimate(seeds.map((s) => s.posttrained.untrainedMean - s.base.untrainedMean));
  const bayesRise = seeds.length
    ? bayesMean(seeds[0].posttrained, w.untrainedDomains) - bayesMean(seeds[0].base, w.untrainedDomains)
    : NaN;
  return { untrainedBefore, untrainedAfter, rise, bayesRise };
}

/** (C) Per arm and trainable set: off-target P(good), its difference from the control arm, the target domain's. */
function armsSummary(seeds: readonly SeedResult[], w: World): Summary['arms'] {
  const offTargetDomains = w.domains.filter((d) => d !== w.finetuneDomain);
  const armKeys = seeds[0]?.arms.map((a) => [a.arm, a.trainable] as const) ?? [];
  return armKeys.map(([arm, trainable]) => {
    const per = seeds.map((s) => s.arms.find((a) => a.arm === arm && a.trainable === trainable)!);
    const control = seeds.map((s) => s.arms.find((a) => a.arm === 'control' && a.trainable === trainable));
    const diffs = per.map((p, i) =>
      control[i] ? p.battery.offTargetMean - control[i]!.battery.offTargetMean : NaN,
    );
    return {
      arm,
      trainable,
      offTarget: estimate(per.map((p) => p.battery.offTargetMean)),
      vsControl: arm === 'control' || diffs.some(Number.isNaN) ? null : estimate(diffs),
      target: estimate(per.map((p) => p.targetDomainPGood)),
      bayesOffTarget: bayesMean(per[0].battery, offTargetDomains),
    };
  });
}

/**
 * How much PSM explains: per-domain shifts of the network vs shifts of the Bayesian persona, across post-training
 * (vs base) and every arm (vs post-trained), pooled over seeds.
 */
function psmExplainsSummary(seeds: readonly SeedResult[]): Summary['psmExplains'] {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of seeds) {
    const pairs: [BatteryResult, BatteryResult][] = [
      [s.base, s.posttrained],
      ...s.arms.map((a) => [s.posttrained, a.battery] as [BatteryResult, BatteryResult]),
    ];
    for (const [before, after] of pairs) {
      for (const d of after.domains) {
        const b0 = before.domains.find((x) => x.domain === d.domain)!;
        if (d.bayes === null || b0.bayes === null) continue;
        xs.push(d.bayes - b0.bayes);
        ys.push(d.pGood.mean - b0.pGood.mean);
      }
    }
  }
  const fit = xs.length > 2 ? linearFit(xs, ys) : { r2: NaN, slope: NaN, intercept: NaN };
  return { r2: fit.r2, slope: fit.slope, points: xs.length };
}

/**
 * Per trait, the estimate over seeds of a per-seed r (NaN-free), and the estimate of each seed's mean over traits.
 * Traits are those of the first seed.
 */
function perTraitEstimates(perSeed: readonly Record<string, number>[]): {
  byTrait: { trait: string; r: Estimate }[];
  traitMean: Estimate;
} {
  return {
    byTrait: Object.keys(perSeed[0] ?? {}).map((trait) => ({
      trait,
      r: estimate(perSeed.map((p) => p[trait]).filter(Number.isFinite)),
    })),
    traitMean: estimate(
      perSeed.map((p) => mean(Object.values(p).filter(Number.isFinite))).filter(Number.isFinite),
    ),
  };
}

/** The interpretation over the seeds that ran it (null when none did). */
function interpretAggregate(seeds: readonly SeedResult[]): InterpretAggregate | null {
  const withInterp = seeds.filter((sd) => sd.interpret);
  if (!withInterp.length) return null;
  const num = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x : NaN);
  const armsShift = perTraitEstimates(withInterp.map((sd) => sd.interpret!.shift.perTrait ?? {}));
  return {
    seeds: withInterp.length,
    monitoring: withInterp[0].interpret!.monitoring.map((m) => ({
      trait: m.trait,
      r: estimate(
        withInterp
          .map((sd) => num(sd.interpret!.monitoring.find((x) => x.trait === m.trait)?.r))
          .filter(Number.isFinite),
      ),
      rRandom: mean(
        withInterp.map((sd) => num(sd.interpret!.monitoring.find((x) => x.trait === m.trait)?.rRandom)),
      ),
      // Interpretations before version 6 did not record it (NaN then).
      pBadSd: mean(
        withInterp.map((sd) => num(sd.interpret!.monitoring.find((x) => x.trait === m.trait)?.pBadSd)),
      ),
    })),
    steeringMonotonic: withInterp[0].interpret!.steering.map((d) => {
      const per = withInterp.map((sd) => sd.interpret!.steering.find((x) => x.trait === d.trait)!);
      return {
        trait: d.trait,
        share: mean(per.map((x) => (x.monotonic ? 1 : 0))),
        // Interpretations from before the coherence measure (version 1) have no such flag.
        shareCoherent: per.every((x) => typeof x.monotonicCoherent === 'boolean')
          ? mean(per.map((x) => (x.monotonicCoherent ? 1 : 0)))
          : NaN,
        shareWithinNoise: per.every((x) => typeof x.monotonicCoherentWithinNoise === 'boolean')
          ? mean(per.map((x) => (x.monotonicCoherentWithinNoise ? 1 : 0)))
          : NaN,
        pGood: d.alphas.map((_, i) => mean(per.map((x) => x.pGood[i]))),
        alphas: d.alphas,
      };
    }),
    shiftR: estimate(withInterp.map((sd) => num(sd.interpret!.shift.r)).filter(Number.isFinite)),
    shiftRByTrait: armsShift.byTrait,
    shiftRTraitMean: armsShift.traitMean,
    shiftLogOdds: withInterp.every((sd) => sd.interpret!.shift.perTraitLogOdds)
      ? perTraitEstimates(withInterp.map((sd) => sd.interpret!.shift.perTraitLogOdds))
      : null,
    shiftWithTraitFinetunes: withInterp.every((sd) => sd.interpret!.shift.withTraitFinetunes)
      ? perTraitEstimates(withInterp.map((sd) => sd.interpret!.shift.withTraitFinetunes!.perTrait))
      : null,
    preventative: aggregatePreventative(
      withInterp.map((sd) => ({ seed: sd.seed, trials: preventativeTrialsOf(sd.interpret) })),
    ),
    screening: aggregateScreening(withInterp),
    axisCosPC1: estimate(withInterp.map((sd) => num(sd.interpret!.space.axisCosPC1))),
    axisBestPC: withInterp.every((sd) => sd.interpret!.space.axisCosPCs)
      ? withInterp.map((sd) => {
          const cs = sd.interpret!.space.axisCosPCs.map(Math.abs);
          const i = cs.indexOf(Math.max(...cs));
          return { seed: sd.seed, pc: i + 1, cos: cs[i] };
        })
      : null,
    axisInSpace: withInterp.every((sd) => typeof sd.interpret!.space.axisInSpace === 'number')
      ? estimate(withInterp.map((sd) => num(sd.interpret!.space.axisInSpace)))
      : null,
    componentsFor70: estimate(withInterp.map((sd) => sd.interpret!.space.componentsFor70)),
    probeTV: estimate(withInterp.map((sd) => num(sd.interpret!.probe.tv))),
    probeTVPrior: estimate(withInterp.map((sd) => num(sd.interpret!.probe.tvPrior))),
  };
}
