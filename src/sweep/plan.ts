/**
 * A sweep's plan: grid points become runs, each run one job per seed, each job the chain of pipeline stages that
 * `psm run` makes for that seed (corpus -> pre-training -> persona check and base battery -> post-training and its
 * battery -> each narrow arm's fine-tune and battery -> interpretation).
 *
 * Stages are shared across the grid: each stage has a store key, a hash of everything its result can depend on, and
 * lives once in the sweep's stage store (stages/<stage>/<key>); every job that needs it links to it. A job depends
 * on the jobs that first have ("own") the stages it shares, so a shared stage is computed once, by its owner, and
 * read from cache by the rest.
 *
 * The keys leave out, per stage, the config sections that only later stages read: a new config section is kept in
 * every key (shared less, never wrongly). The run's context (experiment.ts's Context: the world, the evaluation items,
 * the trained and fine-tuned domains) is in every key from pre-training on, since its batteries summarise by those
 * domains and its probes follow eval.maxK. The pipeline's own stage hash guards the rest: a stage reused with
 * other inputs is refused loudly (stage.ts), never silently taken.
 */
import { hashInputs } from '../pipeline/stage.ts';
import { loadExperimentWorld } from '../pipeline/experiment.ts';
import { worldHash } from '../world/index.ts';
import type { ArmName, ExperimentConfig, TrainableName } from '../pipeline/config.ts';
import type { GridPoint, SweepFile } from './spec.ts';

export const PLAN_VERSION = 1;

/** The pipeline's seed variants (experiment.ts): each seed's standard run, then its alignment-pre-training one. */
export type Variant = 'standard' | 'alignment';

export interface PlannedStage {
  variant: Variant;
  /** The stage's folder in the seed's folder (as experiment.ts names it). */
  folder: string;
  /** Its key in the stage store. */
  key: string;
}

export interface PlannedJob {
  /** `<run id>.s<seed>`. */
  id: string;
  run: string;
  seed: number;
  stages: PlannedStage[];
  /** The jobs that own stages this one shares: it starts once they are done. */
  deps: string[];
}

export interface PlannedRun {
  id: string;
  label: string;
  values: GridPoint['values'];
  config: ExperimentConfig;
  jobs: string[];
}

export interface SweepPlan {
  version: number;
  name: string;
  source: string;
  grid: SweepFile['grid'];
  metrics?: string[];
  runs: PlannedRun[];
  jobs: PlannedJob[];
}

/** The variants a config's seeds run in, in the pipeline's order. */
export function variantsOf(config: ExperimentConfig): Variant[] {
  return config.alignmentPretraining.enabled ? ['standard', 'alignment'] : ['standard'];
}

/** The stage folders of one seed of one variant, in the order experiment.ts's runSeed makes them. */
export function stageFolders(config: ExperimentConfig): string[] {
  const arms = config.finetune.arms.flatMap((arm) =>
    config.finetune.trainable.flatMap((t) => [`ft-${arm}-${t}`, `eval-ft-${arm}-${t}`]),
  );
  return [
    'corpus',
    'pretrain',
    'persona-check',
    'eval-base',
    'posttrain',
    'eval-posttrain',
    ...arms,
    ...(config.interpret.enabled ? ['interpret'] : []),
  ];
}

/** Config fields every key holds in another form: the loaded world's hash, the seed, the variant's AI mix. */
const HELD_ELSEWHERE = ['world', 'worldAiMix', 'worldTransform', 'seeds', 'alignmentPretraining'] as const;

/** The config with some sections replaced (null: not read by the stage), as a key part. */
function keyPart(c: ExperimentConfig, replaced: Partial<Record<keyof ExperimentConfig, unknown>>) {
  return { ...c, ...Object.fromEntries(HELD_ELSEWHERE.map((k) => [k, null])), ...replaced };
}

/** The run's context that every stage from pre-training on reads: the trained and the fine-tuned domains. */
function contextOf(c: ExperimentConfig) {
  return {
    postTrain: { domains: c.postTrain.domains },
    finetune: { domain: c.finetune.domain },
    interpret: null,
  };
}

/** The part of the config a stage's result can depend on (see the file's comment). */
function stagePart(c: ExperimentConfig, folder: string): unknown {
  const arm = /^(?:eval-)?ft-([a-z]+)-([a-z0-9]+)$/.exec(folder);
  if (folder === 'corpus')
    return keyPart(c, {
      model: null,
      pretrain: null,
      eval: null,
      postTrain: null,
      finetune: null,
      interpret: null,
    });
  if (['pretrain', 'persona-check', 'eval-base'].includes(folder)) return keyPart(c, contextOf(c));
  if (folder === 'posttrain' || folder === 'eval-posttrain')
    return keyPart(c, { ...contextOf(c), postTrain: c.postTrain });
  if (arm) {
    // One arm's fine-tune reads the fine-tune settings for its arm and trainable set only.
    const trainable = arm[2] as TrainableName;
    const finetune = {
      ...c.finetune,
      arms: [arm[1] as ArmName],
      trainable: [trainable],
      lr: c.finetune.lr[trainable],
    };
    return keyPart(c, { ...contextOf(c), postTrain: c.postTrain, finetune });
  }
  return keyPart(c, {});
}

/** The store key of one stage of one seed: the hash of what its result can depend on. */
export function stageKey(
  config: ExperimentConfig,
  worldHash: string,
  variant: Variant,
  seed: number,
  folder: string,
): string {
  const aiMix = variant === 'alignment' ? config.alignmentPretraining.aiMix : null;
  return hashInputs({
    world: worldHash,
    variant,
    aiMix,
    seed,
    stage: folder,
    config: stagePart(config, folder),
  });
}

/** Where a stage lives in the sweep folder. */
export function storePath(stage: PlannedStage): string {
  return `stages/${stage.folder}/${stage.key}`;
}

function slug(label: string): string {
  return label.replace(/[^A-Za-z0-9._=-]+/g, '_').slice(0, 60);
}

/**
 * The runs and jobs of a sweep's grid points; two points with the same config are refused. A world enters the stage
 * keys by its content (worldHash), so the plan is the same from any clone; with `worldsByFile`, by the whole world
 * object, its file's path included, as sweeps were planned before (writePlan keeps such a sweep's plan).
 */
export function planSweep(
  sweep: SweepFile,
  points: readonly GridPoint[],
  opts: { worldsByFile?: boolean } = {},
): SweepPlan {
  const byConfig = new Map<string, GridPoint>();
  for (const p of points) {
    const h = hashInputs(p.config);
    const same = byConfig.get(h);
    if (same)
      throw new Error(
        `sweep file ${sweep.source}: grid points ${same.index + 1} (${same.label}) and ${p.index + 1} (${p.label}) give the same config`,
      );
    byConfig.set(h, p);
  }
  const worldHashes = new Map<string, string>();
  const worldKey = (c: ExperimentConfig, label: string) => {
    const id = hashInputs({ world: c.world, mix: c.worldAiMix ?? null, transform: c.worldTransform ?? null });
    let h = worldHashes.get(id);
    if (h === undefined) {
      try {
        const world = loadExperimentWorld(c);
        h = opts.worldsByFile ? hashInputs(world) : worldHash(world);
      } catch (e) {
        throw new Error(`sweep file ${sweep.source}, grid point ${label}: ${(e as Error).message}`, {
          cause: e,
        });
      }
      worldHashes.set(id, h);
    }
    return h;
  };
  const pad = String(points.length).length;
  const owners = new Map<string, string>();
  const runs: PlannedRun[] = [];
  const jobs: PlannedJob[] = [];
  for (const p of points) {
    const id = `${String(p.index + 1).padStart(pad, '0')}-${slug(p.label)}`;
    const w = worldKey(p.config, `${p.index + 1} (${p.label})`);
    const run: PlannedRun = { id, label: p.label, values: p.values, config: p.config, jobs: [] };
    for (const seed of p.config.seeds) {
      const job: PlannedJob = { id: `${id}.s${seed}`, run: id, seed, stages: [], deps: [] };
      for (const variant of variantsOf(p.config))
        for (const folder of stageFolders(p.config)) {
          const stage = { variant, folder, key: stageKey(p.config, w, variant, seed, folder) };
          job.stages.push(stage);
          const owner = owners.get(storePath(stage));
          if (owner === undefined) owners.set(storePath(stage), job.id);
          else if (!job.deps.includes(owner)) job.deps.push(owner);
        }
      run.jobs.push(job.id);
      jobs.push(job);
    }
    runs.push(run);
  }
  return {
    version: PLAN_VERSION,
    name: sweep.name,
    source: sweep.source,
    grid: sweep.grid,
    metrics: sweep.metrics,
    runs,
    jobs,
  };
}

/** The stages of the plan, each once (shared ones too). */
export function uniqueStages(plan: SweepPlan): PlannedStage[] {
  const seen = new Map<string, PlannedStage>();
  for (const j of plan.jobs) for (const s of j.stages) if (!seen.has(storePath(s))) seen.set(storePath(s), s);
  return [...seen.values()];
}

/** What identifies a plan: a sweep folder holds one, and a restart must expand to the same. */
export function planFingerprint(plan: SweepPlan): string {
  return hashInputs({ runs: plan.runs.map((r) => ({ id: r.id, config: r.config })), jobs: plan.jobs });
}
