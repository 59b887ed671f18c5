/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter 2019) with optional row masks, so a fine-tune can
 * change chosen rows of a matrix (one token's embedding) and leave every other row bit-identical.
 */
import type { Tensor } from '../autograd/tensor.ts';
import { adamwUpdate, sumSquares } from '../tensor/kernels.ts';

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
    for (const p of this.params) {
      const g = p.tensor.grad;
      if (g) for (const [a, b] of ranges(p)) ss = sumSquares(g, a, b, ss);
    }
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
      for (const [a, b] of ranges(p)) adamwUpdate(w, g, m, v, a, b, lr, beta1, beta2, eps, decay, c1, c2);
    }
  }
}

/** Index ranges a parameter may change: the whole tensor, or its chosen rows. */
function ranges(p: TrainableParam): [number, number][] {
  if (!p.rows) return [[0, p.tensor.size]];
  const width = p.tensor.size / p.tensor.shape[0];
  return p.rows.map((r) => [r * width, (r + 1) * width] as [number, number]);
}
