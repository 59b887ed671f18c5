/**
 * Fused kernels as ONNX Runtime graphs: the element-wise and row-wise work around the matmuls (attention
 * with its causal softmax and backward, SwiGLU, RMSNorm, rotary embedding, the vocabulary-wide softmax of
 * cross-entropy, residual adds, gathers) runs vectorised (MLAS) and on the session's intra-op threads instead
 * of in scalar JS loops, and its outputs come from ORT's arena rather than from fresh, page-faulting
 * Float32Arrays. Each graph is built once per process (per model-shape key) with symbolic batch and sequence
 * dimensions. Every kernel splits its work by the fixed thread count, so results are deterministic.
 */
import type { AttentionShape, FusedKernels, MaskedAttentionShape } from './matmul.ts';
import {
  addGraph,
  attentionBackwardGraph,
  attentionForwardGraph,
  gatherRowsGraph,
  maskedAttentionGraph,
  ropeGraph,
  ropeStepIds,
  rmsNormBackwardGraph,
  rmsNormForwardGraph,
  softmaxScaledGraph,
  swigluBackwardGraph,
  swigluForwardGraph,
} from './kernel-graphs.ts';
import { GraphCache, type GraphSpec } from './ort-session.ts';

/** log softmax(logits[o .. o + v))[t] in float64. */
function exactLogSoftmaxAt(logits: Float32Array, o: number, v: number, t: number): number {
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (logits[o + j] > max) max = logits[o + j];
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(logits[o + j] - max);
  return logits[o + t] - max - Math.log(sum);
}

export class OrtFusedKernels implements FusedKernels {
  private readonly cache: GraphCache;

  constructor(threads: number) {
    this.cache = new GraphCache(threads);
  }

  attentionForward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: AttentionShape,
    keepProbs: boolean,
  ): { y: Float32Array; p: Float32Array | null } {
    // ONNX 23's Attention takes [b, t, heads * d] directly (no transposes), applies the causal mask and
    // 1/sqrt(d) itself, runs each (batch, head) on the pool and can return the softmax probabilities.
    const g = this.cache.get(`attnF:${s.h}:${s.hkv}:${s.d}:${keepProbs}`, () =>
      attentionForwardGraph(s, keepProbs),
    );
    const { b, t, h, hkv, d } = s;
    const out = g.run({ Q: [q, [b, t, h * d]], K: [k, [b, t, hkv * d]], V: [v, [b, t, hkv * d]] });
    return { y: out.Y, p: keepProbs ? out.P : null };
  }

  attentionBackward(
    dy: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    y: Float32Array,
    p: Float32Array,
    s: AttentionShape,
  ): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
    // dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)) with rowsum(dP P) = rowsum(dO O) (computed on
    // the [t, d] rows, not the [t, t] ones); dQ = scale dS K; dK = scale dS^T Q.
    const rep = s.h / s.hkv;
    const g = this.cache.get(`attnB:${s.h}:${s.hkv}:${s.d}`, () => attentionBackwardGraph(s));
    const { b, t, h, hkv, d } = s;
    const out = g.run({
      dY: [dy, [b, t, h, d]],
      Q: [q, [b, t, h, d]],
      K: [k, [b, t, hkv, d]],
      V: [v, [b, t, hkv, d]],
      Y: [y, [b, t, h, d]],
      P: [p, [b, hkv, rep * t, t]],
    });
    return { dq: out.dQ, dk: out.dK, dv: out.dV };
  }

  maskedAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    past: { k: Float32Array; v: Float32Array } | null,
    mask: Float32Array,
    s: MaskedAttentionShape,
    wantKv: boolean,
  ): { y: Float32Array; k: Float32Array | null; v: Float32Array | null } {
    const withPast = past !== null && s.tp > 0;
    // ORT's CPU kernel writes the present keys and values whenever past ones are given.
    const presentOut = wantKv || withPast;
    const g = this.cache.get(`attnMasked:${s.h}:${s.hkv}:${s.d}:${withPast}:${presentOut}`, () =>
      maskedAttentionGraph(s, withPast, presentOut),
    );
    const { b, tq, tk, tp, h, hkv, d } = s;
    const out = g.run(
      {
        Q: [q, [b, tq, h * d]],
        K: [k, [b, tk, hkv * d]],
        V: [v, [b, tk, hkv * d]],
        M: [mask, [b, 1, tq, tp + tk]],
        ...(withPast ? { PK: [past.k, [b, hkv, tp, d]], PV: [past.v, [b, hkv, tp, d]] } : {}),
      },
      wantKv ? undefined : ['Y'],
    );
    return { y: out.Y, k: wantKv ? out.K2 : null, v: wantKv ? out.V2 : null };
  }

  swigluForward(gate: Float32Array, up: Float32Array): Float32Array {
    // QuickGelu with alpha 1 is x * sigmoid(x) = SiLU, one vectorised pass.
    const g = this.cache.get('swigluF', swigluForwardGraph);
    return g.run({ G: [gate, [gate.length]], U: [up, [up.length]] }).Y;
  }

  swigluBackward(
    dy: Float32Array,
    gate: Float32Array,
    up: Float32Array,
  ): { dg: Float32Array; du: Float32Array } {
    // With s = sigmoid(g) and a = g s: dU = dY a;  dG = dY u (s + a - a s)
    const g = this.cache.get('swigluB', swigluBackwardGraph);
    const n = [gate.length];
    const out = g.run({ dY: [dy, n], G: [gate, n], U: [up, n] });
    return { dg: out.dG, du: out.dU };
  }

  logSoftmaxGather(
    logits: Float32Array,
    targets: Int32Array,
    coef: Float32Array | null,
    v: number,
  ): { logp: ArrayLike<number>; dLogits: Float32Array | null } {
    const n = targets.length;
    if (coef) {
      // One softmax pass and one scaling pass over [n, v]; log p at the targets comes from the scaled
      // probabilities, or from an exact float64 log-softmax of the row where p is too small for float32.
      const g = this.cache.get('softmaxScaled', softmaxScaledGraph);
      const dLogits = g.run({ X: [logits, [n, v]], C: [coef, [n, 1]] }).D;
      const logp = new Float64Array(n);
      for (let r = 0; r < n; r++) {
        if (coef[r] === 0) continue;
        const p = dLogits[r * v + targets[r]] / coef[r];
        logp[r] = p > 1e-30 ? Math.log(p) : exactLogSoftmaxAt(logits, r * v, v, targets[r]);
      }
      return { logp, dLogits };
    }
    const t64 = new BigInt64Array(n);
    for (let i = 0; i < n; i++) t64[i] = BigInt(targets[i]);
    const g = this.cache.get('logSoftmaxGather', (): GraphSpec => ({
      name: 'log_softmax_gather',
      nodes: [
        { op: 'LogSoftmax', inputs: ['X'], outputs: ['LS'], attributes: { axis: -1 } },
        { op: 'GatherElements', inputs: ['LS', 'T'], outputs: ['LT'], attributes: { axis: 1 } },
      ],
      inputs: [
        { name: 'X', shape: ['n', 'v'] },
        { name: 'T', shape: ['n', 1], type: 'int64' },
      ],
      outputs: [{ name: 'LT', shape: ['n', 1] }],
    }));
    return { logp: g.run({ X: [logits, [n, v]], T: [t64, [n, 1]] }).LT, dLogits: null };
  }

  rmsNormForward(
    x: Float32Array,
    w: Float32Array,
    d: number,
    eps: number,
  ): { y: Float32Array; rstd: Float32Array } {
    const g = this.cache.get(`rmsF:${eps}`, () => rmsNormForwardGraph(eps));
    const rows = x.length / d;
    const out = g.run({ X: [x, [rows, d]], W: [w, [d]] });
    return { y: out.Y, rstd: out.R };
  }

  rmsNormBackward(
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    rstd: Float32Array,
    d: number,
  ): { dx: Float32Array; dw: Float32Array } {
    // dx = dy w r - x r^3 <dy w, x> / d;  dw = sum_rows dy x r
    const g = this.cache.get('rmsB', rmsNormBackwardGraph);
    const rows = x.length / d;
    const out = g.run({ dY: [dy, [rows, d]], X: [x, [rows, d]], W: [w, [d]], R: [rstd, [rows, 1]] });
    return { dx: out.dX, dw: out.dW };
  }

  add(a: Float32Array, b: Float32Array): Float32Array {
    const g = this.cache.get('add', addGraph);
    return g.run({ A: [a, [a.length]], B: [b, [b.length]] }).Y;
  }

  copy(a: Float32Array): Float32Array {
    const g = this.cache.get('copy', (): GraphSpec => ({
      name: 'copy',
      nodes: [{ op: 'Identity', inputs: ['A'], outputs: ['Y'] }],
      inputs: [{ name: 'A', shape: ['n'] }],
      outputs: [{ name: 'Y', shape: ['n'] }],
    }));
    return g.run({ A: [a, [a.length]] }).Y;
  }

  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    b: number,
    t: number,
    h: number,
    d: number,
  ): Float32Array {
    // ONNX 23 RotaryEmbedding on [b, t, h * d]; table row i serves time step i.
    const g = this.cache.get(`rope:${h}`, () => ropeGraph(h));
    const half = d / 2;
    return g.run({
      X: [x, [b, t, h * d]],
      C: [cos, [t, half]],
      S: [sin, [t, half]],
      P: [ropeStepIds(b, t), [b, t]],
    }).Y;
  }

  gatherRows(w: Float32Array, ids: Int32Array, dim: number): Float32Array {
    const g = this.cache.get('gatherRows', gatherRowsGraph);
    return g.run({ W: [w, [w.length / dim, dim]], I: [ids, [ids.length]] }).Y;
  }
}
