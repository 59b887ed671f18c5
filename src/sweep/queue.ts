/**
 * Sweeps on a job queue: BullMQ on Redis. `psm sweep --queue redis://HOST:PORT` puts each job on the queue once the
 * jobs it depends on are done; `psm worker --queue ... --store DIR`, on any number of machines that see the sweep
 * folder, takes them.
 *
 * The worker's lease on a job is BullMQ's job lock: renewed while the job runs (its event loop is free, the job runs in
 * a process of its own), and when a worker dies it is not renewed, the job counts as stalled, and another worker takes
 * it after at most the lease plus half of it, resuming from the pipeline's checkpoints. A job process dies with its
 * worker (attempt.ts); a worker that cannot renew a lease (Redis unreachable) stops that job itself before the lease
 * can run out. Failures are retried `attempts` times with a growing delay, stalls twice; then the job fails for good,
 * with its error in the job's record and in `psm sweep status`.
 *
 * Dependencies are explicit, not BullMQ flows (whose jobs have one parent each, where a shared stage's owner has many
 * dependents): the job that finishes puts its now-ready dependents on the queue, and so does `psm sweep`; job ids are
 * fixed per sweep folder and job, so a job is queued once however many put it there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Queue, UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
import { hashInputs } from '../pipeline/stage.ts';
import { runAttempt } from './attempt.ts';
import { planFingerprint, type PlannedJob, type SweepPlan } from './plan.ts';
import type { Executor, JobOutcome } from './scheduler.ts';
import { findJob, isJobDone, markQueued, planFile, readPlan } from './store.ts';

export const QUEUE_NAME = 'psm-sweep';

/** What a queued job carries: the sweep folder relative to the workers' store, and the plan's job id. */
export interface QueueJobData {
  sweep: string;
  job: string;
}

/** redis://[user:password@]HOST[:PORT][/DB] (rediss:// for TLS) as BullMQ's connection options. */
export function redisConnection(url: string): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--queue ${url}: not a URL; expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new Error(`--queue ${url}: expected redis://HOST:PORT (or rediss:// for TLS), not ${u.protocol}//`);
  const db = u.pathname.replace(/^\//, '');
  if (db && !/^\d+$/.test(db))
    throw new Error(`--queue ${url}: the database (after the port) must be a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: db ? Number(db) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    // BullMQ's workers block on Redis and must never give up a command: their connections retry until it is back.
    maxRetriesPerRequest: null,
  };
}

/** The sweep's queue, once Redis answers (a clear error after `timeoutMs` when it does not). */
export async function openQueue(url: string, timeoutMs = 5_000): Promise<Queue<QueueJobData>> {
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: redisConnection(url) });
  let lastError = '';
  queue.on('error', (e) => (lastError = e.message));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      queue.waitUntilReady(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer in ${timeoutMs / 1000} s${lastError ? ` (${lastError})` : ''}`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (e) {
    await queue.close().catch(() => {});
    throw new Error(`cannot reach Redis at ${url}: ${(e as Error).message}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  return queue;
}

/**
 * Closes a queue's or worker's connections. With Redis gone, close() waits for it to come back; after `ms` the
 * connections are dropped instead.
 */
async function closeWithin(x: Queue | Worker, force = false, ms = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    (x instanceof Worker ? x.close(force) : x.close()).then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  if (!closed) void x.disconnect().catch(() => {});
}

/** The queue's id of a plan's job: fixed by the sweep folder (relative to the store) and the plan. */
export function queueJobId(sweepRel: string, plan: SweepPlan, jobId: string): string {
  return `${hashInputs({ sweep: sweepRel, plan: planFingerprint(plan) }).slice(0, 12)}.${jobId}`;
}

export interface SubmitOptions {
  queue: Queue<QueueJobData>;
  sweepDir: string;
  sweepRel: string;
  plan: SweepPlan;
  attempts: number;
  /** Put a job that failed for good on the queue again (`psm sweep` run again retries; workers never do). */
  retryFailed: boolean;
}

/** Puts a job on the queue unless it is there already (waiting, running, delayed or done); true if it was put. */
export async function submitJob(o: SubmitOptions, job: PlannedJob): Promise<boolean> {
  const id = queueJobId(o.sweepRel, o.plan, job.id);
  const existing = await o.queue.getJob(id);
  if (existing) {
    const state = await existing.getState();
    const stale =
      (state === 'failed' && o.retryFailed) || (state === 'completed' && !isJobDone(o.sweepDir, job));
    if (!stale) return false;
    await existing.remove();
  }
  markQueued(o.sweepDir, job.id, o.attempts);
  await o.queue.add(
    job.id,
    { sweep: o.sweepRel, job: job.id },
    {
      jobId: id,
      attempts: o.attempts,
      backoff: { type: 'exponential', delay: 2_000 },
      removeOnComplete: { age: 7 * 24 * 3600 },
      removeOnFail: false,
    },
  );
  return true;
}

/** `psm sweep`'s side: the queue as an executor. A job ends when its results are there, or when it failed for good. */
export class QueueExecutor implements Executor {
  readonly slots = Number.POSITIVE_INFINITY;
  private readonly inFlight = new Set<string>();
  private checked = 0;

  constructor(private readonly o: SubmitOptions) {}

  async submit(job: PlannedJob): Promise<void> {
    await submitJob(this.o, job);
    this.inFlight.add(job.id);
  }

  async poll(): Promise<JobOutcome[]> {
    const out: JobOutcome[] = [];
    const askQueue = Date.now() - this.checked >= 2_000;
    if (askQueue) this.checked = Date.now();
    for (const id of [...this.inFlight]) {
      const job = findJob(this.o.plan, id);
      if (isJobDone(this.o.sweepDir, job)) out.push({ job: id, ok: true });
      else if (askQueue) {
        const queued = await this.o.queue.getJob(queueJobId(this.o.sweepRel, this.o.plan, id));
        const state = queued ? await queued.getState() : 'unknown';
        if (state === 'failed') out.push({ job: id, ok: false, error: queued?.failedReason || 'failed' });
        else if (state === 'completed')
          out.push({ job: id, ok: false, error: 'the queue says done, but the job left no results' });
        else if (state === 'unknown')
          await submitJob(this.o, job); // removed from Redis meanwhile: put it back
        else continue;
      } else continue;
      this.inFlight.delete(id);
    }
    return out;
  }

  async wait(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, Math.min(ms, 300)));
  }

  async close(): Promise<void> {
    await closeWithin(this.o.queue);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// psm worker

export interface SweepWorkerOptions {
  url: string;
  /** The folder the sweeps' folders are given relative to (every worker sees it, mounted anywhere). */
  store: string;
  /** Jobs at once (each a process training on two threads). */
  concurrency: number;
  /** The lease on a job: how long a dead worker's job waits before another takes it (plus half of it). */
  leaseMs: number;
  log: (line: string) => void;
}

/** Takes jobs from the queue until `stop` is aborted. */
export async function runSweepWorker(o: SweepWorkerOptions, stop: AbortSignal): Promise<void> {
  const queue = await openQueue(o.url);
  const store = path.resolve(o.store);
  const running = new Map<string, { abort: AbortController; renewedAt: number; ended: Promise<unknown> }>();
  const worker = new Worker<QueueJobData>(
    QUEUE_NAME,
    async (job) => {
      const sweepDir = path.resolve(store, job.data.sweep);
      if (path.relative(store, sweepDir).startsWith('..'))
        throw new UnrecoverableError(`the sweep folder ${job.data.sweep} is outside the store ${store}`);
      if (!fs.existsSync(planFile(sweepDir)))
        throw new Error(
          `${sweepDir} holds no sweep: is --store (${store}) the folder psm sweep was given as its --store, as this machine sees it?`,
        );
      const plan = readPlan(sweepDir);
      const planned = findJob(plan, job.data.job);
      const attempts = job.opts.attempts ?? 1;
      const abort = new AbortController();
      o.log(`${planned.id}: started (${job.data.sweep}, try ${job.attemptsMade + 1} of ${attempts})`);
      const attempt = runAttempt({
        sweepDir,
        jobId: planned.id,
        final: job.attemptsMade + 1 >= attempts,
        maxAttempts: attempts,
        leaseMs: o.leaseMs,
        signal: abort.signal,
      });
      running.set(job.id!, { abort, renewedAt: Date.now(), ended: attempt });
      try {
        const r = await attempt;
        if (!r.ok && stop.aborted) {
          // Stopped with the worker: not a failed try. The job's lease runs out and another worker resumes it;
          // this promise never settles, so the closed worker reports nothing for it.
          await new Promise(() => {});
        }
        if (!r.ok) {
          o.log(`${planned.id}: failed: ${r.error}`);
          throw new Error(r.error);
        }
      } finally {
        running.delete(job.id!);
      }
      o.log(`${planned.id}: done`);
      const submit = { queue, sweepDir, sweepRel: job.data.sweep, plan, attempts, retryFailed: false };
      for (const next of plan.jobs)
        if (
          next.deps.includes(planned.id) &&
          !isJobDone(sweepDir, next) &&
          next.deps.every((d) => isJobDone(sweepDir, findJob(plan, d)))
        )
          await submitJob(submit, next);
    },
    {
      connection: redisConnection(o.url),
      concurrency: o.concurrency,
      lockDuration: o.leaseMs,
      stalledInterval: Math.max(500, Math.round(o.leaseMs / 2)),
      maxStalledCount: 2,
    },
  );
  worker.on('error', (e) => o.log(`worker: ${e.message}`));
  worker.on('locksRenewed', ({ jobIds }) => {
    for (const id of jobIds) {
      const r = running.get(id);
      if (r) r.renewedAt = Date.now();
    }
  });
  worker.on('lockRenewalFailed', (ids) => {
    for (const id of ids) running.get(id)?.abort.abort('the worker lost its lease on the job');
  });
  // Renewals come every quarter to half lease; none for most of a lease means the lease is about to run out (Redis
  // unreachable): the job is stopped here before another worker may take it.
  const guard = setInterval(() => {
    for (const r of running.values())
      if (Date.now() - r.renewedAt > 0.9 * o.leaseMs) r.abort.abort('its lease could not be renewed');
  }, 250);
  await worker.waitUntilReady();
  o.log(
    `psm worker: taking jobs from ${o.url} (queue ${QUEUE_NAME}), store ${store}, ${o.concurrency} at a time, lease ${o.leaseMs / 1000} s`,
  );
  await new Promise<void>((resolve) => {
    if (stop.aborted) resolve();
    stop.addEventListener('abort', () => resolve(), { once: true });
  });
  clearInterval(guard);
  // The running jobs stop with this worker (their records say so); their leases run out and other workers resume them.
  const stopping = [...running.values()];
  for (const r of stopping) r.abort.abort('the worker was stopped');
  await Promise.all(stopping.map((r) => r.ended));
  await closeWithin(worker, true);
  await closeWithin(queue);
}
