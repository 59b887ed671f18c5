/**
 * What `interpretRun` takes and what it returns: the run options of the per-seed interpretation, and its summary,
 * written as <seedDir>/interpret/interpret.json and carried into the run's results.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { ProgressFactory } from '../measurement/progress.ts';
import type { TrainableSpec } from '../training/trainable.ts';
import type { ChatExample, NarrowArm, World } from '../world/index.ts';
import type { AblationSubspace } from './ablation-subspaces.ts';
import type { Agreement, ProbeResult } from './probe.ts';
import type { ScreeningTrial } from './screen.ts';
import type { PreventativeTrial, ShiftPoint, ShiftPrediction } from './shift.ts';
import type { AssistantPlacement, DriftTrace } from './space.ts';
import type { DoseResponse } from './steer.ts';

/** The summary's format version: raised whenever what interpret.json records or how it is measured changes. */
export const INTERPRET_VERSION = 18;

export interface InterpretRunOptions {
  world: World;
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /** Fine-tuned models of this seed. */
  armDirs: { arm: string; trainable: string; dir: string }[];
  /** The post-trained model (vectors, monitoring, steering, persona space). */
  postDir: string;
  /** The pre-trained model (start of the Assistant's path; the probe). */
  baseDir: string;
  /** Held-out items per domain for monitoring and steering (default 48; the shift uses half per model). */
  itemsPerDomain?: number;
  /** Steering strengths in units of 0.1 x the layer's residual norm (default DEFAULT_ALPHAS: [-4, -2, -1, 0, 1, 2, 4]). */
  alphas?: number[];
  /** Where vectors.safetensors and interpret.json go (default <seedDir>/interpret; null: write nothing). */
  outDir?: string | null;
  /** The narrow fine-tune's domain (default the world's datasets.narrow.domain). */
  finetuneDomain?: string;
  /** Item seed (default 1). */
  seed?: number;
  /** Multi-turn drift traces (default true). */
  drift?: boolean;
  /** Vectors used downstream: per trait the method that steers more ('best', default), or one method. */
  vectorMethod?: 'best' | 'response' | 'contrastive';
  /** Examples per arm for data screening when there is no screening trial (cheat vs control; default 32; 0 skips). */
  screeningExamples?: number;
  /**
   * The screening trial (off by default: three more fine-tunes): a pool of `perArm` examples of each of `arms` ranked
   * on the off-target persona vector, and the post-trained model fine-tuned on the `count` flagged, a random `count`
   * and the `count` unflagged examples with the given recipe (screen.ts `screeningTrial`). Its pool also serves the
   * per-trait screening.
   */
  screeningTrial?: {
    arms: NarrowArm[];
    perArm: number;
    count: number;
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
    seed: number;
  };
  /**
   * Trait fine-tunes for the shift prediction (off by default: one more fine-tune per trait): the post-trained model
   * fine-tuned on the Assistant's bad behaviour in each trait's domain, as the reference work fine-tunes on a
   * trait-eliciting dataset per trait, so that every trait moves in some model and its r measures more than noise.
   * Reported beside the arms-only prediction.
   */
  traitFinetunes?: {
    examples: number;
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
  };
  /**
   * Preventative trials (off by default: each runs the fine-tune once more): the given examples (e.g. the cheat arm)
   * from the post-trained model, plainly and under each method: 'add' (preventative steering: a vector added at one
   * layer while training) and 'ablate' (concept ablation: a subspace projected out at every layer while training,
   * once per subspace in `ablate`, default DEFAULT_ABLATION_SUBSPACES). Default: both methods.
   */
  preventative?: {
    examples: ChatExample[];
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
    seed: number;
    alpha?: number;
    trait?: string;
    methods?: PreventativeTrial['method'][];
    ablate?: AblationSubspace[];
    /**
     * The arm of `armDirs` whose model is exactly the plain fine-tune (the same examples, recipe and seed from the
     * post-trained model, as the pipeline's cheat arm with all parameters is): loaded instead of trained again.
     */
    plainArm?: { arm: string; trainable: string };
  };
}

export interface InterpretSummary {
  version: number;
  seedDir: string;
  models: { base: string; post: string; arms: { arm: string; trainable: string; hash: string }[] };
  settings: { itemsPerDomain: number; alphas: number[]; alphaUnit: string; hookKind: string };
  /** Per trait: the method used (best steering effect unless vectorMethod says otherwise), its layer, the
   * steering effect per layer of both methods, and the cosine of the two methods' vectors at that layer. */
  vectors: {
    trait: string;
    method: string;
    bestLayer: number;
    steeringEffect: number[];
    steeringMonotone: boolean[];
    steeringEffectResponse: number[];
    steeringEffectContrastive: number[];
    residualNorm: number;
    methodCosine: number;
  }[];
  traitCosines: { traits: string[]; matrix: number[][] };
  /** Projection vs P(bad) on Assistant chats after good / bad / mixed earlier turns. */
  monitoring: {
    trait: string;
    method: string;
    layer: number;
    r: number;
    rRandom: number;
    n: number;
    pBadSd: number;
  }[];
  /** The same on the world's in-context persona probes (characters in stories and chats). */
  monitoringProbes: { trait: string; layer: number; r: number; rRandom: number; n: number; pBadSd: number }[];
  steering: (DoseResponse & { ablation: { base: number; ablated: number } })[];
  capping: {
    layer: number;
    threshold: number;
    badContext: { base: number; capped: number };
    normal: { base: number; capped: number };
    n: number;
  } | null;
  shift: {
    r: number;
    rExcluding: number | null;
    excluded: string[];
    perTrait: Record<string, number>;
    perTraitLogOdds: Record<string, number>;
    points: ShiftPoint[];
    /** The same over the arms and the trait fine-tunes (models `trait-ft/<trait>`); null when not run. */
    withTraitFinetunes: Omit<ShiftPrediction, 'excluded' | 'rExcluding'> | null;
  };
  /** Per trait vector: the AUC of the screening score for telling the pool's cheat from its control examples. */
  screening: { trait: string; auc: number; topShareCheat: number }[] | null;
  /** The screening trial (interpretation version 18 on): fine-tunes on the flagged, a random and the unflagged part. */
  screeningTrial?: ScreeningTrial | null;
  space: {
    layer: number;
    varianceExplained: number[];
    componentsFor70: number;
    axisCosPC1: number;
    /** The axis's cosine with every component, and the share of it inside the archetypes' span. */
    axisCosPCs: number[];
    axisInSpace: number;
    archetypes: { name: string; kind: string; n: number; pc1: number; pc2: number }[];
    assistant: (AssistantPlacement & { stage: string })[];
    drift: DriftTrace[] | null;
  };
  /** The probe's layer and fit, and its agreement with Bayes (spread in). */
  probe: Pick<ProbeResult, 'layer' | 'layers' | 'l2' | 'trainRows' | 'perLayer'> & Agreement;
  /** One trial per preventative method, sharing the plain fine-tune. */
  preventative: PreventativeTrial[] | null;
  seconds: Record<string, number>;
  figures: { doseResponse: TopLevelSpec; personaSpace: TopLevelSpec; shift: TopLevelSpec };
}
