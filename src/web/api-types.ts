/**
 * The JSON the lab's API answers with: one definition shared by the server (src/web) and the page (web/src), so the
 * two cannot drift apart. Types only: the page imports this file without pulling in any server code.
 */

/** Every failure: a message that names the problem, a stable code, and the request field at fault if any. */
export interface ApiErrorBody {
  error: { message: string; code: string; param: string | null };
}

/**
 * done: finished (results saved); running: a stage is in progress and the run's records moved recently; stopped: a
 * stage was left unfinished (killed, or waiting for a resume); unreadable: the folder's records cannot be read.
 */
export type RunStatus = 'done' | 'running' | 'stopped' | 'unreadable';

/** One row of the runs page: the run's key numbers, as `psm runs` prints them, and where it stands. */
export interface RunRow {
  name: string;
  status: RunStatus;
  /** When the run's results were written, else when it started (ISO time). */
  createdAt: string | null;
  /** The latest change to the run's records (ISO time). */
  updatedAt: string | null;
  seeds: number | null;
  world: string | null;
  /** Pre-training tokens per seed. */
  tokens: number | null;
  /** e.g. "dim 128, 4 layers". */
  model: string | null;
  personaR: number | null;
  postRise: number | null;
  /** The cheat arm's off-target P(good) minus the control's (all parameters). */
  cheatVsControl: number | null;
  goalsMet: number | null;
  goalsTotal: number | null;
  /** While unfinished: the stage in progress and the share of stages done. */
  stage: string | null;
  progress: number | null;
  /** Why a run is unreadable. */
  message?: string;
}

export interface RunList {
  runsDir: string;
  runs: RunRow[];
}

/** A model the lab can chat with or score. */
export interface ModelInfo {
  /** Opaque id the API takes back: "run:<run>/<seedDir>/<stage>", "model:<name>" or "provider:<name>". */
  id: string;
  /** e.g. "post-trained", "cheat/all". */
  label: string;
  kind: 'base' | 'post-trained' | 'arm' | 'imported' | 'endpoint';
  /** Local models: the meter and steering work (the seed's interpretation provides the vectors). */
  meter: boolean;
  /** Local models only: replies can be steered. */
  steerable: boolean;
  /** Seed folder the model belongs to, when it is a run's. */
  seedDir: string | null;
}

export interface SeedInfo {
  /** Folder name, e.g. "standard-seed1". */
  dir: string;
  variant: string;
  seed: number;
  models: ModelInfo[];
  /** The seed's interpretation exists (persona vectors, persona space). */
  interpreted: boolean;
}

export interface RunDetail {
  name: string;
  status: RunStatus;
  world: string | null;
  /** The run's resolved config (config.json). */
  config: unknown;
  seeds: SeedInfo[];
  /** report.json exists (or, while a multi-seed run goes on, the report of its finished seeds). */
  hasReport: boolean;
  /** URL of the static report.html, when written. */
  staticReport: string | null;
}

export interface StageState {
  /** Stage folder, e.g. "pretrain", "ft-cheat-all". */
  name: string;
  status: 'done' | 'running' | 'pending';
  startedAt: string | null;
  finishedAt: string | null;
  seconds: number | null;
}

export interface SeedProgress {
  dir: string;
  stages: StageState[];
}

/** The stage in progress: its steps where its records count them (pre-training), else its elapsed time. */
export interface LiveStage {
  seedDir: string;
  stage: string;
  startedAt: string | null;
  elapsedS: number | null;
  /** Latest step the records show, its total, steps per second and the time left at that rate. */
  step: number | null;
  steps: number | null;
  rate: number | null;
  etaS: number | null;
  /** Seconds since the newest record of the stage. */
  lastRecordAgeS: number | null;
}

/** One held-out persona-inference probe during pre-training (from the run's metrics records). */
export interface CurvePoint {
  seedDir: string;
  step: number;
  tokens: number;
  correlation: number | null;
  loss: number | null;
  time: string | null;
}

export interface RunProgress {
  run: string;
  status: RunStatus;
  stagesDone: number;
  stagesTotal: number;
  current: LiveStage | null;
  /** Whole run: the remaining stages estimated from this run's finished stages of the same kind (null: unknown). */
  etaS: number | null;
  seeds: SeedProgress[];
  curve: CurvePoint[];
  updatedAt: string | null;
}

export interface Goal {
  id: string;
  text: string;
  met: boolean | null;
  detail: string;
}

export interface FigureView {
  id: string;
  caption: string;
  /** The report's Vega-Lite spec, exactly as the static report renders it. */
  spec: Record<string, unknown>;
}

export interface ReportView {
  run: string;
  createdAt: string | null;
  goals: Goal[];
  figures: FigureView[];
  /** report.json's summary (key numbers over seeds). */
  summary: Record<string, unknown>;
  staticReport: string | null;
}

/** Key numbers of one run, seed or arm for the side-by-side view. */
export interface CompareSide {
  label: string;
  /** Per domain: the Assistant's P(good) after post-training (or the arm's fine-tune) and Bayes's prediction. */
  domains: { domain: string; pGood: number | null; bayes: number | null }[];
  numbers: { name: string; value: number | null }[];
  /** Persona inference by k: network and Bayes. */
  inference: { k: number; model: number | null; bayes: number | null }[];
}

export interface WorldArchetype {
  name: string;
  kind: 'human' | 'ai';
  /** Prior share among all characters. */
  share: number;
  description: string | null;
  /** P(trait good) before trait-flip noise, per domain. */
  traits: Record<string, number>;
}

export interface WorldView {
  name: string;
  description: string | null;
  domains: { name: string; description: string | null; good: string; bad: string; instructed: string[] }[];
  archetypes: WorldArchetype[];
  /** Trait correlations of the characters: the world's exact ones and those counted in the generated corpus. */
  correlations: {
    domains: string[];
    expected: number[][];
    observed: number[][] | null;
    documents: number | null;
  };
  /** Where the observed numbers come from (a run's corpus, or documents generated for this page). */
  source: string;
  /** The subjects a calculator scene may be about. */
  noise: { traitFlip: number; behaviourFlip: number };
}

export interface SampleDocument {
  id: number;
  text: string;
  /** Character ranges of each scene's behaviour. */
  behaviourSpans: [number, number][];
  /** The hidden character, shown on demand. */
  hidden: {
    name: string | null;
    kind: string;
    archetype: string;
    traits: Record<string, string>;
    scenes: { domain: string; behaviour: string; instructed: string | null; format: string }[];
  };
}

/** A scene of the Bayes calculator. */
export interface CalculatorScene {
  domain: string;
  behaviour: 'good' | 'bad';
  /** Instructed group name, or null for an ordinary scene. */
  instructed: string | null;
}

export interface BayesAnswer {
  subject: 'assistant' | 'human' | 'ai';
  archetypes: { name: string; kind: string; prior: number; posterior: number }[];
  pGood: Record<string, number>;
  /** The prompt a model reads for each target domain (the character's intro, the scenes, the target's lead). */
  prompts: Record<string, string>;
  /** With a model: its P(good) per domain for the same prompts. */
  model: { id: string; pGood: Record<string, number> } | null;
}

/** The steering the chat offers for one seed: named vectors in the sense of psm serve's `psm` field. */
export interface SteeringInfo {
  seedDir: string;
  /** The unit of alpha: a push of this fraction of the layer's mean residual norm (the report's unit). */
  alphaUnit: string;
  vectors: { name: string; hook: string; layer: number; kind: 'trait' | 'axis' }[];
  /** Capping on the assistant axis: the projection floor (the 25th percentile of ordinary chats). */
  axis: { ready: boolean; threshold: number | null; hook: string | null; message: string | null };
}

/** The persona meter of one turn. */
export interface MeterReading {
  /** Projection of the residual stream on each trait vector (alpha units; positive leans toward the bad side). */
  traits: { trait: string; layer: number; turn: number; tokens: number[] }[];
  /** The reply's tokens, for the per-token view. */
  tokens: string[];
  /** The archetype probe's posterior at the turn's last prompt token (null while it is being fitted). */
  probe: { archetypes: { name: string; p: number }[] } | null;
  probeMessage: string | null;
}

export interface SpaceView {
  seedDir: string;
  layer: number;
  varianceExplained: number[];
  axisCosPCs: number[];
  archetypes: { name: string; kind: string; pc1: number; pc2: number }[];
  assistant: { stage: string; pc1: number; pc2: number; axisPosition: number; nearest: string }[];
}
