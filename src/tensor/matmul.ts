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

export interface MatmulBackend {
  readonly name: string;
  /** Number of threads the backend computes with (for reporting). */
  readonly threads: number;
  matmul(a: Float32Array, b: Float32Array, spec: MatmulSpec): Float32Array;
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

export function matmul(a: Float32Array, b: Float32Array, spec: MatmulSpec): Float32Array {
  checkSizes(a, b, spec);
  return activeBackend.matmul(a, b, spec);
}
