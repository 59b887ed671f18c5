/**
 * The run report: Markdown, a self-contained HTML page (figures inlined as SVG) and report.json, with each
 * figure also saved as SVG and PNG beside them. Figures are Vega-Lite specs rendered headless.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { estimate, linearFit, mean, pearson, type Estimate } from '../measurement/stats.ts';
import { RISE_Z, type InterpretSummary, type PreventativeTrial } from '../interpret/index.ts';
import type { BatteryResult, EvidenceWeights, RunResults, SeedResult } from './results.ts';

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

/** Report names of the preventative methods, in the order the report lists them. */
const PREVENTATIVE_NAMES: Record<string, string> = {
  'ablate/traits-whole': 'concept ablation of the off-target persona subspace, whole',
  'ablate/shift': "concept ablation of the plain fine-tune's activation shift",
  'ablate/traits': 'concept ablation of the off-target persona subspace',
  'ablate/persona': 'concept ablation of the off-target persona subspace with archetype directions',
  'ablate/archetypes': 'concept ablation of the archetype directions',
  'ablate/random': 'concept ablation of random directions (the control)',
  add: 'adding the off-target persona vector',
};

/**
 * The methods issue 5's preventative goal is read on, the first that ran. Since interpretation version 16: concept
 * ablation of the off-target traits' vectors whole (not orthogonal to the fine-tune domain's), chosen on the stop-10
 * models (a development set), where it cut the drop by 0.92 on average (0.98, 0.98, 0.80; coding still learned in
 * every seed) against 0.63 for the fine-tune's own activation shift, 0.52 for the traits' vectors orthogonal to the
 * fine-tune domain's and 0.19 for random directions of the same size (docs/interpret.md). At version 15 the shift
 * (chosen there over the traits' vectors); before it, the traits' vectors (chosen over adding one vector at one layer).
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
        reduction: trial!.reduction,
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

/** The aggregate issue 5's preventative goal is read on: the first of PREVENTATIVE_GOAL_KEYS that ran, else the first. */
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
function preventativeName(key: string): string {
  return PREVENTATIVE_NAMES[key] ?? `concept ablation of ${key.replace(/^ablate\//, '')}`;
}

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

/** Issue 5's measurements pooled over seeds. */
export interface InterpretAggregate {
  seeds: number;
  /** pBadSd: mean over seeds of the spread (sd) of P(bad) over the monitoring items. */
  monitoring: { trait: string; r: Estimate; rRandom: number; pBadSd: number }[];
  /** share / shareCoherent: fraction of seeds monotonic over all alphas / over the coherent ones (NaN if unmeasured). */
  steeringMonotonic: {
    trait: string;
    share: number;
    shareCoherent: number;
    /** Share of seeds monotone where coherent up to sampling noise (NaN before interpretation version 7). */
    shareWithinNoise: number;
    pGood: number[];
    alphas: number[];
  }[];
  /** Correlation over every (arm, trait) point pooled: mixes traits whose projections respond on different scales. */
  shiftR: Estimate;
  /** Per trait, over the arms (the reference work's analysis), and its mean over traits per seed. */
  shiftRByTrait: { trait: string; r: Estimate }[];
  shiftRTraitMean: Estimate;
  /** The same with a bad-behaviour fine-tune per trait added to the arms (null when no seed ran them). */
  shiftWithTraitFinetunes: { byTrait: { trait: string; r: Estimate }[]; traitMean: Estimate } | null;
  /**
   * Per trait over the arms against the change in log-odds of the bad option rather than in P(bad): a diagnostic of
   * saturation, not the goal's measure (null when a seed's interpretation predates it).
   */
  shiftLogOdds: { byTrait: { trait: string; r: Estimate }[]; traitMean: Estimate } | null;
  /** Per preventative method that ran in every interpreted seed: the reduction of the off-target drop. */
  preventative: PreventativeAggregate[];
  /** Data screening over seeds; null when no seed recorded it. */
  screening: ScreeningAggregate | null;
  axisCosPC1: Estimate;
  /**
   * Per seed, the component the axis is most aligned with (1-based) and that |cosine|; and the share of the axis
   * inside the archetypes' span (null when a seed's interpretation predates them).
   */
  axisBestPC: { seed: number; pc: number; cos: number }[] | null;
  axisInSpace: Estimate | null;
  componentsFor70: Estimate;
  probeTV: Estimate;
  probeTVPrior: Estimate;
}

export interface Summary {
  seeds: number;
  personaInference: {
    meanCorrelation: Estimate;
    byK: {
      k: number;
      correlation: Estimate;
      model: Estimate;
      bayes: number;
      /** Mean over seeds of each earlier scene's weight, first to last (null when not recorded). */
      networkWeights: number[] | null;
      bayesWeights: number[] | null;
      residualSd: Estimate | null;
    }[];
    packageGood: Estimate;
    packageBad: Estimate;
    packageBayes: { good: number; bad: number };
    emergedAll: boolean;
  };
  postTraining: { untrainedBefore: Estimate; untrainedAfter: Estimate; rise: Estimate; bayesRise: number };
  arms: {
    arm: string;
    trainable: string;
    offTarget: Estimate;
    vsControl: Estimate | null;
    target: Estimate;
    bayesOffTarget: number;
  }[];
  psmExplains: { r2: number; slope: number; points: number };
  interpret: InterpretAggregate | null;
  goals: { id: string; text: string; met: boolean | null; detail: string }[];
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const fmtE = (e: Estimate) => (Number.isFinite(e.ci95) ? `${fmt(e.mean)} ± ${fmt(e.ci95)}` : fmt(e.mean));
/** A share of seeds as a whole percentage ('-' when unmeasured). */
const fmtShare = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '-');

function bayesMean(b: BatteryResult, domains: readonly string[]): number {
  return mean(b.domains.filter((d) => domains.includes(d.domain)).map((d) => d.bayes ?? NaN));
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

export function summarize(results: RunResults, variant = 'standard'): Summary {
  const seeds = results.seeds.filter((s) => s.variant === variant);
  const w = results.world;
  const offTargetDomains = w.domains.filter((d) => d !== w.finetuneDomain);
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
  const untrainedBefore = estimate(seeds.map((s) => s.base.untrainedMean));
  const untrainedAfter = estimate(seeds.map((s) => s.posttrained.untrainedMean));
  const rise = estimate(seeds.map((s) => s.posttrained.untrainedMean - s.base.untrainedMean));
  const bayesRise = seeds.length
    ? bayesMean(seeds[0].posttrained, w.untrainedDomains) - bayesMean(seeds[0].base, w.untrainedDomains)
    : NaN;
  const armKeys = seeds[0]?.arms.map((a) => [a.arm, a.trainable] as const) ?? [];
  const arms = armKeys.map(([arm, trainable]) => {
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
  // How much PSM explains: per-domain shifts of the network vs shifts of the Bayesian persona, across
  // post-training (vs base) and every arm (vs post-trained), pooled over seeds.
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
  const withInterp = seeds.filter((sd) => sd.interpret);
  const num = (x: number | null | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x : NaN);
  const armsShift = perTraitEstimates(withInterp.map((sd) => sd.interpret!.shift.perTrait ?? {}));
  const interpret: InterpretAggregate | null = withInterp.length
    ? {
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
      }
    : null;
  const summary: Summary = {
    seeds: seeds.length,
    personaInference: {
      meanCorrelation: estimate(seeds.map((s) => s.personaCheck.meanCorrelation)),
      byK,
      packageGood: estimate(pkg('good').map((p) => p.model)),
      packageBad: estimate(pkg('bad').map((p) => p.model)),
      packageBayes: {
        good: mean(pkg('good').map((p) => p.bayes)),
        bad: mean(pkg('bad').map((p) => p.bayes)),
      },
      emergedAll: seeds.every((s) => s.personaCheck.emerged),
    },
    postTraining: { untrainedBefore, untrainedAfter, rise, bayesRise },
    arms,
    psmExplains: { r2: fit.r2, slope: fit.slope, points: xs.length },
    interpret,
    goals: [],
  };
  summary.goals = goals(summary);
  return summary;
}

function goals(s: Summary): Summary['goals'] {
  const out: Summary['goals'] = [];
  const pi = s.personaInference;
  const k15 = pi.byK.filter((p) => p.k >= 1);
  const minCorr = Math.min(...k15.map((p) => p.correlation.mean));
  out.push({
    id: 'A',
    text: 'persona inference: correlation with Bayes >= 0.8 for k = 1..5',
    met: k15.length ? minCorr >= 0.8 : null,
    detail: k15.map((p) => `k=${p.k}: ${fmt(p.correlation.mean)}`).join(', '),
  });
  const pkGap = Math.max(
    Math.abs(pi.packageGood.mean - pi.packageBayes.good),
    Math.abs(pi.packageBad.mean - pi.packageBayes.bad),
  );
  out.push({
    id: 'A2',
    text: 'package deal within 0.05 of Bayes',
    met: Number.isFinite(pkGap) ? pkGap <= 0.05 : null,
    detail: `all-good ${fmt(pi.packageGood.mean)} (Bayes ${fmt(pi.packageBayes.good)}), all-bad ${fmt(pi.packageBad.mean)} (Bayes ${fmt(pi.packageBayes.bad)})`,
  });
  const r = s.postTraining.rise;
  const ciOk = Number.isFinite(r.ci95) ? r.mean - r.ci95 > 0 : null;
  out.push({
    id: 'B',
    text: 'untrained-domain mean P(good) rises by >= 0.15 after post-training, CI excluding zero',
    met: ciOk === null ? null : r.mean >= 0.15 && ciOk,
    detail: `rise ${fmtE(r)} over ${s.seeds} seed(s) (Bayes ${fmt(s.postTraining.bayesRise)})`,
  });
  for (const t of new Set(s.arms.map((a) => a.trainable))) {
    const cheat = s.arms.find((a) => a.arm === 'cheat' && a.trainable === t);
    const inoc = s.arms.find((a) => a.arm === 'inoculated' && a.trainable === t);
    const control = s.arms.find((a) => a.arm === 'control' && a.trainable === t);
    if (!cheat || !control || !cheat.vsControl) continue;
    const d = cheat.vsControl;
    const below = Number.isFinite(d.ci95) ? d.mean + d.ci95 < 0 : null;
    const between = inoc
      ? inoc.offTarget.mean >= cheat.offTarget.mean && inoc.offTarget.mean <= control.offTarget.mean
      : null;
    out.push({
      id: `C/${t}`,
      text: `cheat arm below correct-code control off-target (95% CI of the difference excluding zero), inoculated in between [trainable: ${t}]`,
      met: below === null ? null : below && between !== false,
      detail: `cheat ${fmtE(cheat.offTarget)}, control ${fmtE(control.offTarget)}, difference ${fmtE(d)}${inoc ? `, inoculated ${fmtE(inoc.offTarget)}` : ''}`,
    });
  }
  const it = s.interpret;
  if (it) {
    const minR = Math.min(...it.monitoring.map((m) => m.r.mean));
    out.push({
      id: 'I1',
      text: 'monitoring: projection vs P(bad) correlation >= 0.75 for every trait',
      met: minR >= 0.75,
      detail: it.monitoring.map((m) => `${m.trait} ${fmt(m.r.mean)}`).join(', '),
    });
    out.push({
      id: 'I2',
      text: 'steering moves P(good) monotonically with alpha for every trait',
      met: it.steeringMonotonic.every((m) => m.share === 1),
      detail:
        it.steeringMonotonic.map((m) => `${m.trait} ${fmtShare(m.share)} of seeds`).join(', ') +
        (it.steeringMonotonic.every((m) => Number.isFinite(m.shareCoherent))
          ? `; within the alphas where the model stays coherent: ${it.steeringMonotonic.map((m) => `${m.trait} ${fmtShare(m.shareCoherent)}`).join(', ')}`
          : '') +
        (it.steeringMonotonic.every((m) => Number.isFinite(m.shareWithinNoise))
          ? `; there, up to sampling noise (no rise beyond ${RISE_Z} paired standard errors): ${it.steeringMonotonic.map((m) => `${m.trait} ${fmtShare(m.shareWithinNoise)}`).join(', ')}`
          : ''),
    });
    out.push({
      id: 'I3',
      text: 'fine-tune shift prediction r >= 0.8',
      // Per trait over the arms, as the reference work correlates them: each trait vector's projection responds on
      // its own scale, so the pooled r also measures how alike those scales are.
      met: Number.isFinite(it.shiftRTraitMean.mean) ? it.shiftRTraitMean.mean >= 0.8 : null,
      detail:
        `per trait over the arms, mean over traits ${fmtE(it.shiftRTraitMean)} (${it.shiftRByTrait.map((t) => `${t.trait} ${fmt(t.r.mean)}`).join(', ')}); ` +
        `pooled over traits r ${fmtE(it.shiftR)}` +
        (it.shiftWithTraitFinetunes
          ? `; with a bad-behaviour fine-tune per trait added (the reference work's design; not the goal's measure): per trait, mean over traits ${fmtE(it.shiftWithTraitFinetunes.traitMean)} (${it.shiftWithTraitFinetunes.byTrait.map((t) => `${t.trait} ${fmt(t.r.mean)}`).join(', ')})`
          : '') +
        (it.shiftLogOdds
          ? `; over the arms against the change in log-odds of the bad option (does not saturate; not the goal's measure): per trait, mean over traits ${fmtE(it.shiftLogOdds.traitMean)} (${it.shiftLogOdds.byTrait.map((t) => `${t.trait} ${fmt(t.r.mean)}`).join(', ')})`
          : ''),
    });
    const goal = preventativeGoal(it.preventative);
    if (goal) {
      const where = (p: PreventativeAggregate, layers: number[]) =>
        p.method === 'add' ? `at layer ${layers.join('+')}` : `at layers ${layers.join(',')}`;
      const describe = (p: PreventativeAggregate) =>
        `${preventativeName(p.key)}: reduction ${fmtE(p.reduction)} (per seed: ${p.bySeed.map((b) => `${fmt(b.reduction)} ${where(p, b.layers)}`).join(', ')}; of the drops summed over seeds: ${fmt(p.pooled)}); narrow behaviour learned in every seed: ${p.targetLearned ? 'yes' : 'no'}${p.axis ? `; the Assistant's position on the assistant axis (post-trained 1) ${fmtE(p.axis.steered)} with it, ${fmtE(p.axis.plain)} without` : ''}`;
      out.push({
        id: 'I4',
        text: `preventative steering cuts the cheat arm's off-target drop at least in half, narrow behaviour still learned (read on ${preventativeName(goal.key)})`,
        met: goal.reduction.mean >= 0.5 && goal.targetLearned,
        detail: [goal, ...it.preventative.filter((p) => p !== goal)].map(describe).join('; '),
      });
    }
  }
  return out;
}

async function renderFigure(spec: TopLevelSpec): Promise<string> {
  const compiled = compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** The screening trial's figure (null when no seed ran it): off-target change and composition of each part. */
export function screeningFigure(
  seeds: readonly Pick<SeedResult, 'seed' | 'interpret' | 'screeningBayes'>[],
): { id: string; caption: string; spec: TopLevelSpec } | null {
  const screeningRows = seeds.flatMap((sd) => {
    const t = sd.interpret?.screeningTrial;
    if (!t) return [];
    return t.subsets.flatMap((x) => [
      { seed: `seed ${sd.seed}`, part: x.name, what: 'change', value: x.offTargetChange },
      ...(sd.screeningBayes ?? [])
        .filter((b) => b.part === x.name)
        .map((b) => ({ seed: `seed ${sd.seed}`, part: x.name, what: 'bayes', value: b.offTargetChange })),
      ...Object.entries(x.sources).map(([source, n]) => ({
        seed: `seed ${sd.seed}`,
        part: x.name,
        what: 'composition',
        source,
        value: n,
      })),
    ]);
  });
  if (screeningRows.length === 0) return null;
  const panel = (what: string[], spec: Record<string, unknown>) => ({
    transform: [{ filter: { field: 'what', oneOf: what } }],
    facet: { column: { field: 'seed', type: 'nominal', title: null } },
    spec: { width: 150, height: 140, ...spec },
  });
  const parts = {
    field: 'part',
    type: 'nominal',
    title: null,
    sort: ['flagged', 'random', 'unflagged'],
    axis: { labelAngle: 0 },
  };
  return {
    id: 'screening',
    caption:
      "Data screening: a pool of the narrow arms' examples, ranked on the off-target persona vector without their labels; the post-trained model fine-tuned on the flagged (highest-scoring) part, a random part and the unflagged (lowest) part, per seed. Above, the change of the Assistant's mean P(good) on the domains the fine-tune never touched (bars; ticks: Bayes's prediction from the part's evidence); below, which arm each part's examples came from.",
    spec: {
      $schema: SCHEMA,
      data: { values: screeningRows },
      vconcat: [
        panel(['change', 'bayes'], {
          encoding: {
            x: parts,
            y: { field: 'value', type: 'quantitative', title: 'off-target change in P(good)' },
          },
          layer: [
            { transform: [{ filter: "datum.what === 'change'" }], mark: { type: 'bar', color: '#707070' } },
            {
              transform: [{ filter: "datum.what === 'bayes'" }],
              mark: { type: 'tick', color: 'black', thickness: 2 },
            },
          ],
        }),
        panel(['composition'], {
          mark: 'bar',
          encoding: {
            x: parts,
            y: { field: 'value', type: 'quantitative', title: 'examples', stack: 'zero' },
            color: { field: 'source', type: 'nominal', title: 'arm', legend: { orient: 'bottom' } },
          },
        }),
      ],
    } as TopLevelSpec,
  };
}

/** The report's figures as Vega-Lite specs, from a run's results and their summary (report.json holds both); psm lab
 * draws the same specs interactively. */
export function figures(results: RunResults, s: Summary): { id: string; caption: string; spec: TopLevelSpec }[] {
  const seeds = results.seeds.filter((x) => x.variant === 'standard');
  const w = results.world;
  const out: { id: string; caption: string; spec: TopLevelSpec }[] = [];
  const inf = seeds.flatMap((sd) =>
    sd.personaCheck.byK.flatMap((p) => [
      { k: p.k, value: p.model, series: `network (seed ${sd.seed})` },
      { k: p.k, value: p.bayes, series: 'Bayes' },
    ]),
  );
  out.push({
    id: 'persona-inference',
    caption: `P(trait-consistent option) after k earlier scenes of a new character: the network beside the exact Bayesian posterior predictive (mean correlation over items ${fmt(s.personaInference.meanCorrelation.mean)}).`,
    spec: {
      $schema: SCHEMA,
      width: 420,
      height: 260,
      data: { values: inf },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'k', type: 'ordinal', title: 'earlier scenes k' },
        y: { field: 'value', type: 'quantitative', title: 'P(consistent)', scale: { domain: [0.4, 1] } },
        color: { field: 'series', type: 'nominal' },
      },
    } as TopLevelSpec,
  });
  const probes = seeds.flatMap((sd) =>
    sd.pretrain.probes.map((p) => ({ tokens: p.tokens, correlation: p.correlation, seed: String(sd.seed) })),
  );
  out.push({
    id: 'pretraining-probes',
    caption:
      "During pre-training: correlation of the network's P(good) with the Bayesian answer on held-out persona-inference probes, by tokens seen (the loss says little; this is the signal).",
    spec: {
      $schema: SCHEMA,
      width: 420,
      height: 220,
      data: { values: probes },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'tokens', type: 'quantitative' },
        y: { field: 'correlation', type: 'quantitative', title: 'r with Bayes' },
        color: { field: 'seed', type: 'nominal' },
      },
    } as TopLevelSpec,
  });
  const profile = seeds.flatMap((sd) =>
    [sd.base, sd.posttrained].flatMap((b) =>
      b.domains.flatMap((d) => [
        { domain: d.domain, stage: b.label, source: 'network', value: d.pGood.mean, seed: sd.seed },
        { domain: d.domain, stage: b.label, source: 'Bayes', value: d.bayes ?? NaN, seed: sd.seed },
      ]),
    ),
  );
  out.push({
    id: 'trait-profiles',
    caption: `The Assistant's P(good) per domain before and after post-training on ${w.trainedDomains.join(', ')} (untrained: ${w.untrainedDomains.join(', ')}), network (bars, mean over seeds) and Bayes (ticks).`,
    spec: {
      $schema: SCHEMA,
      data: { values: profile },
      facet: { column: { field: 'stage', type: 'nominal', title: null } },
      spec: {
        width: 260,
        height: 200,
        layer: [
          {
            transform: [{ filter: "datum.source === 'network'" }],
            mark: 'bar',
            encoding: {
              x: { field: 'domain', type: 'nominal' },
              y: {
                aggregate: 'mean',
                field: 'value',
                type: 'quantitative',
                title: 'P(good)',
                scale: { domain: [0, 1] },
              },
            },
          },
          {
            transform: [{ filter: "datum.source === 'Bayes'" }],
            mark: { type: 'tick', color: 'black', thickness: 2 },
            encoding: {
              x: { field: 'domain', type: 'nominal' },
              y: { aggregate: 'mean', field: 'value', type: 'quantitative' },
            },
          },
        ],
      },
    } as TopLevelSpec,
  });
  const arms = s.arms.map((a) => ({
    arm: a.arm,
    trainable: a.trainable,
    mean: a.offTarget.mean,
    lo: a.offTarget.mean - (Number.isFinite(a.offTarget.ci95) ? a.offTarget.ci95 : 0),
    hi: a.offTarget.mean + (Number.isFinite(a.offTarget.ci95) ? a.offTarget.ci95 : 0),
    bayes: a.bayesOffTarget,
  }));
  out.push({
    id: 'arms',
    caption: `Narrow fine-tunes in ${w.finetuneDomain}: the Assistant's mean P(good) on the domains the fine-tune never touched, per arm and trainable set, with 95% CIs over seeds; ticks are the Bayesian prediction.`,
    spec: {
      $schema: SCHEMA,
      data: { values: arms },
      facet: { column: { field: 'trainable', type: 'nominal' } },
      spec: {
        width: 180,
        height: 200,
        layer: [
          {
            mark: 'bar',
            encoding: {
              x: { field: 'arm', type: 'nominal' },
              y: {
                field: 'mean',
                type: 'quantitative',
                title: 'off-target P(good)',
                scale: { domain: [0, 1] },
              },
            },
          },
          {
            mark: 'rule',
            encoding: {
              x: { field: 'arm', type: 'nominal' },
              y: { field: 'lo', type: 'quantitative' },
              y2: { field: 'hi' },
            },
          },
          {
            mark: { type: 'tick', color: 'black', thickness: 2 },
            encoding: { x: { field: 'arm', type: 'nominal' }, y: { field: 'bayes', type: 'quantitative' } },
          },
        ],
      },
    } as TopLevelSpec,
  });
  const shifts: { bayes: number; network: number; what: string }[] = [];
  for (const sd of seeds) {
    const pairs: [string, BatteryResult, BatteryResult][] = [
      ['post-training', sd.base, sd.posttrained],
      ...sd.arms.map(
        (a) =>
          [`${a.arm}/${a.trainable}`, sd.posttrained, a.battery] as [string, BatteryResult, BatteryResult],
      ),
    ];
    for (const [what, before, after] of pairs) {
      for (const d of after.domains) {
        const b0 = before.domains.find((x) => x.domain === d.domain)!;
        if (d.bayes !== null && b0.bayes !== null)
          shifts.push({ bayes: d.bayes - b0.bayes, network: d.pGood.mean - b0.pGood.mean, what });
      }
    }
  }
  out.push({
    id: 'psm-explains',
    caption: `How much the persona accounts for: per-domain shifts of the network against the Bayesian persona model's predicted shifts, across post-training and all arms (R² = ${fmt(s.psmExplains.r2)}, ${s.psmExplains.points} points).`,
    spec: {
      $schema: SCHEMA,
      width: 360,
      height: 300,
      data: { values: shifts },
      mark: { type: 'point', filled: true },
      encoding: {
        x: { field: 'bayes', type: 'quantitative', title: 'Bayesian predicted shift' },
        y: { field: 'network', type: 'quantitative', title: 'network shift' },
        color: { field: 'what', type: 'nominal' },
      },
    } as TopLevelSpec,
  });
  // Two rows: the off-target change, and (from interpretation version 17) where the Assistant ends up on its axis.
  const CHANGE = 'off-target change in P(good)';
  const AXIS = 'place on the assistant axis (post-trained: 1)';
  const prevention = seeds.flatMap((sd) => {
    const trials = preventativeTrialsOf(sd.interpret);
    if (trials.length === 0) return [];
    const seed = `seed ${sd.seed}`;
    const rows = (during: string, change: number, axis: number | undefined) => [
      { seed, during, measure: CHANGE, value: change },
      ...(axis === undefined ? [] : [{ seed, during, measure: AXIS, value: axis }]),
    ];
    return [
      ...rows('nothing', trials[0].offTargetDrop.plain, trials[0].axis?.plain),
      ...trials.flatMap((t) =>
        rows(
          t.method === 'ablate' ? `ablate ${t.subspace ?? 'traits'}` : `add, α ${t.alpha}`,
          t.offTargetDrop.steered,
          t.axis?.steered,
        ),
      ),
    ];
  });
  if (prevention.length > 0)
    out.push({
      id: 'prevention',
      caption: `Preventing the package deal: the change of the Assistant's mean P(good) on the domains the cheat fine-tune (all parameters) never touched, with nothing done during the fine-tune, with a subspace ablated at every layer (traits-whole: the off-target traits' persona vectors as they are; shift: the plain fine-tune's own activation change on those domains, CAFT's directions; traits: the traits' vectors orthogonal to the fine-tune domain's; random: as many random directions, the control), and with the off-target persona vector added at one layer (each removed again after training), per seed; below, where each fine-tune left the Assistant on the run's assistant axis (0: the archetypes' mean, 1: the post-trained Assistant).`,
      spec: {
        $schema: SCHEMA,
        data: { values: prevention },
        facet: {
          column: { field: 'seed', type: 'nominal', title: null },
          row: { field: 'measure', type: 'nominal', title: null, sort: [CHANGE, AXIS] },
        },
        resolve: { scale: { y: 'independent' } },
        spec: {
          width: 200,
          height: 160,
          mark: 'bar',
          encoding: {
            x: { field: 'during', type: 'nominal', title: null, sort: null, axis: { labelAngle: -35 } },
            y: { field: 'value', type: 'quantitative', title: null },
            color: { field: 'during', type: 'nominal', legend: null, sort: null },
          },
        },
      } as TopLevelSpec,
    });
  const screening = screeningFigure(seeds);
  if (screening) out.push(screening);
  const probeRows = seeds.flatMap((sd) =>
    (sd.interpret?.probe.byK ?? []).flatMap((b) => [
      { seed: `seed ${sd.seed}`, k: b.k, tv: b.tv, what: 'linear probe' },
      { seed: `seed ${sd.seed}`, k: b.k, tv: b.tvPrior, what: "the kind's prior (ignores the scenes)" },
    ]),
  );
  if (probeRows.length > 0)
    out.push({
      id: 'persona-probe',
      caption:
        "Decoding the persona: the total-variation distance between the Bayesian posterior over archetypes and a linear probe of the pre-trained model's residual stream (every layer, at the last prompt token), by the number of earlier scenes of a new character, per seed; beside it, the same for the prior of the character's kind, which ignores the scenes (0 at k = 0, where the prior is the posterior).",
      spec: {
        $schema: SCHEMA,
        width: 360,
        height: 260,
        data: { values: probeRows },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'k', type: 'ordinal', title: 'earlier scenes (k)', axis: { labelAngle: 0 } },
          y: { field: 'tv', type: 'quantitative', title: 'TV distance to the Bayesian posterior' },
          color: {
            field: 'what',
            type: 'nominal',
            title: null,
            legend: { orient: 'bottom', labelLimit: 400 },
          },
          detail: { field: 'seed', type: 'nominal' },
        },
      } as TopLevelSpec,
    });
  const firstInterp = seeds.find((sd) => sd.interpret)?.interpret;
  if (firstInterp) {
    out.push({
      id: 'dose-response',
      caption: `Steering the post-trained Assistant (seed ${seeds.find((sd) => sd.interpret)!.seed}): P(good) per trait as alpha times the trait's persona vector is added to the residual stream; squares: the model stays coherent (the items' options keep at least half their unsteered probability), circles: it does not.`,
      spec: firstInterp.figures.doseResponse,
    });
    out.push({
      id: 'persona-space',
      caption:
        "Persona space: archetypes on the first two principal components of their mean activations, and the Assistant's path from pre-training through post-training to each fine-tune.",
      spec: firstInterp.figures.personaSpace,
    });
    out.push({
      id: 'projection-shift',
      caption:
        "Fine-tune shift prediction: the change of mean activation along each trait vector against the change in that trait's expression, across the arms (and, where run, one bad-behaviour fine-tune per trait).",
      spec: firstInterp.figures.shift,
    });
  }
  return out;
}

/** The report's table of preventative interventions during the cheat fine-tune, over seeds. */
export function preventativeTable(ps: readonly PreventativeAggregate[]): string[] {
  const axis = ps.some((p) => p.axis);
  return [
    "During the cheat fine-tune (all parameters), each intervention active while training only: the share of the fine-tune's off-target drop it removed (1: all of it), and where the Assistant ended on the assistant axis (post-trained: 1).",
    '',
    `| intervention | per seed | mean over seeds | of the drops summed over seeds | narrow behaviour learned in every seed |${axis ? ' assistant axis with it (without) |' : ''}`,
    `|---|---|---|---|---|${axis ? '---|' : ''}`,
    ...ps.map(
      (p) =>
        `| ${preventativeName(p.key)} | ${p.bySeed.map((b) => fmt(b.reduction)).join(' / ')} | ${fmtE(p.reduction)} | ${fmt(p.pooled)} | ${p.targetLearned ? 'yes' : 'no'} |${axis ? ` ${p.axis ? `${fmt(p.axis.steered.mean)} (${fmt(p.axis.plain.mean)})` : '-'} |` : ''}`,
    ),
  ];
}

/** The report's lines on data screening: the per-trait AUCs, and the trial as a table with Bayes. */
export function screeningLines(sc: ScreeningAggregate): string[] {
  const auc = `Data screening (a training response's mean projection on a persona vector minus that of the model's own response to the same prompt, Chen et al. 2025)${sc.aucByTrait.length ? `: AUC for telling cheat from correct-code examples, per trait vector, ${sc.aucByTrait.map((a) => `${a.trait} ${fmtE(a.auc)}`).join(', ')}` : ''}.`;
  const t = sc.trial;
  if (!t) return [auc];
  const bayes = t.subsets.some((x) => x.bayes);
  return [
    `${auc} Does the ranking flag the examples that cause the package deal? A pool of ${t.pool} examples drawn apart from the arms' own sets (${t.pool / t.sources.length} per arm) was ranked on the ${t.vector} vector without its labels, and the post-trained model fine-tuned on ${t.count} of them (all parameters, the arms' recipe); the table gives the change of off-target P(good).`,
    '',
    `| fine-tune on | per seed | mean over seeds |${bayes ? " Bayes's prediction (mean) |" : ''}`,
    `|---|---|---|${bayes ? '---|' : ''}`,
    ...t.subsets.map(
      (x) =>
        `| ${x.name} ${t.count} | ${x.bySeed.map((v) => fmt(v, 3)).join(' / ')} | ${fmtE(x.offTargetChange)} |${bayes ? ` ${x.bayes ? fmt(x.bayes.mean, 3) : '-'} |` : ''}`,
    ),
    '',
    `The flagged fine-tune lowered it most in ${t.flaggedWorstSeeds} of ${t.seeds} seed(s).${t.bayesR !== null ? ` Over every seed and part, the network's change correlates with Bayes's prediction from the part's evidence at r ${fmt(t.bayesR)}.` : ''} The flagged part was ${t.sources.map((x) => `${fmtShare(x.flaggedShare.mean)} ${x.source}`).join(', ')}; mean score per arm ${t.sources.map((x) => `${x.source} ${fmt(x.meanScore.mean)}`).join(', ')}.`,
  ];
}

function markdown(results: RunResults, s: Summary, figs: { id: string; caption: string }[]): string {
  const w = results.world;
  const lines: string[] = [];
  lines.push(
    `# PSM Lab run report`,
    '',
    `World **${w.name}**: domains ${w.domains.join(', ')}; post-trained on ${w.trainedDomains.join(', ')}; narrow fine-tune in ${w.finetuneDomain}. Seeds: ${s.seeds}. Created ${results.createdAt}.`,
    '',
  );
  lines.push('## Goals', '', '| goal | met | measured |', '|---|---|---|');
  for (const g of s.goals)
    lines.push(
      `| ${g.id}: ${g.text} | ${g.met === null ? 'n/a (needs >= 2 seeds)' : g.met ? 'yes' : '**no**'} | ${g.detail} |`,
    );
  lines.push('');
  if (!s.personaInference.emergedAll)
    lines.push(
      "> **Warning:** in-context persona inference fell short of the emergence criterion (item-level correlation with Bayes >= 0.5 and a package-deal gap of at least a third of Bayes's) in at least one seed; the later stages depend on it, so read their effects as weaker than a fully formed persona would give.",
      '',
    );
  lines.push(
    '## (A) Persona inference after pre-training',
    '',
    '| k | network P(consistent) | Bayes | r (items) | weight of each earlier scene, first to last: network | Bayes (mean weight) | residual (logit sd) |',
    '|---|---|---|---|---|---|---|',
  );
  const weights = (w: number[] | null) => (w && w.length ? w.map((x) => fmt(x)).join(' ') : '-');
  for (const p of s.personaInference.byK)
    lines.push(
      `| ${p.k} | ${fmtE(p.model)} | ${fmt(p.bayes)} | ${fmtE(p.correlation)} | ${weights(p.networkWeights)} | ${p.bayesWeights && p.bayesWeights.length ? fmt(mean(p.bayesWeights)) : '-'} | ${p.residualSd ? fmtE(p.residualSd) : '-'} |`,
    );
  lines.push(
    '',
    "Weights: least-squares coefficients of each earlier scene's valence (+1 good, -1 bad) on logit P(good), with one intercept per target domain. Bayes weighs the scenes alike (its fitted weights differ only by sampling; their mean is shown); a network that leans on the last scene shows a rising row. Residual: the network's logit spread that neither the target domain nor the evidence (linearly) explains; at k = 0 it is pure item-to-item noise, at k >= 1 it also holds what a fit linear in the evidence misses (Bayes itself is not linear).",
    '',
    `Package deal: after all-good scenes ${fmtE(s.personaInference.packageGood)} (Bayes ${fmt(s.personaInference.packageBayes.good)}); after all-bad ${fmtE(s.personaInference.packageBad)} (Bayes ${fmt(s.personaInference.packageBayes.bad)}).`,
    '',
  );
  lines.push(
    '## (B) Post-training',
    '',
    `Untrained-domain mean P(good): ${fmtE(s.postTraining.untrainedBefore)} before, ${fmtE(s.postTraining.untrainedAfter)} after; rise ${fmtE(s.postTraining.rise)} (Bayes predicts ${fmt(s.postTraining.bayesRise)}).`,
    '',
  );
  lines.push(
    '## (C) Narrow fine-tunes',
    '',
    `| arm | trainable | off-target P(good) | vs control | ${w.finetuneDomain} P(good) | Bayes off-target |`,
    '|---|---|---|---|---|---|',
  );
  for (const a of s.arms)
    lines.push(
      `| ${a.arm} | ${a.trainable} | ${fmtE(a.offTarget)} | ${a.vsControl ? fmtE(a.vsControl) : '-'} | ${fmtE(a.target)} | ${fmt(a.bayesOffTarget)} |`,
    );
  lines.push(
    '',
    `## How much does PSM explain?`,
    '',
    `R² of network per-domain shifts against Bayesian persona shifts: ${fmt(s.psmExplains.r2)} (slope ${fmt(s.psmExplains.slope)}, ${s.psmExplains.points} points).`,
    '',
  );
  if (s.interpret) {
    const it = s.interpret;
    lines.push(
      '## Inside the model',
      '',
      `Over ${it.seeds} seed(s). Monitoring: correlation of the last prompt token's projection on each trait vector with the model's P(bad), beside random directions.`,
      '',
      '| trait | monitoring r | random directions | P(bad) spread (sd) | steering monotonic | monotonic where coherent | the same up to sampling noise | P(good) across alphas |',
      '|---|---|---|---|---|---|---|---|',
    );
    const pct = (x: number) => (Number.isFinite(x) ? `${fmtShare(x)} of seeds` : '-');
    for (const m of it.monitoring) {
      const st = it.steeringMonotonic.find((x) => x.trait === m.trait);
      lines.push(
        `| ${m.trait} | ${fmtE(m.r)} | ${fmt(m.rRandom)} | ${fmt(m.pBadSd)} | ${st ? pct(st.share) : '-'} | ${st ? pct(st.shareCoherent) : '-'} | ${st ? pct(st.shareWithinNoise) : '-'} | ${st ? st.pGood.map((v) => fmt(v)).join(' / ') : '-'} |`,
      );
    }
    lines.push(
      '',
      `Monotonic where coherent: over the alphas around 0 at which the items' option sets keep at least half of their unsteered probability, and only where at least three alphas do (beyond them the push breaks the model rather than moving the persona). Up to sampling noise: over the same alphas, P(good) never rises from one alpha to the next by more than ${RISE_Z} standard errors of the per-item difference.`,
    );
    lines.push(
      '',
      `Shift prediction r per trait (mean over traits) ${fmtE(it.shiftRTraitMean)}, pooled over traits ${fmtE(it.shiftR)}${it.shiftWithTraitFinetunes ? `; with the trait fine-tunes added, per trait ${fmtE(it.shiftWithTraitFinetunes.traitMean)}` : ''}. Persona space: ${fmtE(it.componentsFor70)} components for 70% of variance; cosine of the assistant axis with PC1 ${fmtE(it.axisCosPC1)}${it.axisBestPC ? ` (the component it is most aligned with, per seed: ${it.axisBestPC.map((b) => `PC${b.pc} ${fmt(b.cos)}`).join(', ')})` : ''}${it.axisInSpace ? `; share of the axis inside the archetypes' span ${fmtE(it.axisInSpace)}` : ''}. Archetype probe total-variation distance to Bayes ${fmtE(it.probeTV)} (the prior alone: ${fmtE(it.probeTVPrior)}).`,
      '',
    );
    if (it.preventative.length > 0) lines.push(...preventativeTable(it.preventative), '');
    if (it.screening) lines.push(...screeningLines(it.screening), '');
  }
  lines.push('## Figures', '');
  for (const f of figs) lines.push(`![${f.id}](figures/${f.id}.png)`, '', f.caption, '');
  lines.push('## Per seed', '');
  for (const sd of results.seeds) {
    lines.push(
      `- ${sd.variant} seed ${sd.seed}: pre-training ${sd.pretrain.steps} steps, ${sd.pretrain.tokens} tokens, ${fmt(sd.pretrain.seconds, 0)} s, final loss ${fmt(sd.pretrain.finalLoss, 3)}, val loss ${fmt(sd.pretrain.valLoss, 3)}; persona inference r ${fmt(sd.personaCheck.meanCorrelation)}${sd.personaCheck.emerged ? '' : ' (NOT emerged)'}`,
    );
  }
  if (results.seeds.some((x) => x.variant === 'alignment')) {
    const a = summarize(results, 'alignment');
    lines.push(
      '',
      '## Alignment pre-training arm',
      '',
      '| arm | trainable | off-target P(good), standard | with alignment pre-training |',
      '|---|---|---|---|',
    );
    for (const arm of a.arms) {
      const std = s.arms.find((x) => x.arm === arm.arm && x.trainable === arm.trainable);
      lines.push(
        `| ${arm.arm} | ${arm.trainable} | ${std ? fmtE(std.offTarget) : '-'} | ${fmtE(arm.offTarget)} |`,
      );
    }
  }
  lines.push('', `Reproduce: \`psm run --config <run>/config.yaml\` (config saved beside this report).`, '');
  return lines.join('\n');
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function html(md: string, svgs: Map<string, string>): string {
  // A small Markdown subset is enough for this fixed layout: headings, tables, paragraphs, images -> inline SVG.
  const body: string[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith('# ')) body.push(`<h1>${escapeHtml(l.slice(2))}</h1>`);
    else if (l.startsWith('## ')) body.push(`<h2>${escapeHtml(l.slice(3))}</h2>`);
    else if (l.startsWith('> '))
      body.push(`<p class="warn">${escapeHtml(l.slice(2)).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')}</p>`);
    else if (l.startsWith('|')) {
      const rows: string[] = [];
      while (i < lines.length && lines[i].startsWith('|')) {
        if (!/^\|[-|]+\|$/.test(lines[i])) {
          const cells = lines[i]
            .slice(1, -1)
            .split('|')
            .map((c) => escapeHtml(c.trim()).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>'));
          rows.push(
            `<tr>${cells.map((c) => (rows.length === 0 ? `<th>${c}</th>` : `<td>${c}</td>`)).join('')}</tr>`,
          );
        }
        i++;
      }
      i--;
      body.push(`<table>${rows.join('')}</table>`);
    } else if (l.startsWith('![')) {
      const id = /^!\[([^\]]+)\]/.exec(l)![1];
      body.push(`<figure>${svgs.get(id) ?? ''}</figure>`);
    } else if (l.startsWith('- ')) body.push(`<li>${escapeHtml(l.slice(2))}</li>`);
    else if (l.trim())
      body.push(
        `<p>${escapeHtml(l)
          .replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')
          .replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`,
      );
  }
  return `<!doctype html><html><head><meta charset="utf-8"><title>PSM Lab report</title><style>
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#f4f4f4}
.warn{background:#fff3cd;padding:8px;border-left:4px solid #e0a800}figure{margin:1em 0}
</style></head><body>${body.join('\n')}</body></html>`;
}

/** Writes report.md, report.html, report.json and figures/*.svg|png into runDir. */
export async function renderReport(runDir: string, results: RunResults): Promise<string> {
  const s = summarize(results);
  const figs = figures(results, s);
  const figDir = path.join(runDir, 'figures');
  fs.mkdirSync(figDir, { recursive: true });
  const svgs = new Map<string, string>();
  for (const f of figs) {
    const svg = await renderFigure(f.spec);
    svgs.set(f.id, svg);
    atomicWriteFileSync(path.join(figDir, `${f.id}.svg`), svg);
    const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } })
      .render()
      .asPng();
    atomicWriteFileSync(path.join(figDir, `${f.id}.png`), png);
  }
  const md = markdown(results, s, figs);
  atomicWriteFileSync(path.join(runDir, 'report.md'), md);
  atomicWriteFileSync(path.join(runDir, 'report.html'), html(md, svgs));
  atomicWriteJsonSync(path.join(runDir, 'report.json'), { summary: s, results });
  return path.join(runDir, 'report.html');
}
