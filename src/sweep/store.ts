/**
 * A sweep's folder, which every worker sees:
 *
 *     plan.json                      the expanded grid: runs, jobs, their stages and dependencies
 *     stages/<stage>/<key>/          the stage store: each stage once, shared by every job that needs it
 *     runs/<run>/seed<N>/            one job: the pipeline's run folder for one seed (config, results.json, report)
 *       <variant>-seed<N>/<stage>    links into the stage store
 *     runs/<run>/                    the run's seeds together: results.json and report (psm compare reads it)
 *     jobs/<job>.json                the job's state and attempts (host, pid, heartbeat, error)
 *     jobs/<job>.progress.json       the running stage and its progress, written by the job itself
 *     jobs/<job>.log                 every attempt's output
 *     report/                        the sweep's comparison (sweep.md, compare.md/.json, the figure)
 *
 * Every file is written atomically (temp file, then rename), so readers on other machines see whole files only.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { atomicWriteJsonSync } from '../io/atomic-write.ts';
import { readStageRecord } from '../pipeline/stage.ts';
import type { ProgressFactory } from '../pipeline/progress.ts';
import { storePath, type PlannedJob, type PlannedStage, type SweepPlan } from './plan.ts';

export const PLAN_FILE = 'plan.json';

export function planFile(sweepDir: string): string {
  return path.join(sweepDir, PLAN_FILE);
}

export function readPlan(sweepDir: string): SweepPlan {
  const file = planFile(sweepDir);
  if (!fs.existsSync(file))
    throw new Error(
      `${sweepDir} is not a sweep folder (no ${PLAN_FILE}); psm sweep SWEEP.yaml --out DIR makes one`,
    );
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as SweepPlan;
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as Error).message})`, { cause: e });
  }
}

export function findJob(plan: SweepPlan, id: string): PlannedJob {
  const job = plan.jobs.find((j) => j.id === id);
  if (!job) throw new Error(`the sweep "${plan.name}" has no job ${id}`);
  return job;
}

/** The pipeline's run folder of one job (relative to the sweep folder: the paths it records stay valid anywhere). */
export function jobRunDir(job: PlannedJob): string {
  return path.join('runs', job.run, `seed${job.seed}`);
}

/** A stage's folder inside the job's run folder, as the pipeline names it. */
function stageLink(job: PlannedJob, stage: PlannedStage): string {
  return path.join(jobRunDir(job), `${stage.variant}-seed${job.seed}`, stage.folder);
}

/** A job is done when its run folder holds the pipeline's results (written last, atomically). */
export function isJobDone(sweepDir: string, job: PlannedJob): boolean {
  return fs.existsSync(path.join(sweepDir, jobRunDir(job), 'results.json'));
}

/**
 * Links each of the job's stage folders to its place in the stage store (made empty when new); links are relative,
 * so the sweep folder may be mounted anywhere. A stage folder that is not the expected link is an error.
 */
export function linkJobStages(sweepDir: string, job: PlannedJob): void {
  for (const stage of job.stages) {
    const target = path.join(sweepDir, storePath(stage));
    fs.mkdirSync(target, { recursive: true });
    const link = path.join(sweepDir, stageLink(job, stage));
    const relative = path.relative(path.dirname(link), target);
    let current: string | null = null;
    try {
      current = fs.readlinkSync(link);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINVAL')
        throw new Error(`${link} is a folder, not a link into the sweep's stage store; remove it`, {
          cause: e,
        });
      if (code !== 'ENOENT') throw e;
    }
    if (current === relative) continue;
    if (current !== null)
      throw new Error(`${link} links to ${current}, not to ${relative}: the sweep folder holds another plan`);
    fs.mkdirSync(path.dirname(link), { recursive: true });
    try {
      fs.symlinkSync(relative, link, 'dir');
    } catch (e) {
      // Another process linked it meanwhile (the same link: the plan is the same).
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || fs.readlinkSync(link) !== relative) throw e;
    }
  }
}

/** A stage's state in the store: done, started (running or interrupted), or not started. */
export function stageState(sweepDir: string, stage: PlannedStage): 'done' | 'started' | 'none' {
  let record: ReturnType<typeof readStageRecord>;
  try {
    record = readStageRecord(path.join(sweepDir, storePath(stage)));
  } catch {
    return 'started'; // a torn or foreign stage.json: the pipeline redoes or refuses it
  }
  return record === null ? 'none' : record.status === 'done' ? 'done' : 'started';
}

// ---------------------------------------------------------------------------------------------------------------
// Job records

export interface Attempt {
  attempt: number;
  host: string;
  /** The worker (pool or `psm worker`) process, and the job's own process. */
  workerPid: number;
  pid: number | null;
  startedAt: string;
  /** Renewed every few seconds by the worker while the job runs. */
  heartbeatAt: string;
  endedAt?: string;
  error?: string;
}

export interface JobRecord {
  job: string;
  /**
   * queued: handed to the pool or the queue; retrying: an attempt failed and another will come; stopped: its attempt
   * was stopped with the sweep or the worker (a run of the sweep again, or another worker, goes on with it).
   */
  state: 'queued' | 'running' | 'retrying' | 'stopped' | 'done' | 'failed';
  maxAttempts: number;
  attempts: Attempt[];
  queuedAt?: string;
  updatedAt: string;
}

function jobsDir(sweepDir: string): string {
  return path.join(sweepDir, 'jobs');
}

export function jobRecordFile(sweepDir: string, jobId: string): string {
  return path.join(jobsDir(sweepDir), `${jobId}.json`);
}

export function jobLogFile(sweepDir: string, jobId: string): string {
  return path.join(jobsDir(sweepDir), `${jobId}.log`);
}

export function jobProgressFile(sweepDir: string, jobId: string): string {
  return path.join(jobsDir(sweepDir), `${jobId}.progress.json`);
}

export function readJobRecord(sweepDir: string, jobId: string): JobRecord | null {
  try {
    return JSON.parse(fs.readFileSync(jobRecordFile(sweepDir, jobId), 'utf8')) as JobRecord;
  } catch {
    return null; // none yet (a torn one cannot exist: records are written atomically)
  }
}

export function writeJobRecord(sweepDir: string, record: JobRecord): void {
  fs.mkdirSync(jobsDir(sweepDir), { recursive: true });
  atomicWriteJsonSync(jobRecordFile(sweepDir, record.job), {
    ...record,
    updatedAt: new Date().toISOString(),
  });
}

/**
 * Marks a job handed to the pool or the queue: a fresh record, its attempts counted anew (a sweep run again retries
 * its failed jobs); the earlier attempts' output stays in the job's log.
 */
export function markQueued(sweepDir: string, jobId: string, maxAttempts: number): void {
  writeJobRecord(sweepDir, {
    job: jobId,
    state: 'queued',
    maxAttempts,
    attempts: [],
    queuedAt: new Date().toISOString(),
    updatedAt: '',
  });
}

export const HOST = os.hostname();

// ---------------------------------------------------------------------------------------------------------------
// Progress of the running stage

export interface JobProgress {
  pid: number;
  label: string;
  done: number;
  total: number;
  unit: string;
  updatedAt: string;
}

export function readJobProgress(sweepDir: string, jobId: string): JobProgress | null {
  try {
    return JSON.parse(fs.readFileSync(jobProgressFile(sweepDir, jobId), 'utf8')) as JobProgress;
  } catch {
    return null;
  }
}

/**
 * The pipeline's progress bars, written to the job's progress file (at most every half second, and at each new
 * bar) for `psm sweep` and `psm sweep status` to show.
 */
export function fileProgress(file: string): ProgressFactory {
  let last = 0;
  const write = (p: Omit<JobProgress, 'pid' | 'updatedAt'>) => {
    last = Date.now();
    atomicWriteJsonSync(file, { pid: process.pid, ...p, updatedAt: new Date().toISOString() });
  };
  return (label, total, unit) => {
    write({ label, done: 0, total, unit });
    return {
      update(done) {
        if (Date.now() - last >= 500) write({ label, done, total, unit });
      },
      stop() {
        write({ label, done: total, total, unit });
      },
    };
  };
}
