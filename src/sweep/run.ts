/**
 * `psm sweep SWEEP.yaml`: expands the grid, writes the plan into the sweep folder (or checks that the folder holds the
 * same plan: a sweep run again continues where it stopped, and retries the jobs that failed), runs the unfinished jobs
 * on the local pool or through the queue, and writes the report.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { lockFolder } from '../io/folder-lock.ts';
import { LocalPool, defaultPoolSize } from './local-pool.ts';
import { planFingerprint, planSweep, uniqueStages, type SweepPlan } from './plan.ts';
import { openQueue, QueueExecutor, redisConnection } from './queue.ts';
import { writeSweepReport, type SweepReport } from './report.ts';
import { driveSweep, type Executor, type SweepOutcome, type SweepProgress } from './scheduler.ts';
import { expandGrid, loadSweepFile } from './spec.ts';
import { planFile, readPlan } from './store.ts';

export const DEFAULT_ATTEMPTS = 3;

/**
 * The plan of a sweep file, and the folder it goes to (default sweeps/<name>); `byFile` plans it as sweeps were
 * planned before their stage keys took worlds by content (planSweep).
 */
export function planOf(
  file: string,
  out?: string,
): { plan: SweepPlan; sweepDir: string; byFile: () => SweepPlan } {
  const sweep = loadSweepFile(file);
  const points = expandGrid(sweep);
  const plan = planSweep(sweep, points);
  return {
    plan,
    sweepDir: out ?? path.join('sweeps', sweep.name),
    byFile: () => planSweep(sweep, points, { worldsByFile: true }),
  };
}

/** One line on what a plan computes: its jobs, and how many stages the grid shares. */
export function describePlan(plan: SweepPlan): string {
  const all = plan.jobs.reduce((n, j) => n + j.stages.length, 0);
  const unique = uniqueStages(plan).length;
  const seeds = new Set(plan.runs.map((r) => r.config.seeds.length));
  return (
    `${plan.runs.length} grid point(s) x ${seeds.size === 1 ? [...seeds][0] : 'their'} seed(s) = ${plan.jobs.length} job(s); ` +
    `${all} stages, ${unique} to compute (${all - unique} shared across grid points)`
  );
}

/**
 * Writes the plan into the sweep folder, or checks that the folder already holds this plan, and returns the plan to
 * run. A folder planned before stage keys took worlds by content holds the plan `byFile` gives: it keeps that plan
 * (its stages are stored under those keys).
 */
export function writePlan(
  sweepDir: string,
  plan: SweepPlan,
  sweepFile: string,
  byFile?: () => SweepPlan,
): SweepPlan {
  if (fs.existsSync(planFile(sweepDir))) {
    const held = readPlan(sweepDir);
    if (planFingerprint(held) !== planFingerprint(plan)) {
      if (byFile && planFingerprint(held) === planFingerprint(byFile())) return held;
      throw new Error(
        `${sweepDir} holds another sweep (${held.name}, from ${held.source}: ${held.runs.length} grid point(s)); choose another --out`,
      );
    }
  }
  fs.mkdirSync(sweepDir, { recursive: true });
  atomicWriteJsonSync(planFile(sweepDir), plan);
  atomicWriteFileSync(path.join(sweepDir, 'sweep.yaml'), fs.readFileSync(sweepFile));
  return plan;
}

export interface SweepOptions {
  out?: string;
  /** Local pool size (default: one job per two cores). */
  jobs?: number;
  /** redis://HOST:PORT: put the jobs on the queue for `psm worker` processes. */
  queue?: string;
  /** With a queue: the folder workers are given as --store; the sweep folder lies inside it (default: .). */
  store?: string;
  attempts?: number;
  progress: SweepProgress;
  log: (line: string) => void;
  stop?: AbortSignal;
}

export interface SweepResult {
  sweepDir: string;
  plan: SweepPlan;
  outcome: SweepOutcome;
  report: SweepReport;
}

export async function runSweep(file: string, o: SweepOptions): Promise<SweepResult> {
  const planned = planOf(file, o.out);
  const { sweepDir } = planned;
  const attempts = o.attempts ?? DEFAULT_ATTEMPTS;
  let sweepRel = '';
  if (o.queue) {
    redisConnection(o.queue); // a bad URL is refused before anything is written
    const store = path.resolve(o.store ?? '.');
    sweepRel = path.relative(store, path.resolve(sweepDir));
    if (sweepRel.startsWith('..') || path.isAbsolute(sweepRel))
      throw new Error(
        `the sweep folder ${sweepDir} is not inside the store ${store} (--store) that workers see`,
      );
  }
  const plan = writePlan(sweepDir, planned.plan, file, planned.byFile);
  // One psm sweep per sweep folder; the workers' own locks are per job.
  const release = lockFolder(sweepDir, 'psm sweep');
  let executor: Executor | null = null;
  try {
    const size = o.jobs ?? defaultPoolSize();
    if (o.queue) {
      const queue = await openQueue(o.queue);
      executor = new QueueExecutor({
        queue,
        sweepDir,
        sweepRel: sweepRel || '.',
        plan,
        attempts,
        retryFailed: true,
      });
      const workers = await queue.getWorkersCount();
      o.log(
        `psm sweep: ${sweepDir}: ${describePlan(plan)}; on ${o.queue}, ${workers} worker(s) connected` +
          (workers === 0 ? ` (start one: psm worker --queue ${o.queue} --store ${o.store ?? '.'})` : ''),
      );
    } else {
      executor = new LocalPool(sweepDir, size, attempts);
      o.log(`psm sweep: ${sweepDir}: ${describePlan(plan)}; local pool of ${size} job process(es)`);
    }
    const outcome = await driveSweep(sweepDir, plan, executor, o.progress, o.stop);
    const report = await writeSweepReport(sweepDir, plan);
    return { sweepDir, plan, outcome, report };
  } finally {
    await executor?.close();
    release();
  }
}
