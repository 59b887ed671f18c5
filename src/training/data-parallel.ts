/**
 * Data parallelism over worker threads: each worker holds a copy of the model, runs forward and backward on
 * its share of the batch's sequences with a one-thread backend, and writes its gradients to shared memory;
 * this thread combines them (weighted by each share's loss weight, so the result is the gradient of the whole
 * batch's mean loss) and steps the optimizer. The JS work around the kernels (gradient sums, allocation,
 * autograd bookkeeping) then runs on every core instead of one, which an intra-op thread pool cannot do.
 *
 * Synchronous on purpose, like the rest of the trainer: this thread hands out a step through shared control
 * words and blocks in Atomics.wait until every worker is done. The split is fixed (worker i takes sequences
 * [i B / n, (i + 1) B / n)) and the combination order is fixed, so runs are reproducible; the numbers differ
 * from a one-thread run only by float32 summation order.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { LlamaConfig } from '../model/config.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Batch } from './data.ts';

/**
 * Control words per worker (Int32): command counter, done counter, status (0 ok, 1 failed). The worker entry
 * (data-parallel-entry.mjs) writes the same indices when the worker cannot start.
 */
export const CMD = 0;
export const DONE = 1;
export const STATUS = 2;
const CONTROL_WORDS = 3;
/** A command counter value that tells the worker to exit. */
export const EXIT_COMMAND = -1;

/** Shared buffers and layout a worker needs; sent once at start. */
export interface WorkerInit {
  config: LlamaConfig;
  /** Parameter names in model order, with their offsets into the flat weight and gradient buffers. */
  params: { name: string; offset: number; size: number }[];
  weights: SharedArrayBuffer;
  gradients: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** Int32 [rows] inputs, Int32 [rows] targets, Float32 [rows] weights, Int32 meta [sequences, seqLen, weighted]. */
  batch: SharedArrayBuffer;
  maxRows: number;
  /** Float64 [loss, tokens] written by the worker. */
  result: SharedArrayBuffer;
  errors: MessagePort;
}

export function batchViews(buf: SharedArrayBuffer, maxRows: number) {
  return {
    inputs: new Int32Array(buf, 0, maxRows),
    targets: new Int32Array(buf, 4 * maxRows, maxRows),
    weights: new Float32Array(buf, 8 * maxRows, maxRows),
    meta: new Int32Array(buf, 12 * maxRows, 3),
  };
}

export function batchBytes(maxRows: number): number {
  return 12 * maxRows + 12;
}

interface WorkerHandle {
  worker: Worker;
  control: Int32Array;
  batch: ReturnType<typeof batchViews>;
  gradients: Float32Array;
  result: Float64Array;
  errors: MessagePort;
  failed: Error | null;
}

/** Sum of the loss weights of rows that carry loss (their count when the batch is unweighted). */
function lossWeight(b: Batch, from: number, to: number): number {
  if (!b.weights) return to - from;
  let s = 0;
  for (let i = from; i < to; i++) if (b.weights[i] > 0) s += b.weights[i];
  return s;
}

export class DataParallelGroup {
  private readonly handles: WorkerHandle[] = [];
  private readonly weights: Float32Array;
  private readonly layout: { name: string; offset: number; size: number }[];
  private step = 0;
  private closed = false;

  constructor(
    readonly model: LlamaModel,
    readonly workers: number,
    readonly maxRows: number,
  ) {
    if (!Number.isInteger(workers) || workers < 2)
      throw new Error(`data parallelism needs at least 2 workers, got ${workers}`);
    if (model.adapters.size > 0)
      throw new Error(
        'data-parallel training supports full-parameter training only (the model has LoRA adapters)',
      );
    let offset = 0;
    this.layout = [...model.params].map(([name, t]) => {
      const entry = { name, offset, size: t.size };
      offset += t.size;
      return entry;
    });
    const total = offset;
    const weightsBuf = new SharedArrayBuffer(4 * total);
    this.weights = new Float32Array(weightsBuf);
    const entry = new URL('./data-parallel-entry.mjs', import.meta.url);
    for (let i = 0; i < workers; i++) {
      const gradients = new SharedArrayBuffer(4 * total);
      const control = new SharedArrayBuffer(4 * CONTROL_WORDS);
      const batch = new SharedArrayBuffer(batchBytes(maxRows));
      const result = new SharedArrayBuffer(8 * 2);
      const channel = new MessageChannel();
      const init: WorkerInit = {
        config: model.config,
        params: this.layout,
        weights: weightsBuf,
        gradients,
        control,
        batch,
        maxRows,
        result,
        errors: channel.port2,
      };
      const worker = new Worker(entry, { workerData: init, transferList: [channel.port2] });
      // Blocked in Atomics.wait between steps, a worker must not keep the process alive.
      worker.unref();
      const handle: WorkerHandle = {
        worker,
        control: new Int32Array(control),
        batch: batchViews(batch, maxRows),
        gradients: new Float32Array(gradients),
        result: new Float64Array(result),
        errors: channel.port1,
        failed: null,
      };
      worker.on('error', (e) => (handle.failed = e));
      this.handles.push(handle);
    }
  }

  /**
   * Runs forward and backward of `batch` across the workers and leaves the combined gradient of the batch's
   * mean (weighted) loss in each parameter's `grad`. Returns the loss and the number of rows that carry loss.
   */
  lossAndGradients(batch: Batch): { loss: number; tokens: number } {
    if (this.closed) throw new Error('data-parallel group is closed');
    const rowsPerSeq = batch.seqLen;
    if (batch.batch * rowsPerSeq > this.maxRows * this.workers)
      throw new Error(`batch of ${batch.batch} x ${batch.seqLen} exceeds the data-parallel buffers`);
    for (const { name, offset } of this.layout) this.weights.set(this.model.params.get(name)!.data, offset);
    this.step++;
    const shares: { handle: WorkerHandle; weight: number }[] = [];
    for (let i = 0; i < this.workers; i++) {
      const s0 = Math.floor((i * batch.batch) / this.workers);
      const s1 = Math.floor(((i + 1) * batch.batch) / this.workers);
      const from = s0 * rowsPerSeq;
      const to = s1 * rowsPerSeq;
      const weight = lossWeight(batch, from, to);
      if (s1 === s0 || weight === 0) continue;
      const h = this.handles[i];
      h.batch.inputs.set(batch.inputs.subarray(from, to));
      h.batch.targets.set(batch.targets.subarray(from, to));
      if (batch.weights) h.batch.weights.set(batch.weights.subarray(from, to));
      h.batch.meta[0] = s1 - s0;
      h.batch.meta[1] = rowsPerSeq;
      h.batch.meta[2] = batch.weights ? 1 : 0;
      Atomics.store(h.control, CMD, this.step);
      Atomics.notify(h.control, CMD);
      shares.push({ handle: h, weight });
    }
    if (shares.length === 0) throw new Error('batch has no rows that carry loss');
    for (const { handle } of shares) this.await(handle);
    const total = shares.reduce((a, s) => a + s.weight, 0);
    let loss = 0;
    let tokens = 0;
    for (const { handle, weight } of shares) {
      loss += (weight / total) * handle.result[0];
      tokens += handle.result[1];
    }
    for (const { name, offset, size } of this.layout) {
      const t = this.model.params.get(name)!;
      if (!t.requiresGrad) continue;
      const g = new Float32Array(size);
      for (const { handle, weight } of shares) {
        const f = weight / total;
        const src = handle.gradients;
        for (let j = 0; j < size; j++) g[j] += f * src[offset + j];
      }
      t.grad = g;
    }
    return { loss, tokens };
  }

  private await(h: WorkerHandle): void {
    // Wait in slices so that a worker that died (and will never signal) is noticed.
    while (Atomics.load(h.control, DONE) !== this.step) {
      if (h.failed) throw new Error(`data-parallel worker failed: ${h.failed.message}`);
      Atomics.wait(h.control, DONE, Atomics.load(h.control, DONE), 1000);
      if (Atomics.load(h.control, STATUS) !== 0) break;
    }
    if (Atomics.load(h.control, STATUS) !== 0) {
      const msg = receiveMessageOnPort(h.errors)?.message as string | undefined;
      throw new Error(`data-parallel worker: ${msg ?? 'failed without a message'}`);
    }
  }

  /** Stops the workers. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.handles) {
      Atomics.store(h.control, CMD, EXIT_COMMAND);
      Atomics.notify(h.control, CMD);
      void h.worker.terminate();
      h.errors.close();
    }
  }
}
