/** The measured outcome of a run, as stored in report.json and read back by `psm report` and `psm runs`. */
import type { InterpretSummary } from '../interpret/index.ts';
import type { Estimate } from '../measurement/stats.ts';

/** The Assistant's P(good) per domain, with the Bayesian persona model's prediction for the same evidence. */
export interface DomainScore {
  domain: string;
  pGood: Estimate;
  bayes: number | null;
}

export interface BatteryResult {
  label: string;
  domains: DomainScore[];
  /** Mean over the untrained domains (not touched by post-training) of the per-domain means. */
  untrainedMean: number;
  /** Mean over domains the narrow fine-tune never touched. */
  offTargetMean: number;
}

export interface ProbePoint {
  k: number;
  /** Mean P(trait-consistent option) of the network. */
  model: number;
  /** Mean Bayesian posterior predictive for the same items. */
  bayes: number;
  /** Correlation of per-item network and Bayes values. */
  correlation: number;
  mae: number;
  n: number;
}

export interface PersonaCheck {
  byK: ProbePoint[];
  packageDeal: { evidence: 'good' | 'bad'; model: number; bayes: number; n: number }[];
  /** Mean correlation over k >= 1. */
  meanCorrelation: number;
  emerged: boolean;
  /** How each earlier scene is weighed, by k (absent in results from before it was recorded). */
  evidence?: EvidenceWeights[];
}

/** Least-squares weights of each earlier scene's valence on logit P(good), first to last (see evidenceWeights). */
export interface EvidenceWeights {
  k: number;
  n: number;
  network: number[];
  bayes: number[];
  /** The network's logit spread left after the fit (per-domain intercepts plus the evidence). */
  residualSd: number;
}

export interface PretrainProbe {
  step: number;
  tokens: number;
  loss: number;
  correlation: number;
  mae: number;
  consistency: number;
}

export interface ArmResult {
  arm: string;
  trainable: string;
  battery: BatteryResult;
  /** P(good) in the fine-tuned domain itself (did the narrow behaviour get learned?). */
  targetDomainPGood: number;
}

export interface SeedResult {
  seed: number;
  variant: string;
  pretrain: {
    steps: number;
    tokens: number;
    finalLoss: number;
    valLoss: number;
    probes: PretrainProbe[];
    seconds: number;
  };
  personaCheck: PersonaCheck;
  base: BatteryResult;
  posttrained: BatteryResult;
  arms: ArmResult[];
  /** Inside the model (persona vectors, monitoring, steering, ...); absent when config.interpret is off. */
  interpret?: InterpretSummary;
  /** Bayes's off-target change for each part of the screening trial; absent when the trial did not run. */
  screeningBayes?: { part: string; offTargetChange: number }[];
}

export interface RunResults {
  version: number;
  createdAt: string;
  config: unknown;
  world: {
    name: string;
    domains: string[];
    trainedDomains: string[];
    untrainedDomains: string[];
    finetuneDomain: string;
  };
  seeds: SeedResult[];
}
