/**
 * The local engine's decode loop: every generation in flight joins one continuous batch (src/model/generate.ts
 * DecodeBatch). A request that arrives while the batch runs is prefilled and joins it at the next step; one that
 * finishes leaves at once. The loop yields to the event loop after each prefill and each step, so HTTP I/O, new
 * requests and client disconnects are handled while it runs. Each job keeps its own cache, hooks and sampling;
 * a job whose own work fails (a non-finite output under its interventions, a client gone) fails alone.
 */
import { DecodeBatch, type DecodeBatchOptions, type DecodeJob } from '../model/generate.ts';
import type { LlamaModel } from '../model/llama.ts';
import { AbortError, yieldToEventLoop } from './limit.ts';

export interface ScheduledJob extends DecodeJob {
  signal?: AbortSignal;
}

interface Entry {
  job: DecodeJob;
  signal?: AbortSignal;
  error?: unknown;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DecodeScheduler {
  private readonly batch: DecodeBatch;
  private readonly waiting: Entry[] = [];
  private readonly entries = new Map<DecodeJob, Entry>();
  private looping = false;

  /** `maxBatch`: sequences decoded together at most; more wait for a place. */
  constructor(
    model: LlamaModel,
    readonly maxBatch: number,
    options: DecodeBatchOptions = {},
  ) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1)
      throw new Error(`decode scheduler: maxBatch must be a positive integer, got ${maxBatch}`);
    this.batch = new DecodeBatch(model, options);
  }

  /** Sequences in the batch now. */
  get size(): number {
    return this.batch.size;
  }

  /** Decodes the job with whatever else is in flight; resolves when its `next` returns null. */
  run(job: ScheduledJob): Promise<void> {
    if (job.signal?.aborted) return Promise.reject(new AbortError('the client went away'));
    return new Promise((resolve, reject) => {
      const entry: Entry = { job, signal: job.signal, resolve, reject };
      // The job's own failures end it alone: its `next` is wrapped so that an error finishes it, to be rejected.
      entry.job = {
        prompt: job.prompt,
        capacity: job.capacity,
        hooks: job.hooks,
        next: (logits) => {
          try {
            return job.next(logits);
          } catch (e) {
            entry.error = e;
            return null;
          }
        },
      };
      this.waiting.push(entry);
      if (!this.looping) void this.loop();
    });
  }

  private settle(entry: Entry): void {
    this.entries.delete(entry.job);
    if (entry.error !== undefined) entry.reject(entry.error);
    else entry.resolve();
  }

  /** Drops jobs whose client went away: from the queue, and from the batch before the next step. */
  private dropAborted(): void {
    const gone = (e: Entry) => e.signal?.aborted === true;
    const abort = (e: Entry) => {
      e.error = new AbortError('the client went away');
      this.settle(e);
    };
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (gone(this.waiting[i])) abort(this.waiting.splice(i, 1)[0]);
    }
    const dropped = [...this.entries.values()].filter(gone);
    if (dropped.length === 0) return;
    this.batch.remove(new Set(dropped.map((e) => e.job)));
    dropped.forEach(abort);
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (this.waiting.length > 0 || this.batch.size > 0) {
        this.dropAborted();
        while (this.waiting.length > 0 && this.batch.size < this.maxBatch) {
          const entry = this.waiting.shift()!;
          try {
            if (this.batch.admit(entry.job)) this.entries.set(entry.job, entry);
            else this.settle(entry);
          } catch (e) {
            entry.error = e;
            this.settle(entry);
          }
          await yieldToEventLoop();
          this.dropAborted();
        }
        if (this.batch.size === 0) continue;
        try {
          for (const job of this.batch.step()) this.settle(this.entries.get(job)!);
        } catch (e) {
          // The step itself failed (not one job's sampling): every job in it fails with that error.
          const all = this.batch.jobs();
          this.batch.remove(new Set(all));
          for (const job of all) {
            const entry = this.entries.get(job)!;
            entry.error = e;
            this.settle(entry);
          }
        }
        await yieldToEventLoop();
      }
    } finally {
      this.looping = false;
    }
  }
}
