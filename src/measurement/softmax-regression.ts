/**
 * Softmax regression with soft targets, for linear probes: features standardised and (optionally) whitened, then
 * mean cross-entropy + L2 / 2 |W|^2 minimised by L-BFGS to convergence (the objective is convex), or by a fixed
 * number of full-batch Adam steps (the original probe solver, kept to reproduce earlier numbers). Optional per-row
 * log offsets (e.g. log priors) are added to the logits.
 */
import { matmul } from '../tensor/matmul.ts';

/**
 * Whitening shrinkage: the features are whitened with their covariance + shrink x identity, which damps the
 * directions the rows barely span instead of blowing them up.
 */
export const DEFAULT_SHRINK = 1e-3;

export interface FitOptions {
  /** L2 strength on the weights (on whitened features when whiten; default 1e-3, or 3e-2 unwhitened). */
  l2?: number;
  /** Iterations (default 300 for L-BFGS, an upper bound; 250 for Adam, a fixed count). */
  iterations?: number;
  /** Adam's step size (default 0.05). */
  lr?: number;
  /** 'lbfgs' (default): the convex objective to convergence; 'adam': a fixed number of full-batch Adam steps. */
  solver?: 'lbfgs' | 'adam';
  /** Whiten the standardised features (default true with L-BFGS, false with Adam). */
  whiten?: boolean;
  /** Whitening shrinkage (default DEFAULT_SHRINK). */
  shrink?: number;
  /** Row-major [n, classes] log offsets added to the logits (e.g. log priors; -Infinity gives probability 0). */
  offset?: Float32Array | null;
}

/** Standardisation (and optional whitening) fitted on training rows. */
export interface PreparedFeatures {
  dim: number;
  mean: Float32Array;
  std: Float32Array;
  /** [dim, width]: standardised row z -> whitened row z P; null without whitening (width = dim). */
  P: Float32Array | null;
  width: number;
}

export function prepareFeatures(
  X: Float32Array,
  n: number,
  dim: number,
  whiten: boolean,
  shrink = DEFAULT_SHRINK,
): PreparedFeatures {
  const m64 = new Float64Array(dim);
  const s64 = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) m64[j] += X[i * dim + j];
  for (let j = 0; j < dim; j++) m64[j] /= n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) s64[j] += (X[i * dim + j] - m64[j]) ** 2;
  const mu = Float32Array.from(m64);
  const sd = Float32Array.from(s64, (s) => Math.sqrt(s / n) + 1e-6);
  if (!whiten) return { dim, mean: mu, std: sd, P: null, width: dim };
  // Covariance S of the standardised rows (unit diagonal), the Cholesky factor L of S + shrink I (shrink raised
  // tenfold while the factorisation fails), and P = L^-T: z P has covariance L^-1 S L^-T, the identity up to the
  // shrinkage, which leaves the directions the rows barely span damped rather than blown up.
  const Z = standardise({ dim, mean: mu, std: sd, P: null, width: dim }, X, n);
  const cov32 = matmul(Z, Z, { batch: 1, m: dim, n: dim, k: n, transA: true, transB: false });
  for (let jitter = Math.max(shrink, 1e-7); ; jitter *= 10) {
    const L = cholesky(cov32, dim, n, jitter);
    if (L) {
      const Linv = lowerInverse(L, dim);
      const P = new Float32Array(dim * dim);
      for (let a = 0; a < dim; a++) for (let b = 0; b <= a; b++) P[b * dim + a] = Linv[a * dim + b];
      return { dim, mean: mu, std: sd, P, width: dim };
    }
    if (jitter > 1) throw new Error('probe: the feature covariance is not positive definite');
  }
}

/** Cholesky factor (row-major lower triangle) of cov / n + jitter I, or null if not positive definite. */
function cholesky(cov: Float32Array, d: number, n: number, jitter: number): Float64Array | null {
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = cov[i * d + j] / n + (i === j ? jitter : 0);
      for (let k = 0; k < j; k++) s -= L[i * d + k] * L[j * d + k];
      if (i === j) {
        if (!(s > 0)) return null;
        L[i * d + i] = Math.sqrt(s);
      } else L[i * d + j] = s / L[j * d + j];
    }
  }
  return L;
}

/** Inverse of a row-major lower-triangular matrix (lower-triangular). */
function lowerInverse(L: Float64Array, d: number): Float64Array {
  const inv = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    inv[i * d + i] = 1 / L[i * d + i];
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L[i * d + k] * inv[k * d + j];
      inv[i * d + j] = -s / L[i * d + i];
    }
  }
  return inv;
}

function standardise(p: PreparedFeatures, X: Float32Array, n: number): Float32Array {
  const { dim } = p;
  const Z = new Float32Array(n * dim);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < dim; j++) Z[i * dim + j] = (X[i * dim + j] - p.mean[j]) / p.std[j];
  return Z;
}

export function transformFeatures(p: PreparedFeatures, X: Float32Array, n: number): Float32Array {
  const Z = standardise(p, X, n);
  if (!p.P) return Z;
  return matmul(Z, p.P, { batch: 1, m: n, n: p.width, k: p.dim, transA: false, transB: false });
}

/** Weights on transformed features [C, width] -> weights on standardised features [C, dim]. */
function foldWeights(p: PreparedFeatures, Wt: Float32Array, C: number): Float32Array {
  if (!p.P) return Wt.slice();
  return matmul(Wt, p.P, { batch: 1, m: C, n: p.dim, k: p.width, transA: false, transB: true });
}

/**
 * Softmax regression with soft targets on rows F [n, width]: minimises mean cross-entropy + l2 / 2 |W|^2 by
 * L-BFGS (the objective is convex) from `init` ([C x width weights, C biases]) or zero weights.
 */
function lbfgsSoftmax(
  F: Float32Array,
  Y: Float32Array,
  n: number,
  width: number,
  C: number,
  opts: { l2: number; iterations: number; offset: Float32Array | null; init?: Float64Array },
): { theta: Float64Array; loss: number } {
  const NW = C * width;
  const P = NW + C;
  const G = new Float32Array(n * C);
  const W32 = new Float32Array(NW);
  const lg = new Float64Array(C);
  const evaluate = (th: Float64Array, grad: Float64Array): number => {
    for (let k = 0; k < NW; k++) W32[k] = th[k];
    const L = matmul(F, W32, { batch: 1, m: n, n: C, k: width, transA: false, transB: true });
    let loss = 0;
    grad.fill(0);
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < C; c++) {
        const v = L[i * C + c] + th[NW + c] + (opts.offset ? opts.offset[i * C + c] : 0);
        lg[c] = v;
        if (v > max) max = v;
      }
      let z = 0;
      for (let c = 0; c < C; c++) z += Math.exp(lg[c] - max);
      const lz = max + Math.log(z);
      for (let c = 0; c < C; c++) {
        const y = Y[i * C + c];
        const lp = lg[c] - lz;
        if (y > 0) loss -= (y * lp) / n;
        const g = (Math.exp(lp) - y) / n;
        G[i * C + c] = g;
        grad[NW + c] += g;
      }
    }
    const gW = matmul(G, F, { batch: 1, m: C, n: width, k: n, transA: true, transB: false });
    for (let k = 0; k < NW; k++) {
      grad[k] = gW[k] + opts.l2 * th[k];
      loss += 0.5 * opts.l2 * th[k] * th[k];
    }
    return loss;
  };
  const th = opts.init ? opts.init.slice() : new Float64Array(P);
  if (!opts.init && !opts.offset) {
    // Without an offset, start the bias at the log of the mean target: the probe begins at the average posterior.
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += Y[i * C + c];
      th[NW + c] = Math.log(s / n + 1e-6);
    }
  }
  const memory = 10;
  const S: Float64Array[] = [];
  const Yd: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Float64Array(memory);
  let g = new Float64Array(P);
  let gNew = new Float64Array(P);
  const d = new Float64Array(P);
  const thNew = new Float64Array(P);
  let f = evaluate(th, g);
  const dot = (a: Float64Array, b: Float64Array) => {
    let s = 0;
    for (let k = 0; k < P; k++) s += a[k] * b[k];
    return s;
  };
  for (let it = 0; it < opts.iterations; it++) {
    // Two-loop recursion for the quasi-Newton direction.
    for (let k = 0; k < P; k++) d[k] = -g[k];
    for (let q = S.length - 1; q >= 0; q--) {
      const a = rho[q] * dot(S[q], d);
      alpha[q] = a;
      for (let k = 0; k < P; k++) d[k] -= a * Yd[q][k];
    }
    const last = S.length - 1;
    const scale = last >= 0 ? dot(S[last], Yd[last]) / dot(Yd[last], Yd[last]) : 1 / Math.sqrt(dot(g, g));
    for (let k = 0; k < P; k++) d[k] *= scale;
    for (let q = 0; q < S.length; q++) {
      const b = rho[q] * dot(Yd[q], d);
      for (let k = 0; k < P; k++) d[k] += S[q][k] * (alpha[q] - b);
    }
    let gd = dot(g, d);
    if (!(gd < 0)) {
      for (let k = 0; k < P; k++) d[k] = -g[k];
      gd = -dot(g, g);
      S.length = 0;
      Yd.length = 0;
      rho.length = 0;
    }
    if (gd === 0) break;
    // Backtracking line search (Armijo).
    let step = 1;
    let fNew = Infinity;
    let ok = false;
    for (let ls = 0; ls < 30 && !ok; ls++) {
      for (let k = 0; k < P; k++) thNew[k] = th[k] + step * d[k];
      fNew = evaluate(thNew, gNew);
      if (fNew <= f + 1e-4 * step * gd) ok = true;
      else step /= 2;
    }
    if (!ok) break;
    const s = new Float64Array(P);
    const y = new Float64Array(P);
    for (let k = 0; k < P; k++) {
      s[k] = thNew[k] - th[k];
      y[k] = gNew[k] - g[k];
    }
    const sy = dot(s, y);
    if (sy > 1e-12) {
      S.push(s);
      Yd.push(y);
      rho.push(1 / sy);
      if (S.length > memory) {
        S.shift();
        Yd.shift();
        rho.shift();
      }
    }
    th.set(thNew);
    [g, gNew] = [gNew, g];
    const drop = f - fNew;
    f = fNew;
    if (drop < 1e-7 * Math.max(1, Math.abs(f))) break;
  }
  return { theta: th, loss: f };
}

/** Full-batch Adam for a fixed number of steps (the original solver, kept to reproduce earlier numbers). */
function adamSoftmax(
  Z: Float32Array,
  Y: Float32Array,
  n: number,
  dim: number,
  classes: number,
  opts: { l2: number; iterations: number; lr: number; offset: Float32Array | null },
): { theta: Float64Array; loss: number } {
  const { l2, iterations: iters, lr, offset } = opts;
  const W = new Float32Array(classes * dim);
  const b = new Float32Array(classes);
  if (!offset) {
    // Start the bias at the log of the mean target: the probe begins at the average posterior.
    for (let c = 0; c < classes; c++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += Y[i * classes + c];
      b[c] = Math.log(s / n + 1e-6);
    }
  }
  const mW = new Float32Array(W.length);
  const vW = new Float32Array(W.length);
  const mB = new Float32Array(classes);
  const vB = new Float32Array(classes);
  const gW = new Float32Array(W.length);
  const gB = new Float32Array(classes);
  const p = new Float64Array(classes);
  let loss = NaN;
  for (let it = 1; it <= iters; it++) {
    gW.fill(0);
    gB.fill(0);
    loss = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let s = b[c] + (offset ? offset[i * classes + c] : 0);
        if (s !== -Infinity) for (let j = 0; j < dim; j++) s += W[c * dim + j] * Z[i * dim + j];
        p[c] = s;
        if (s > max) max = s;
      }
      let z = 0;
      for (let c = 0; c < classes; c++) z += p[c] = Math.exp(p[c] - max);
      for (let c = 0; c < classes; c++) {
        p[c] /= z;
        const y = Y[i * classes + c];
        if (y > 0) loss -= (y * Math.log(p[c] + 1e-12)) / n;
        const g = (p[c] - y) / n;
        gB[c] += g;
        for (let j = 0; j < dim; j++) gW[c * dim + j] += g * Z[i * dim + j];
      }
    }
    for (let k = 0; k < W.length; k++) gW[k] += l2 * W[k];
    const b1 = 0.9;
    const b2 = 0.999;
    const c1 = 1 - b1 ** it;
    const c2 = 1 - b2 ** it;
    for (let k = 0; k < W.length; k++) {
      mW[k] = b1 * mW[k] + (1 - b1) * gW[k];
      vW[k] = b2 * vW[k] + (1 - b2) * gW[k] * gW[k];
      W[k] -= (lr * (mW[k] / c1)) / (Math.sqrt(vW[k] / c2) + 1e-8);
    }
    for (let c = 0; c < classes; c++) {
      mB[c] = b1 * mB[c] + (1 - b1) * gB[c];
      vB[c] = b2 * vB[c] + (1 - b2) * gB[c] * gB[c];
      b[c] -= (lr * (mB[c] / c1)) / (Math.sqrt(vB[c] / c2) + 1e-8);
    }
  }
  const theta = new Float64Array(W.length + classes);
  theta.set(W);
  theta.set(b, W.length);
  return { theta, loss };
}

export interface SoftmaxFit {
  prep: PreparedFeatures;
  theta: Float64Array;
  loss: number;
  weights: Float32Array;
  bias: Float32Array;
}

export function fitPreparedSoftmax(
  prep: PreparedFeatures,
  F: Float32Array,
  Y: Float32Array,
  n: number,
  classes: number,
  opts: FitOptions & { init?: Float64Array },
): SoftmaxFit {
  const solver = opts.solver ?? 'lbfgs';
  const offset = opts.offset ?? null;
  const fit =
    solver === 'adam'
      ? adamSoftmax(F, Y, n, prep.width, classes, {
          l2: opts.l2 ?? (prep.P ? 1e-3 : 3e-2),
          iterations: opts.iterations ?? 250,
          lr: opts.lr ?? 0.05,
          offset,
        })
      : lbfgsSoftmax(F, Y, n, prep.width, classes, {
          l2: opts.l2 ?? (prep.P ? 1e-3 : 3e-2),
          iterations: opts.iterations ?? 300,
          offset,
          init: opts.init,
        });
  const NW = classes * prep.width;
  const weights = foldWeights(prep, Float32Array.from(fit.theta.subarray(0, NW)), classes);
  const bias = Float32Array.from(fit.theta.subarray(NW));
  return { prep, theta: fit.theta, loss: fit.loss, weights, bias };
}

/**
 * Fits softmax regression with soft targets: X [n, dim] (standardised, and whitened by default, here), Y [n,
 * classes] rows summing to 1, optional log offsets. Returns weights on the standardised features (whitening folded
 * in), so that probePredict needs only mean, std, weights and bias.
 */
export function fitSoftmaxProbe(
  X: Float32Array,
  Y: Float32Array,
  n: number,
  dim: number,
  classes: number,
  opts: FitOptions = {},
): { mean: Float32Array; std: Float32Array; weights: Float32Array; bias: Float32Array; loss: number } {
  if (X.length !== n * dim || Y.length !== n * classes)
    throw new Error('fitSoftmaxProbe: X or Y does not match n x dim / n x classes');
  if (n === 0) throw new Error('fitSoftmaxProbe: no training rows');
  if (opts.offset && opts.offset.length !== n * classes)
    throw new Error('fitSoftmaxProbe: offset does not match n x classes');
  const prep = prepareFeatures(X, n, dim, opts.whiten ?? (opts.solver ?? 'lbfgs') === 'lbfgs', opts.shrink);
  const fit = fitPreparedSoftmax(prep, transformFeatures(prep, X, n), Y, n, classes, opts);
  return { mean: prep.mean, std: prep.std, weights: fit.weights, bias: fit.bias, loss: fit.loss };
}
