/**
 * The training loop: forward, masked cross-entropy on the rows that carry loss, backward, clip, AdamW with a
 * warmup + cosine schedule, periodic atomic checkpoints, and exact resume (weights, moments, data cursor).
 */
import { crossEntropy, reshape, selectRows } from '../autograd/ops.ts';
import type { HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import type { Batch, BatchSource } from './data.ts';
import { DataParallelGroup } from './data-parallel.ts';
import { fusedLossAndGradients } from './fused-step.ts';
import { resumableCheckpoint, loadCheckpoint, saveCheckpoint, CHECKPOINT_FORMAT } from './checkpoint.ts';
import { AdamW, DEFAULT_ADAMW, type AdamWOptions } from './optimizer.ts';
import { learningRate, type LrSchedule } from './schedule.ts';
import { selectTrainable, type TrainableSpec } from './trainable.ts';

export interface TrainerOptions {
  schedule: LrSchedule;
  trainable: TrainableSpec;
  seed: number;
  clipNorm?: number;
  adamw?: Partial<AdamWOptions>;
  /** Hooks active during training (e.g. preventative steering); gradients flow through their edits. */
  hooks?: HookSet;
  checkpointDir?: string;
  checkpointEvery?: number;
  /** Files stored beside each checkpoint's weights (e.g. tokenizer.json). */
  extraFiles?: Record<string, string | Uint8Array>;
  /**
   * Worker threads that share each batch (data parallelism, one kernel thread each); 1 (the default) trains
   * in this thread. Needs trainable 'all' and no hooks.
   */
  workers?: number;
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  /** Wall time of the step's phases (what `psm profile step` reports): the batch, loss and gradients, clipping, the update. */
  ms: { batch: number; gradients: number; clip: number; update: number };
}

/** Mean masked cross-entropy of a batch; only rows with weight > 0 reach the unembedding. */
export function batchLoss(model: LlamaModel, batch: Batch, hooks?: HookSet) {
  const hidden = model.forwardHidden(batch.inputs, batch.batch, { hooks });
  const flat = reshape(hidden, [batch.batch * batch.seqLen, model.config.dim]);
  if (!batch.weights)
    return { loss: crossEntropy(model.logits(flat), batch.targets), tokens: batch.targets.length };
  const rows: number[] = [];
  for (let i = 0; i < batch.weights.length; i++) if (batch.weights[i] > 0) rows.push(i);
  const idx = Int32Array.from(rows);
  const targets = Int32Array.from(rows, (r) => batch.targets[r]);
  const weights = Float32Array.from(rows, (r) => batch.weights![r]);
  return { loss: crossEntropy(model.logits(selectRows(flat, idx)), targets, weights), tokens: rows.length };
}

export class Trainer {
  readonly optimizer: AdamW;
  step = 0;
  private readonly fingerprint: string;
  private group: DataParallelGroup | null = null;

  constructor(
    readonly model: LlamaModel,
    readonly source: BatchSource,
    readonly options: TrainerOptions,
  ) {
    const workers = options.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1)
      throw new Error(`trainer: workers must be a positive integer, got ${workers}`);
    if (workers > 1 && (options.trainable.kind !== 'all' || options.hooks))
      throw new Error(
        `trainer: data-parallel workers (${workers}) need trainable 'all' and no hooks (got trainable '${options.trainable.kind}'${options.hooks ? ' and hooks' : ''})`,
      );
    const params = selectTrainable(model, options.trainable, options.seed);
    this.optimizer = new AdamW(params, { ...DEFAULT_ADAMW, ...options.adamw });
    this.fingerprint = JSON.stringify({
      trainable: options.trainable,
      schedule: options.schedule,
      seed: options.seed,
      adamw: this.optimizer.options,
      clip: options.clipNorm ?? 1,
    });
  }

  /** Loads the latest checkpoint of checkpointDir if there is one; returns the step resumed from (0 if none). */
  resume(): number {
    const dir = this.options.checkpointDir;
    if (!dir) return 0;
    const folder = resumableCheckpoint(dir);
    if (!folder) return 0;
    const state = loadCheckpoint(folder, this.model, this.optimizer, this.fingerprint);
    this.source.restore(state.data);
    this.step = state.step;
    return this.step;
  }

  trainStep(): StepInfo {
    const start = performance.now();
    const batch = this.source.next();
    const lr = learningRate(this.options.schedule, this.step);
    this.optimizer.zeroGrad();
    let value: number;
    let tokens: number;
    const t0 = performance.now();
    try {
      ({ value, tokens } = this.lossAndGradients(batch));
    } catch (e) {
      throw new Error(`training step ${this.step + 1}: ${(e as Error).message}`);
    }
    const t1 = performance.now();
    const gradNorm = this.optimizer.clipGradients(this.options.clipNorm ?? 1);
    const t2 = performance.now();
    this.optimizer.update(lr);
    const t3 = performance.now();
    this.step++;
    if (
      this.options.checkpointDir &&
      this.options.checkpointEvery &&
      this.step % this.options.checkpointEvery === 0
    )
      this.checkpoint();
    return {
      step: this.step,
      loss: value,
      lr,
      gradNorm,
      tokens,
      ms: { batch: t0 - start, gradients: t1 - t0, clip: t2 - t1, update: t3 - t2 },
    };
  }

  /** Loss of the batch, with its gradients left in the parameters (in this thread or across the workers). */
  private lossAndGradients(batch: Batch): { value: number; tokens: number } {
    const workers = this.options.workers ?? 1;
    if (workers > 1) {
      const rows = Math.ceil(batch.batch / workers) * batch.seqLen;
      if (this.group && this.group.maxRows < rows) this.close();
      this.group ??= new DataParallelGroup(this.model, workers, rows);
      const { loss, tokens } = this.group.lossAndGradients(batch);
      if (!Number.isFinite(loss)) throw new Error(`loss is ${loss}`);
      return { value: loss, tokens };
    }
    const fused = fusedLossAndGradients(this.model, batch, this.options.hooks);
    if (fused) {
      if (!Number.isFinite(fused.loss)) throw new Error(`loss is ${fused.loss}`);
      return { value: fused.loss, tokens: fused.tokens };
    }
    const { loss, tokens } = batchLoss(this.model, batch, this.options.hooks);
    const value = loss.item();
    if (!Number.isFinite(value)) throw new Error(`loss is ${value}`);
    loss.backward();
    return { value, tokens };
  }

  /** Stops the data-parallel workers, if any (they start again on the next step). */
  close(): void {
    this.group?.close();
    this.group = null;
  }

  checkpoint(): string {
    if (!this.options.checkpointDir) throw new Error('trainer has no checkpointDir');
    return saveCheckpoint(
      this.options.checkpointDir,
      this.model,
      this.optimizer,
      {
        format: CHECKPOINT_FORMAT,
        step: this.step,
        optimizerStep: this.optimizer.step,
        data: this.source.state(),
        fingerprint: this.fingerprint,
      },
      this.options.extraFiles,
    );
  }

  /** Trains until `totalSteps` (the schedule's by default), calling onStep after each step. */
  run(onStep?: (info: StepInfo) => void, totalSteps = this.options.schedule.totalSteps): void {
    try {
      while (this.step < totalSteps) {
        const info = this.trainStep();
        onStep?.(info);
      }
    } finally {
      this.close();
    }
    if (
      this.options.checkpointDir &&
      (!this.options.checkpointEvery || this.step % this.options.checkpointEvery !== 0)
    )
      this.checkpoint();
  }
}
