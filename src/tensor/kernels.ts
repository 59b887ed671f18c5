/**
 * Element-wise and row-wise float32 kernels with their backward passes. Pure functions over flat row-major
 * arrays; the autograd layer wraps them. Accumulations use float64 where rows are long (norms, softmax sums).
 */

/** y = x * rsqrt(mean(x^2) + eps) * w over rows of length d. Returns y and per-row rsqrt (saved for backward). */
export function rmsNormForward(
  x: Float32Array,
  w: Float32Array,
  d: number,
  eps: number,
): { y: Float32Array; rstd: Float32Array } {
  const rows = x.length / d;
  const y = new Float32Array(x.length);
  const rstd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[o + i] * x[o + i];
    const s = 1 / Math.sqrt(ss / d + eps);
    rstd[r] = s;
    for (let i = 0; i < d; i++) y[o + i] = x[o + i] * s * w[i];
  }
  return { y, rstd };
}

export function rmsNormBackward(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rstd: Float32Array,
  d: number,
  dx: Float32Array | null,
  dw: Float32Array | null,
): void {
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const s = rstd[r];
    if (dw) for (let i = 0; i < d; i++) dw[i] += dy[o + i] * x[o + i] * s;
    if (dx) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += dy[o + i] * w[i] * x[o + i];
      const c = (dot * s * s * s) / d;
      for (let i = 0; i < d; i++) dx[o + i] += dy[o + i] * w[i] * s - x[o + i] * c;
    }
  }
}

/**
 * Cos/sin tables for rotary embedding (rotate-half convention of Hugging Face Llama), indexed [pos][i<d/2].
 * `theta` is the base of the plain frequencies 1 / theta^(2i/d), or the d/2 inverse frequencies themselves
 * (scaled RoPE: Llama 3's, linear).
 */
export function ropeTables(
  positions: Int32Array,
  headDim: number,
  theta: number | Float64Array,
): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  if (typeof theta !== 'number' && theta.length !== half)
    throw new Error(`rope: ${theta.length} inverse frequencies for head dimension ${headDim}`);
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  for (let p = 0; p < positions.length; p++) {
    for (let i = 0; i < half; i++) {
      // Computed in float64 then rounded, as PyTorch does from float32 inv_freq: keep it simple and exact-ish.
      const invFreq = typeof theta === 'number' ? 1 / Math.pow(theta, (2 * i) / headDim) : theta[i];
      const angle = positions[p] * invFreq;
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * Applies rotary embedding to x laid out [rows, heads, headDim] where row r uses table row r.
 * `inverse` rotates by the negative angle (the backward pass of a rotation is its transpose).
 */
export function ropeApply(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  cos: Float32Array,
  sin: Float32Array,
  inverse: boolean,
  out: Float32Array,
  accumulate = false,
): void {
  const half = headDim / 2;
  const sign = inverse ? -1 : 1;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const c = cos[r * half + i];
        const s = sign * sin[r * half + i];
        const x1 = x[o + i];
        const x2 = x[o + i + half];
        const y1 = x1 * c - x2 * s;
        const y2 = x2 * c + x1 * s;
        if (accumulate) {
          out[o + i] += y1;
          out[o + i + half] += y2;
        } else {
          out[o + i] = y1;
          out[o + i + half] = y2;
        }
      }
    }
  }
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/**
 * In-place causal softmax over score rows of a [batch, t, tk] block; query i sees keys j <= i + offset, and
 * with a sliding `window` only the last `window` of them (i + offset - j < window).
 */
export function causalSoftmaxInPlace(
  scores: Float32Array,
  batch: number,
  t: number,
  tk: number,
  scale: number,
  offset: number,
  window = Infinity,
): void {
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < t; i++) {
      const o = (b * t + i) * tk;
      const last = Math.min(tk - 1, i + offset);
      const first = Math.max(0, i + offset - window + 1);
      let max = -Infinity;
      for (let j = first; j <= last; j++) {
        const v = scores[o + j] * scale;
        scores[o + j] = v;
        if (v > max) max = v;
      }
      let sum = 0;
      for (let j = first; j <= last; j++) {
        const e = Math.exp(scores[o + j] - max);
        scores[o + j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let j = 0; j < first; j++) scores[o + j] = 0;
      for (let j = first; j <= last; j++) scores[o + j] *= inv;
      for (let j = last + 1; j < tk; j++) scores[o + j] = 0;
    }
  }
}

/** dS = P * (dP - rowsum(dP * P)) * scale, in place on dP. */
export function softmaxBackwardInPlace(
  dP: Float32Array,
  p: Float32Array,
  rows: number,
  cols: number,
  scale: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let dot = 0;
    for (let j = 0; j < cols; j++) dot += dP[o + j] * p[o + j];
    for (let j = 0; j < cols; j++) dP[o + j] = p[o + j] * (dP[o + j] - dot) * scale;
  }
}

/**
 * Fused softmax cross-entropy over rows of logits [n, v] with per-row weights (0 masks a row).
 * Returns the weighted mean loss and, if wanted, dLogits already scaled for that mean.
 */
export function crossEntropyForward(
  logits: Float32Array,
  targets: Int32Array,
  weights: Float32Array | null,
  v: number,
  wantGrad: boolean,
): { loss: number; weightSum: number; dLogits: Float32Array | null } {
  const n = targets.length;
  let weightSum = 0;
  for (let r = 0; r < n; r++) weightSum += weights ? weights[r] : 1;
  const dLogits = wantGrad ? new Float32Array(logits.length) : null;
  if (weightSum === 0) return { loss: 0, weightSum, dLogits };
  let total = 0;
  const row = new Float32Array(v);
  for (let r = 0; r < n; r++) {
    const w = weights ? weights[r] : 1;
    if (w === 0) continue;
    const t = targets[r];
    if (t < 0 || t >= v)
      throw new Error(`cross-entropy: target id ${t} at row ${r} is outside the vocabulary (${v})`);
    const o = r * v;
    let max = -Infinity;
    for (let j = 0; j < v; j++) if (logits[o + j] > max) max = logits[o + j];
    // One exp per element: keep the exponentials and rescale them into the gradient.
    const e = dLogits ? dLogits.subarray(o, o + v) : row;
    let sum = 0;
    for (let j = 0; j < v; j++) {
      const x = Math.exp(logits[o + j] - max);
      e[j] = x;
      sum += x;
    }
    total += w * (max + Math.log(sum) - logits[o + t]);
    if (dLogits) {
      const c = w / weightSum / sum;
      for (let j = 0; j < v; j++) e[j] *= c;
      e[t] -= w / weightSum;
    }
  }
  return { loss: total / weightSum, weightSum, dLogits };
}

/** log softmax of one row, written into out. */
export function logSoftmaxRow(logits: Float32Array, offset: number, v: number, out: Float32Array): void {
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (logits[offset + j] > max) max = logits[offset + j];
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(logits[offset + j] - max);
  const logZ = max + Math.log(sum);
  for (let j = 0; j < v; j++) out[j] = logits[offset + j] - logZ;
}

/**
 * One AdamW step on the index range [start, end) of a parameter: the same arithmetic, in the same order,
 * as a per-element closure, so results are bit-identical; a plain loop is ~10x faster than a callback per
 * element. c1, c2 are the bias corrections 1 - beta^step; decay is lr * weightDecay (0 for no decay).
 */
export function adamwUpdate(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  start: number,
  end: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  decay: number,
  c1: number,
  c2: number,
): void {
  const a1 = 1 - beta1;
  const a2 = 1 - beta2;
  for (let i = start; i < end; i++) {
    const gi = g[i];
    const mi = beta1 * m[i] + a1 * gi;
    const vi = beta2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    // m[i], v[i] are re-read as float32, as the closure form does.
    w[i] -= decay * w[i] + (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
  }
}

/** Sum of squares of g[start .. end) accumulated in float64 onto `acc` (sequential order). */
export function sumSquares(g: Float32Array, start: number, end: number, acc = 0): number {
  let ss = acc;
  for (let i = start; i < end; i++) ss += g[i] * g[i];
  return ss;
}
