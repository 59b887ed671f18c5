/**
 * The embedded executor: a pool of job processes on this machine, `slots` at a time, each job retried up to
 * `maxAttempts` times. The default size is one process per two cores: every job trains with two threads (two
 * data-parallel workers in pre-training, a two-thread kernel pool elsewhere), so on a 2-core laptop one job at a time
 * keeps both cores busy, and a second would only take turns with it.
 */
import * as os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { runAttempt } from './attempt.ts';
import type { PlannedJob } from './plan.ts';
import type { Executor, JobOutcome } from './scheduler.ts';
import { markQueued } from './store.ts';

/** Cores per job process: the pipeline trains on two threads. */
export const CORES_PER_JOB = 2;

export function defaultPoolSize(): number {
  return Math.max(1, Math.floor(os.availableParallelism() / CORES_PER_JOB));
}

export class LocalPool implements Executor {
  private outcomes: JobOutcome[] = [];
  private wake: (() => void) | null = null;
  private readonly stop = new AbortController();
  private readonly jobs = new Set<Promise<void>>();

  constructor(
    private readonly sweepDir: string,
    readonly slots: number,
    private readonly maxAttempts: number,
    private readonly leaseMs = 30_000,
  ) {}

  async submit(job: PlannedJob): Promise<void> {
    markQueued(this.sweepDir, job.id, this.maxAttempts);
    const run = (async () => {
      for (let attempt = 1; ; attempt++) {
        const final = attempt >= this.maxAttempts;
        const r = await runAttempt({
          sweepDir: this.sweepDir,
          jobId: job.id,
          final,
          maxAttempts: this.maxAttempts,
          leaseMs: this.leaseMs,
          signal: this.stop.signal,
        });
        if (r.ok || final || this.stop.signal.aborted) {
          this.outcomes.push(r.ok ? { job: job.id, ok: true } : { job: job.id, ok: false, error: r.error });
          break;
        }
        await sleep(1000 * attempt);
      }
      this.wake?.();
    })();
    this.jobs.add(run);
    void run.finally(() => this.jobs.delete(run));
  }

  async poll(): Promise<JobOutcome[]> {
    return this.outcomes.splice(0);
  }

  async wait(ms: number): Promise<void> {
    if (this.outcomes.length > 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = null;
  }

  /** Stops every running job (their processes are killed; the pipeline resumes them on the next run). */
  async close(): Promise<void> {
    this.stop.abort('the sweep was stopped');
    await Promise.all(this.jobs);
  }
}
