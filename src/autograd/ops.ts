/**
 * Differentiable ops of the Llama family, each one fused kernel forward and one backward. Shapes are
 * row-major; "rows" means every dimension but the last.
 *
 * When the active backend has fused kernels (ONNX Runtime), the element-wise and row-wise work (attention,
 * SwiGLU, RMSNorm, rotary embedding, residual adds, embedding gather, the log-softmax of cross-entropy) runs
 * there, vectorised and on the backend's threads, with outputs from its pooled memory; the JS kernels are
 * the reference path of the js backend. Both paths compute the same function up to float32 rounding.
 */
import { fusedKernels, matmul, type FusedKernels } from '../tensor/matmul.ts';
import {
  causalSoftmaxInPlace,
  crossEntropyForward,
  rmsNormBackward,
  rmsNormForward,
  ropeApply,
  ropeTables,
  softmaxBackwardInPlace,
} from '../tensor/kernels.ts';
import { isGradEnabled, makeResult, Tensor } from './tensor.ts';

function lastDim(t: Tensor): number {
  return t.shape[t.shape.length - 1];
}

/** Elementwise a + b (same shape). */
export function add(a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new Error(`add: shapes [${a.shape}] and [${b.shape}] differ`);
  const fk = fusedKernels();
  let y: Float32Array;
  if (fk) {
    y = fk.add(a.data, b.data);
  } else {
    y = new Float32Array(a.size);
    for (let i = 0; i < y.length; i++) y[i] = a.data[i] + b.data[i];
  }
  return makeResult(
    y,
    a.shape,
    [a, b],
    (out) => {
      const g = out.grad!;
      // The output gradient is released after this closure runs, so one parent may adopt it.
      if (a.requiresGrad) a.accumulateGrad(g, true);
      if (b.requiresGrad) {
        if (!a.requiresGrad) b.accumulateGrad(g, true);
        else if (fk && b.grad === null) b.accumulateGrad(fk.copy(g), true);
        else b.accumulateGrad(g);
      }
    },
    'add',
  );
}

/** a * s for a constant scalar s. */
export function scale(a: Tensor, s: number): Tensor {
  const y = new Float32Array(a.size);
  for (let i = 0; i < y.length; i++) y[i] = a.data[i] * s;
  return makeResult(
    y,
    a.shape,
    [a],
    (out) => {
      const g = out.grad!;
      const ga = a.gradBuffer();
      for (let i = 0; i < g.length; i++) ga[i] += g[i] * s;
    },
    'scale',
  );
}

/** Same data, new shape (a view: gradients pass through unchanged). */
export function reshape(a: Tensor, shape: readonly number[]): Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  if (n !== a.size) throw new Error(`reshape: cannot view [${a.shape}] as [${shape}]`);
  return makeResult(a.data, shape, [a], (out) => a.accumulateGrad(out.grad!, true), 'reshape');
}

/** y = x · wᵀ (+ bias): x [..., in], w [out, in] (the Hugging Face weight layout), bias [out]. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null): Tensor {
  const k = lastDim(x);
  const [o, wIn] = w.shape;
  if (w.shape.length !== 2 || wIn !== k) {
    throw new Error(`linear: input [${x.shape}] does not fit weight ${w.name} [${w.shape}]`);
  }
  const m = x.size / k;
  const y = matmul(x.data, w.data, { batch: 1, m, n: o, k, transA: false, transB: true });
  if (bias) {
    for (let r = 0; r < m; r++) for (let j = 0; j < o; j++) y[r * o + j] += bias.data[j];
  }
  const shape = [...x.shape.slice(0, -1), o];
  const parents = bias ? [x, w, bias] : [x, w];
  return makeResult(
    y,
    shape,
    parents,
    (out) => {
      const g = out.grad!;
      if (x.requiresGrad)
        x.accumulateGrad(matmul(g, w.data, { batch: 1, m, n: k, k: o, transA: false, transB: false }), true);
      if (w.requiresGrad)
        w.accumulateGrad(
          matmul(g, x.data, { batch: 1, m: o, n: k, k: m, transA: true, transB: false }),
          true,
        );
      if (bias && bias.requiresGrad) {
        const gb = bias.gradBuffer();
        for (let r = 0; r < m; r++) for (let j = 0; j < o; j++) gb[j] += g[r * o + j];
      }
    },
    'linear',
  );
}

export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const d = lastDim(x);
  if (w.size !== d) throw new Error(`rmsNorm: weight ${w.name} has ${w.size} elements, input rows have ${d}`);
  const fk = fusedKernels();
  if (fk) {
    const { y, rstd } = fk.rmsNormForward(x.data, w.data, d, eps);
    return makeResult(
      y,
      x.shape,
      [x, w],
      (out) => {
        const { dx, dw } = fk.rmsNormBackward(out.grad!, x.data, w.data, rstd, d);
        if (x.requiresGrad) x.accumulateGrad(dx, true);
        if (w.requiresGrad) w.accumulateGrad(dw, true);
      },
      'rmsNorm',
    );
  }
  const { y, rstd } = rmsNormForward(x.data, w.data, d, eps);
  return makeResult(
    y,
    x.shape,
    [x, w],
    (out) => {
      rmsNormBackward(
        out.grad!,
        x.data,
        w.data,
        rstd,
        d,
        x.requiresGrad ? x.gradBuffer() : null,
        w.requiresGrad ? w.gradBuffer() : null,
      );
    },
    'rmsNorm',
  );
}

interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  negSin: Float32Array;
}
/** Tables for positions 0 .. n-1 per (headDim, theta); a table row depends only on its position. */
const ropeCache = new Map<string, RopeTables & { n: number }>();
/** The same for explicit inverse frequencies, per frequency array. */
const ropeFrequencyCache = new WeakMap<Float64Array, RopeTables & { n: number }>();

/** Rope tables for `positions`: slices of a cached table when they are consecutive (training, scoring). */
export function cachedRopeTables(positions: Int32Array, d: number, theta: number | Float64Array): RopeTables {
  const t = positions.length;
  const start = t > 0 ? positions[0] : 0;
  let consecutive = start >= 0;
  for (let i = 1; i < t && consecutive; i++) consecutive = positions[i] === start + i;
  if (!consecutive) {
    const { cos, sin } = ropeTables(positions, d, theta);
    return { cos, sin, negSin: sin.map((v) => -v) };
  }
  const key = `${d}:${typeof theta === 'number' ? theta : 'frequencies'}`;
  let full = typeof theta === 'number' ? ropeCache.get(key) : ropeFrequencyCache.get(theta);
  if (!full || full.n < start + t) {
    const n = Math.max(start + t, 2 * (full?.n ?? 0), 256);
    const { cos, sin } = ropeTables(
      Int32Array.from({ length: n }, (_, i) => i),
      d,
      theta,
    );
    full = { cos, sin, negSin: sin.map((v) => -v), n };
    if (typeof theta === 'number') ropeCache.set(key, full);
    else ropeFrequencyCache.set(theta, full);
  }
  const half = d / 2;
  const a = start * half;
  const z = (start + t) * half;
  return { cos: full.cos.subarray(a, z), sin: full.sin.subarray(a, z), negSin: full.negSin.subarray(a, z) };
}

/**
 * Rotary position embedding on x [batch, t, heads, headDim]; positions[t] gives each time step's absolute
 * position (shared across the batch). `theta` is the frequency base, or the headDim/2 inverse frequencies of
 * a scaled RoPE (one array per model layer kind, kept by the caller: its tables are cached per array).
 */
export function rope(x: Tensor, positions: Int32Array, theta: number | Float64Array): Tensor {
  const [b, t, h, d] = x.shape;
  if (x.shape.length !== 4 || positions.length !== t) {
    throw new Error(`rope: expected [batch, ${positions.length}, heads, headDim], got [${x.shape}]`);
  }
  if (d % 2 !== 0) throw new Error(`rope: head dimension ${d} must be even`);
  const tables = cachedRopeTables(positions, d, theta);
  const fk = fusedKernels();
  if (fk) {
    return makeResult(
      fk.rope(x.data, tables.cos, tables.sin, b, t, h, d),
      x.shape,
      [x],
      (out) => {
        x.accumulateGrad(fk.rope(out.grad!, tables.cos, tables.negSin, b, t, h, d), true);
      },
      'rope',
    );
  }
  // Tables are per time step; expand across the batch by applying per batch slice.
  const y = new Float32Array(x.size);
  const slice = t * h * d;
  for (let bi = 0; bi < b; bi++) {
    ropeApply(
      x.data.subarray(bi * slice, (bi + 1) * slice),
      t,
      h,
      d,
      tables.cos,
      tables.sin,
      false,
      y.subarray(bi * slice, (bi + 1) * slice),
    );
  }
  return makeResult(
    y,
    x.shape,
    [x],
    (out) => {
      const g = out.grad!;
      const gx = x.gradBuffer();
      for (let bi = 0; bi < b; bi++) {
        ropeApply(
          g.subarray(bi * slice, (bi + 1) * slice),
          t,
          h,
          d,
          tables.cos,
          tables.sin,
          true,
          gx.subarray(bi * slice, (bi + 1) * slice),
          true,
        );
      }
    },
    'rope',
  );
}

/** [b, t, h, d] -> [b, h, t, d], repeating each of the h source heads `repeat` times (grouped-query attention). */
function toHeadMajor(
  src: Float32Array,
  b: number,
  t: number,
  h: number,
  d: number,
  repeat: number,
): Float32Array {
  const hOut = h * repeat;
  const out = new Float32Array(b * hOut * t * d);
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let hi = 0; hi < h; hi++) {
        const s = ((bi * t + ti) * h + hi) * d;
        for (let r = 0; r < repeat; r++) {
          const o = ((bi * hOut + hi * repeat + r) * t + ti) * d;
          for (let i = 0; i < d; i++) out[o + i] = src[s + i];
        }
      }
    }
  }
  return out;
}

/** Inverse of toHeadMajor, summing the repeated heads' gradients into `dst` ([b, t, h, d]). */
function fromHeadMajorAccumulate(
  src: Float32Array,
  dst: Float32Array,
  b: number,
  t: number,
  h: number,
  d: number,
  repeat: number,
): void {
  const hOut = h * repeat;
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let hi = 0; hi < h; hi++) {
        const o = ((bi * t + ti) * h + hi) * d;
        for (let r = 0; r < repeat; r++) {
          const s = ((bi * hOut + hi * repeat + r) * t + ti) * d;
          for (let i = 0; i < d; i++) dst[o + i] += src[s + i];
        }
      }
    }
  }
}

/**
 * Causal scaled dot-product attention. q [b, t, h, d]; k, v [b, t, hkv, d] with h a multiple of hkv.
 * Returns [b, t, h*d]. Scores and probabilities are computed with batched matmuls over (batch, head).
 * With a sliding `window`, query i attends only to keys i - window < j <= i (Gemma's local layers).
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, window = Infinity): Tensor {
  const [b, t, h, d] = q.shape;
  const hkv = k.shape[2];
  if (k.shape.length !== 4 || k.shape[0] !== b || k.shape[1] !== t || k.shape[3] !== d || h % hkv !== 0) {
    throw new Error(`attention: q [${q.shape}] and k [${k.shape}] do not fit`);
  }
  const rep = h / hkv;
  if (!(window >= 1)) throw new Error(`attention: sliding window ${window} must be at least 1`);
  const fk = fusedKernels();
  // The fused kernel is plain causal; a window shorter than the sequence takes the masked path below.
  if (fk && b * t > 0 && window >= t) {
    const shape = { b, t, h, hkv, d };
    const keep = isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad);
    const { y, p } = fk.attentionForward(q.data, k.data, v.data, shape, keep);
    return makeResult(
      y,
      [b, t, h * d],
      [q, k, v],
      (out) => {
        const { dq, dk, dv } = fk.attentionBackward(out.grad!, q.data, k.data, v.data, y, p!, shape);
        if (q.requiresGrad) q.accumulateGrad(dq, true);
        if (k.requiresGrad) k.accumulateGrad(dk, true);
        if (v.requiresGrad) v.accumulateGrad(dv, true);
      },
      'attention',
    );
  }
  const bh = b * h;
  const qh = toHeadMajor(q.data, b, t, h, d, 1);
  const kh = toHeadMajor(k.data, b, t, hkv, d, rep);
  const vh = toHeadMajor(v.data, b, t, hkv, d, rep);
  const scaleFactor = 1 / Math.sqrt(d);
  const p = matmul(qh, kh, { batch: bh, m: t, n: t, k: d, transA: false, transB: true });
  causalSoftmaxInPlace(p, bh, t, t, scaleFactor, 0, window);
  const oh = matmul(p, vh, { batch: bh, m: t, n: d, k: t, transA: false, transB: false });
  // [b, h, t, d] -> [b, t, h, d]
  const y = new Float32Array(b * t * h * d);
  fromHeadMajorAccumulate(oh, y, b, t, h, d, 1);
  return makeResult(
    y,
    [b, t, h * d],
    [q, k, v],
    (out) => {
      const dOh = toHeadMajor(out.grad!, b, t, h, d, 1);
      if (v.requiresGrad) {
        const dVh = matmul(p, dOh, { batch: bh, m: t, n: d, k: t, transA: true, transB: false });
        fromHeadMajorAccumulate(dVh, v.gradBuffer(), b, t, hkv, d, rep);
      }
      if (!q.requiresGrad && !k.requiresGrad) return;
      const dS = matmul(dOh, vh, { batch: bh, m: t, n: t, k: d, transA: false, transB: true });
      softmaxBackwardInPlace(dS, p, bh * t, t, scaleFactor);
      if (q.requiresGrad) {
        const dQh = matmul(dS, kh, { batch: bh, m: t, n: d, k: t, transA: false, transB: false });
        fromHeadMajorAccumulate(dQh, q.gradBuffer(), b, t, h, d, 1);
      }
      if (k.requiresGrad) {
        const dKh = matmul(dS, qh, { batch: bh, m: t, n: d, k: t, transA: true, transB: false });
        fromHeadMajorAccumulate(dKh, k.gradBuffer(), b, t, hkv, d, rep);
      }
    },
    'attention',
  );
}

/** SwiGLU gate: silu(gate) * up. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  if (gate.size !== up.size) throw new Error(`swiglu: gate [${gate.shape}] and up [${up.shape}] differ`);
  const fk = fusedKernels();
  if (fk) {
    return makeResult(
      fk.swigluForward(gate.data, up.data),
      gate.shape,
      [gate, up],
      (out) => {
        const { dg, du } = fk.swigluBackward(out.grad!, gate.data, up.data);
        if (up.requiresGrad) up.accumulateGrad(du, true);
        if (gate.requiresGrad) gate.accumulateGrad(dg, true);
      },
      'swiglu',
    );
  }
  const y = new Float32Array(gate.size);
  const sig = new Float32Array(gate.size);
  const gd = gate.data;
  const ud = up.data;
  for (let i = 0; i < y.length; i++) {
    const s = 1 / (1 + Math.exp(-gd[i]));
    sig[i] = s;
    y[i] = gd[i] * s * ud[i];
  }
  return makeResult(
    y,
    gate.shape,
    [gate, up],
    (out) => {
      const dy = out.grad!;
      if (up.requiresGrad) {
        const du = new Float32Array(dy.length);
        for (let i = 0; i < dy.length; i++) du[i] = dy[i] * gd[i] * sig[i];
        up.accumulateGrad(du, true);
      }
      if (gate.requiresGrad) {
        const dg = new Float32Array(dy.length);
        for (let i = 0; i < dy.length; i++) {
          const s = sig[i];
          dg[i] = dy[i] * ud[i] * s * (1 + gd[i] * (1 - s));
        }
        gate.accumulateGrad(dg, true);
      }
    },
    'swiglu',
  );
}

/**
 * Rows `index` of x viewed as [n, d], shaped `shape` (the last dimension d is appended); backward scatter-adds
 * into x's gradient. An index outside [0, n) throws badIndex(index, n).
 */
function gatherRowsOp(
  x: Tensor,
  index: Int32Array,
  shape: readonly number[],
  what: string,
  badIndex: (r: number, n: number) => string,
): Tensor {
  const d = lastDim(x);
  const n = x.size / d;
  for (let i = 0; i < index.length; i++) {
    const r = index[i];
    if (r < 0 || r >= n) throw new Error(badIndex(r, n));
  }
  const fk = fusedKernels();
  let y: Float32Array;
  if (fk && index.length > 0) {
    y = fk.gatherRows(x.data, index, d);
  } else {
    y = new Float32Array(index.length * d);
    for (let i = 0; i < index.length; i++) y.set(x.data.subarray(index[i] * d, (index[i] + 1) * d), i * d);
  }
  return makeResult(
    y,
    [...shape, d],
    [x],
    (out) => {
      const g = out.grad!;
      const gx = x.gradBuffer();
      for (let i = 0; i < index.length; i++) {
        const o = index[i] * d;
        for (let j = 0; j < d; j++) gx[o + j] += g[i * d + j];
      }
    },
    what,
  );
}

/** Gathers rows of w [vocab, dim] for ids (output [...shape, dim]); backward scatter-adds into w's gradient. */
export function embedding(w: Tensor, ids: Int32Array, shape: readonly number[]): Tensor {
  return gatherRowsOp(
    w,
    ids,
    shape,
    'embedding',
    (id, vocab) => `embedding: token id ${id} is outside the vocabulary (${vocab})`,
  );
}

/**
 * Mean softmax cross-entropy of logits [n, vocab] against targets, weighted per row (weight 0 masks a row;
 * the mean is over the weight sum). Returns a scalar tensor.
 */
export function crossEntropy(
  logits: Tensor,
  targets: Int32Array,
  weights: Float32Array | null = null,
): Tensor {
  const v = lastDim(logits);
  if (targets.length * v !== logits.size) {
    throw new Error(`crossEntropy: ${targets.length} targets for logits [${logits.shape}]`);
  }
  if (weights && weights.length !== targets.length)
    throw new Error('crossEntropy: weights and targets differ in length');
  const fk = fusedKernels();
  const { loss, dLogits } = fk
    ? fusedCrossEntropy(fk, logits.data, targets, weights, v, logits.requiresGrad)
    : crossEntropyForward(logits.data, targets, weights, v, logits.requiresGrad);
  if (!Number.isFinite(loss)) throw new Error(`crossEntropy: loss is ${loss} (non-finite logits)`);
  return makeResult(
    Float32Array.of(loss),
    [],
    [logits],
    (out) => {
      const g = out.grad![0];
      if (g !== 1) for (let i = 0; i < dLogits!.length; i++) dLogits![i] *= g;
      logits.accumulateGrad(dLogits!, true);
    },
    'crossEntropy',
  );
}

/** crossEntropyForward's contract on a backend's fused log-softmax. */
function fusedCrossEntropy(
  fk: FusedKernels,
  logits: Float32Array,
  targets: Int32Array,
  weights: Float32Array | null,
  v: number,
  wantGrad: boolean,
): { loss: number; dLogits: Float32Array | null } {
  const n = targets.length;
  let weightSum = 0;
  for (let r = 0; r < n; r++) weightSum += weights ? weights[r] : 1;
  if (weightSum === 0) return { loss: 0, dLogits: wantGrad ? new Float32Array(logits.length) : null };
  const safe = new Int32Array(n);
  const coef = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    const w = weights ? weights[r] : 1;
    if (w === 0) continue;
    const t = targets[r];
    if (t < 0 || t >= v)
      throw new Error(`cross-entropy: target id ${t} at row ${r} is outside the vocabulary (${v})`);
    safe[r] = t;
    coef[r] = w / weightSum;
  }
  const { logp, dLogits } = fk.logSoftmaxGather(logits, safe, wantGrad ? coef : null, v);
  let total = 0;
  for (let r = 0; r < n; r++) {
    const w = weights ? weights[r] : 1;
    if (w === 0) continue;
    total -= w * logp[r];
    if (dLogits) dLogits[r * v + safe[r]] -= coef[r];
  }
  return { loss: total / weightSum, dLogits };
}

/** Row selector for interventions: which rows (positions) of a [rows, dim] activation an edit applies to. */
export type RowMask = Uint8Array | null;

/** x + alpha * vec on the selected rows. vec is a constant [dim]. */
export function addVector(x: Tensor, vec: Float32Array, alpha: number, rows: RowMask = null): Tensor {
  const d = lastDim(x);
  if (vec.length !== d)
    throw new Error(`addVector: vector has ${vec.length} elements, activation rows have ${d}`);
  const y = Float32Array.from(x.data);
  const n = x.size / d;
  for (let r = 0; r < n; r++) {
    if (rows && !rows[r]) continue;
    for (let i = 0; i < d; i++) y[r * d + i] += alpha * vec[i];
  }
  return makeResult(y, x.shape, [x], (out) => x.accumulateGrad(out.grad!, true), 'addVector');
}

/**
 * Limits the projection of each selected row onto a unit direction: with c = <x, u>, rows whose c exceeds
 * `max` (or falls below `min`) are moved along u to the bound. min = max = 0 projects the direction out.
 */
export function clampProjection(
  x: Tensor,
  unit: Float32Array,
  min: number,
  max: number,
  rows: RowMask = null,
): Tensor {
  return clampProjections(x, [unit], min, max, rows);
}

/**
 * clampProjection with each unit direction in turn, the next reading what the last left: the same numbers to the
 * bit as a chain of clampProjection calls, in one pass over the rows (each row stays in cache for every
 * direction) and one output instead of one per direction. Concept ablation projects out a dozen directions per
 * layer, which as separate calls copied the whole activation a dozen times.
 */
export function clampProjections(
  x: Tensor,
  units: readonly Float32Array[],
  min: number,
  max: number,
  rows: RowMask = null,
): Tensor {
  const d = lastDim(x);
  for (const u of units)
    if (u.length !== d)
      throw new Error(`clampProjection: direction has ${u.length} elements, rows have ${d}`);
  const k = units.length;
  const n = x.size / d;
  const xd = x.data;
  const y = Float32Array.from(xd);
  // active[r * k + j]: direction j moved row r (its backward then removes the component along it).
  const active = new Uint8Array(n * k);
  for (let r = 0; r < n; r++) {
    if (rows && !rows[r]) continue;
    const o = r * d;
    for (let j = 0; j < k; j++) {
      const u = units[j];
      let c = 0;
      for (let i = 0; i < d; i++) c += y[o + i] * u[i];
      const target = Math.min(max, Math.max(min, c));
      if (target !== c) {
        active[r * k + j] = 1;
        const m = target - c;
        for (let i = 0; i < d; i++) y[o + i] += m * u[i];
      }
    }
  }
  return makeResult(
    y,
    x.shape,
    [x],
    (out) => {
      // Where a clamp is active the output's component along its u is constant: remove it from the gradient,
      // the last direction first. Between directions the gradient is rounded to float32, as the chain's
      // intermediate gradients are; the first direction's result is added into x's gradient directly.
      const g = out.grad!;
      const gx = x.gradBuffer();
      const row = new Float32Array(d);
      for (let r = 0; r < n; r++) {
        const o = r * d;
        let src: Float32Array = g;
        let so = o;
        for (let j = k - 1; j >= 1; j--) {
          if (!active[r * k + j]) continue;
          const u = units[j];
          let c = 0;
          for (let i = 0; i < d; i++) c += src[so + i] * u[i];
          for (let i = 0; i < d; i++) row[i] = src[so + i] - c * u[i];
          src = row;
          so = 0;
        }
        if (!active[r * k]) {
          for (let i = 0; i < d; i++) gx[o + i] += src[so + i];
          continue;
        }
        const u = units[0];
        let c = 0;
        for (let i = 0; i < d; i++) c += src[so + i] * u[i];
        for (let i = 0; i < d; i++) gx[o + i] += src[so + i] - c * u[i];
      }
    },
    'clampProjection',
  );
}

/** Rows of x [n, d] at the given indices (e.g. only the positions that carry loss). */
export function selectRows(x: Tensor, rows: Int32Array): Tensor {
  return gatherRowsOp(
    x,
    rows,
    [rows.length],
    'selectRows',
    (r, n) => `selectRows: row ${r} out of range (${n})`,
  );
}
