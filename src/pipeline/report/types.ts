/** What the report says about a run: its seeds pooled (summary.ts) and the goals read on them (goals.ts). */
import type { Estimate } from '../../measurement/stats.ts';
import type { PreventativeAggregate } from './preventative.ts';
import type { ScreeningAggregate } from './screening.ts';

/** The interpretation's measurements pooled over seeds. */
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
