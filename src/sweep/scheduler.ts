/**
 * Drives a sweep: hands each job to an executor (the local pool, or the Redis queue) once the jobs it depends on are
 * done, follows them to the end, and shows the sweep's progress (stages done, rate, ETA, what runs where). A job
 * whose dependency failed for good is blocked, reported with the failure, never started.
 */
import { uniqueStages, type PlannedJob, type SweepPlan } from './plan.ts';
import { isJobDone, readJobProgress, stageState } from './store.ts';

export interface JobOutcome {
  job: string;
  ok: boolean;
  error?: string;
}

/** Where jobs run. */
export interface Executor {
  /** How many jobs it takes at once (a queue takes every ready job; its workers decide). */
  readonly slots: number;
  submit(job: PlannedJob): Promise<void>;
  /** The jobs that ended since the last call: done, or failed for good. */
  poll(): Promise<JobOutcome[]>;
  /** Resolves when an attempt may have ended, or after `ms`. */
  wait(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** What a sweep's progress display shows, about once a second. */
export interface SweepProgressState {
  stagesDone: number;
  /** Stages done plus the finished share of the stages running now (for a steadier rate). */
  work: number;
  stagesTotal: number;
  jobsDone: number;
  jobsTotal: number;
  /** The running jobs: grid point, seed, and the stage with its progress. */
  running: string[];
}

export interface SweepProgress {
  update(state: SweepProgressState): void;
  stop(): void;
}

export const silentSweepProgress: SweepProgress = { update() {}, stop() {} };

export interface SweepOutcome {
  done: string[];
  failed: { job: string; error: string }[];
  /** Jobs never started because a job they depend on failed. */
  blocked: { job: string; on: string }[];
}

/** Runs the plan's unfinished jobs to the end (done, failed or blocked), or until `stop` is aborted. */
export async function driveSweep(
  sweepDir: string,
  plan: SweepPlan,
  executor: Executor,
  progress: SweepProgress,
  stop?: AbortSignal,
): Promise<SweepOutcome> {
  const state = new Map<string, 'pending' | 'running' | 'done' | 'failed'>(
    plan.jobs.map((j) => [j.id, isJobDone(sweepDir, j) ? 'done' : 'pending']),
  );
  const errors = new Map<string, string>();
  const labels = new Map(plan.runs.map((r) => [r.id, r.label]));
  const stages = uniqueStages(plan);
  let shown = 0;
  const show = () => {
    shown = Date.now();
    let fraction = 0;
    const running = plan.jobs
      .filter((j) => state.get(j.id) === 'running')
      .map((j) => {
        const p = readJobProgress(sweepDir, j.id);
        if (p && p.total > 0 && p.done < p.total) fraction += p.done / p.total;
        return `${labels.get(j.run)} s${j.seed}${p ? `: ${p.label} ${p.done}/${p.total} ${p.unit}` : ''}`;
      });
    const stagesDone = stages.filter((s) => stageState(sweepDir, s) === 'done').length;
    progress.update({
      stagesDone,
      work: Math.min(stages.length, stagesDone + fraction),
      stagesTotal: stages.length,
      jobsDone: [...state.values()].filter((s) => s === 'done').length,
      jobsTotal: plan.jobs.length,
      running,
    });
  };
  // A stop is answered at once, even while the executor waits on its queue (Redis down: its calls wait to reconnect).
  const stopped = new Promise<JobOutcome[]>((resolve) => {
    if (stop?.aborted) resolve([]);
    stop?.addEventListener('abort', () => resolve([]), { once: true });
  });
  try {
    for (;;) {
      for (const o of await Promise.race([executor.poll(), stopped])) {
        state.set(o.job, o.ok ? 'done' : 'failed');
        if (!o.ok) errors.set(o.job, o.error ?? 'failed');
      }
      let running = [...state.values()].filter((s) => s === 'running').length;
      for (const job of plan.jobs) {
        if (running >= executor.slots || stop?.aborted) break;
        if (state.get(job.id) !== 'pending' || !job.deps.every((d) => state.get(d) === 'done')) continue;
        state.set(job.id, 'running');
        running++;
        await executor.submit(job);
      }
      if (Date.now() - shown >= 1000) show();
      if (running === 0 || stop?.aborted) break; // everything done, failed, or waiting on a failed job
      await Promise.race([executor.wait(1000), stopped]);
    }
    show();
  } finally {
    progress.stop();
  }
  const failedOn = (job: PlannedJob): string | null => {
    for (const d of job.deps) {
      if (state.get(d) === 'failed') return d;
      const deeper = failedOn(plan.jobs.find((j) => j.id === d)!);
      if (deeper) return deeper;
    }
    return null;
  };
  return {
    done: plan.jobs.filter((j) => state.get(j.id) === 'done').map((j) => j.id),
    failed: [...errors].map(([job, error]) => ({ job, error })),
    blocked: plan.jobs.flatMap((j) => {
      const on = state.get(j.id) === 'pending' ? failedOn(j) : null;
      return on ? [{ job: j.id, on }] : [];
    }),
  };
}
