/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter 2019) with optional row masks, so a fine-tune can
 * change chosen rows of a matrix (one token's embedding) and leave every other row bit-identical.
 */
import type { Tensor } from '../autograd/tensor.ts';

export interface TrainableParam {
  tensor: Tensor;
  /** Rows (first dimension) that may change; null means the whole tensor. */
  rows: number[] | null;
  /** Weight decay applies to matrices, not to norms and biases. */
  decay: boolean;
}

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

export class AdamW {
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  step = 0;

  constructor(
    readonly params: TrainableParam[],
    readonly options: AdamWOptions = DEFAULT_ADAMW,
  ) {
    for (const p of params) {
      this.m.set(p.tensor.name, new Float32Array(p.tensor.size));
      this.v.set(p.tensor.name, new Float32Array(p.tensor.size));
    }
  }

  zeroGrad(): void {
    for (const p of this.params) p.tensor.grad = null;
  }

  /** Global L2 norm of the trainable gradients (masked rows only). */
  gradNorm(): number {
    let ss = 0;
    forEachTrainable(this.params, (g, _d, i) => {
      ss += g[i] * g[i];
    });
    return Math.sqrt(ss);
  }

  /** Scales gradients so their global norm is at most maxNorm; returns the norm before clipping. */
  clipGradients(maxNorm: number): number {
    const norm = this.gradNorm();
    if (!Number.isFinite(norm)) throw new Error(`gradient norm is ${norm} at step ${this.step + 1}`);
    if (maxNorm > 0 && norm > maxNorm) {
      const s = maxNorm / (norm + 1e-6);
      for (const p of this.params)
        if (p.tensor.grad) for (let i = 0; i < p.tensor.grad.length; i++) p.tensor.grad[i] *= s;
    }
    return norm;
  }

  update(lr: number): void {
    this.step++;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const c1 = 1 - Math.pow(beta1, this.step);
    const c2 = 1 - Math.pow(beta2, this.step);
    for (const p of this.params) {
      const g = p.tensor.grad;
      if (!g) continue;
      const w = p.tensor.data;
      const m = this.m.get(p.tensor.name)!;
      const v = this.v.get(p.tensor.name)!;
      const decay = p.decay ? lr * weightDecay : 0;
      forEachIndex(p, (i) => {
        const gi = g[i];
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
        w[i] -= decay * w[i] + (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
      });
    }
  }
}

function forEachIndex(p: TrainableParam, fn: (i: number) => void): void {
  if (!p.rows) {
    for (let i = 0; i < p.tensor.size; i++) fn(i);
    return;
  }
  const width = p.tensor.size / p.tensor.shape[0];
  for (const r of p.rows) for (let j = 0; j < width; j++) fn(r * width + j);
}

function forEachTrainable(
  params: TrainableParam[],
  fn: (g: Float32Array, d: Float32Array, i: number) => void,
): void {
  for (const p of params) {
    const g = p.tensor.grad;
    if (!g) continue;
    forEachIndex(p, (i) => fn(g, p.tensor.data, i));
  }
}
