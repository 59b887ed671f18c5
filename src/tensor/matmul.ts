/**
 * Matrix multiply: the one kernel that decides the engine's speed. The engine calls `matmul` only; which
 * backend computes is a process-wide choice (ONNX Runtime's MLAS kernels when the native addon loads, a
 * plain-JS reference otherwise), so nothing above this layer depends on it.
 */

/**
 * C[b] = op(A[b]) · op(B[b]) for b in [0, batch). op(X) is X or Xᵀ.
 * A is stored as [batch, m, k] (or [batch, k, m] when transA), B as [batch, k, n] (or [batch, n, k] when transB),
 * C as [batch, m, n]. All row-major float32.
 */
export interface MatmulSpec {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

/** Attention sizes: q is [b, t, h, d], k and v are [b, t, hkv, d]. */
export interface AttentionShape {
  b: number;
  t: number;
  h: number;
  hkv: number;
  d: number;
}

/**
 * Sizes of masked attention: q [b, tq, h, d]; k and v [b, tk, hkv, d], following tp cached positions
 * ([b, hkv, tp, d] each; tp may be 0).
 */
export interface MaskedAttentionShape {
  b: number;
  tq: number;
  tk: number;
  tp: number;
  h: number;
  hkv: number;
  d: number;
}

/**
 * Fused kernels a backend may provide for the work around the matmuls. The autograd ops use them when the
 * active backend has them and fall back to the JS kernels otherwise; results agree up to float32 rounding.
 * Every returned array is fresh (the caller may keep or adopt it).
 */
export interface FusedKernels {
  /**
   * Causal softmax attention; returns y [b, t, h, d] and, when keepProbs (for a backward pass), the
   * probabilities p [b, h, t, t].
   */
  attentionForward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: AttentionShape,
    keepProbs: boolean,
  ): { y: Float32Array; p: Float32Array | null };
  /** y and p are attentionForward's outputs for these q, k, v. */
  attentionBackward(
    dy: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    y: Float32Array,
    p: Float32Array,
    s: AttentionShape,
  ): { dq: Float32Array; dk: Float32Array; dv: Float32Array };
  swigluForward(gate: Float32Array, up: Float32Array): Float32Array;
  swigluBackward(
    dy: Float32Array,
    gate: Float32Array,
    up: Float32Array,
  ): { dg: Float32Array; du: Float32Array };
  /**
   * Row-wise log-softmax of logits [n, v] gathered at the targets (logp [n]); with coef, also
   * dLogits = softmax * coef[row] (the caller subtracts coef at the target).
   */
  logSoftmaxGather(
    logits: Float32Array,
    targets: Int32Array,
    coef: Float32Array | null,
    v: number,
  ): { logp: ArrayLike<number>; dLogits: Float32Array | null };
  rmsNormForward(
    x: Float32Array,
    w: Float32Array,
    d: number,
    eps: number,
  ): { y: Float32Array; rstd: Float32Array };
  rmsNormBackward(
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    rstd: Float32Array,
    d: number,
  ): { dx: Float32Array; dw: Float32Array };
  /** a + b, same length. */
  add(a: Float32Array, b: Float32Array): Float32Array;
  /** A fresh copy of a (from the backend's pooled memory: no page faults for large arrays). */
  copy(a: Float32Array): Float32Array;
  /**
   * Rotary embedding (rotate-half) of x [b, t, h, d] with per-time-step tables cos, sin [t, d / 2]; the
   * inverse rotation is the same call with -sin.
   */
  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    b: number,
    t: number,
    h: number,
    d: number,
  ): Float32Array;
  /** Rows of w [rows, dim] at ids (ids already checked to be in range). */
  gatherRows(w: Float32Array, ids: Int32Array, dim: number): Float32Array;
  /**
   * Inference attention (no gradients) under an additive mask: softmax(q kᵀ / sqrt(d) + mask) v, where the keys
   * and values are the cached `past` ones followed by k and v, and mask [b, tq, tp + tk] (0 or -Infinity, the
   * same for every head) says which keys each query sees. Returns y [b, tq, h, d] and, with wantKv, the keys
   * and values of all tp + tk positions ([b, hkv, tp + tk, d] each).
   */
  maskedAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    past: { k: Float32Array; v: Float32Array } | null,
    mask: Float32Array,
    s: MaskedAttentionShape,
    wantKv: boolean,
  ): { y: Float32Array; k: Float32Array | null; v: Float32Array | null };
}

export interface MatmulBackend {
  readonly name: string;
  /** Number of threads the backend computes with (for reporting). */
  readonly threads: number;
  matmul(a: Float32Array, b: Float32Array, spec: MatmulSpec): Float32Array;
  /** Fused non-matmul kernels, when the backend has them. */
  readonly fused?: FusedKernels;
}

function checkSizes(a: Float32Array, b: Float32Array, s: MatmulSpec): void {
  if (a.length !== s.batch * s.m * s.k) {
    throw new Error(`matmul: A has ${a.length} elements, expected batch*m*k = ${s.batch}*${s.m}*${s.k}`);
  }
  if (b.length !== s.batch * s.k * s.n) {
    throw new Error(`matmul: B has ${b.length} elements, expected batch*k*n = ${s.batch}*${s.k}*${s.n}`);
  }
}

/** Reference implementation in plain JS (i-k-j loop order); slow but dependency-free and exact to check against. */
export class JsMatmulBackend implements MatmulBackend {
  readonly name = 'js';
  readonly threads = 1;

  matmul(a: Float32Array, b: Float32Array, s: MatmulSpec): Float32Array {
    checkSizes(a, b, s);
    const { batch, m, n, k, transA, transB } = s;
    const c = new Float32Array(batch * m * n);
    const row = new Float64Array(n);
    for (let bi = 0; bi < batch; bi++) {
      const aOff = bi * m * k;
      const bOff = bi * k * n;
      const cOff = bi * m * n;
      for (let i = 0; i < m; i++) {
        row.fill(0);
        for (let p = 0; p < k; p++) {
          const av = transA ? a[aOff + p * m + i] : a[aOff + i * k + p];
          if (av === 0) continue;
          if (transB) {
            for (let j = 0; j < n; j++) row[j] += av * b[bOff + j * k + p];
          } else {
            const bRow = bOff + p * n;
            for (let j = 0; j < n; j++) row[j] += av * b[bRow + j];
          }
        }
        for (let j = 0; j < n; j++) c[cOff + i * n + j] = row[j];
      }
    }
    return c;
  }
}

let activeBackend: MatmulBackend = new JsMatmulBackend();

export function setMatmulBackend(backend: MatmulBackend): void {
  activeBackend = backend;
}

export function getMatmulBackend(): MatmulBackend {
  return activeBackend;
}

/** The active backend's fused kernels, or null when the JS kernels should run. */
export function fusedKernels(): FusedKernels | null {
  return activeBackend.fused ?? null;
}

export function matmul(a: Float32Array, b: Float32Array, spec: MatmulSpec): Float32Array {
  checkSizes(a, b, spec);
  return activeBackend.matmul(a, b, spec);
}
