/**
 * Fused kernels as ONNX Runtime graphs: the element-wise and row-wise work around the matmuls (attention
 * with its causal softmax and backward, SwiGLU, RMSNorm, rotary embedding, the vocabulary-wide softmax of
 * cross-entropy, residual adds, gathers) runs vectorised (MLAS) and on the session's intra-op threads instead
 * of in scalar JS loops, and its outputs come from ORT's arena rather than from fresh, page-faulting
 * Float32Arrays. Each graph is built once per process (per model-shape key) with symbolic batch and sequence
 * dimensions. Every kernel splits its work by the fixed thread count, so results are deterministic.
 */
import type { AttentionShape, FusedKernels, MaskedAttentionShape } from './matmul.ts';
import type { OnnxInitializer, OnnxNode } from './onnx-graph.ts';
import { GraphCache, type GraphSpec } from './ort-session.ts';

const MS = 'com.microsoft';
const HEAD_MAJOR = [0, 2, 1, 3];

/** Nodes that bring [b, t, heads, d] into [b, hkv, rep * t, d] (grouped by kv head). */
function toGroups(nodes: OnnxNode[], src: string, dst: string, rep: number, shape = 'groupShape'): void {
  if (rep === 1) {
    nodes.push({ op: 'Transpose', inputs: [src], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
    return;
  }
  nodes.push({ op: 'Transpose', inputs: [src], outputs: [`${dst}_hm`], attributes: { perm: HEAD_MAJOR } });
  nodes.push({ op: 'Reshape', inputs: [`${dst}_hm`, shape], outputs: [dst] });
}

/** Inverse of toGroups: [b, hkv, rep * t, d] -> [b, t, heads, d]. */
function fromGroups(nodes: OnnxNode[], src: string, dst: string, rep: number): void {
  if (rep === 1) {
    nodes.push({ op: 'Transpose', inputs: [src], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
    return;
  }
  nodes.push({ op: 'Reshape', inputs: [src, 'headShape'], outputs: [`${src}_hm`] });
  nodes.push({ op: 'Transpose', inputs: [`${src}_hm`], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
}

function shapeInits(s: AttentionShape): OnnxInitializer[] {
  if (s.h === s.hkv) return [];
  return [
    { name: 'groupShape', dims: [4], type: 'int64', values: [0, s.hkv, -1, s.d] },
    { name: 'dotShape', dims: [4], type: 'int64', values: [0, s.hkv, -1, 1] },
    { name: 'headShape', dims: [4], type: 'int64', values: [0, s.h, -1, s.d] },
  ];
}

function fusedMatMul(
  a: string,
  b: string,
  out: string,
  transA: boolean,
  transB: boolean,
  alpha = 1,
): OnnxNode {
  return {
    op: 'FusedMatMul',
    domain: MS,
    inputs: [a, b],
    outputs: [out],
    attributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0, alpha: { float: alpha } },
  };
}

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
    const g = this.cache.get(`attnF:${s.h}:${s.hkv}:${s.d}:${keepProbs}`, (): GraphSpec => ({
      name: 'attention_forward',
      opset: 23,
      nodes: [
        {
          op: 'Attention',
          inputs: ['Q', 'K', 'V'],
          outputs: keepProbs ? ['Y', '', '', 'P'] : ['Y'],
          attributes: {
            is_causal: 1,
            q_num_heads: s.h,
            kv_num_heads: s.hkv,
            ...(keepProbs ? { qk_matmul_output_mode: 3 } : {}),
          },
        },
      ],
      inputs: [
        { name: 'Q', shape: ['b', 'tq', s.h * s.d] },
        { name: 'K', shape: ['b', 'tk', s.hkv * s.d] },
        { name: 'V', shape: ['b', 'tk', s.hkv * s.d] },
      ],
      outputs: [
        { name: 'Y', shape: ['b', 'tq', s.h * s.d] },
        ...(keepProbs ? [{ name: 'P', shape: ['pb', 'ph', 'pq', 'pk'] }] : []),
      ],
    }));
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
    const scale = 1 / Math.sqrt(s.d);
    const g = this.cache.get(`attnB:${s.h}:${s.hkv}:${s.d}`, () => {
      const nodes: OnnxNode[] = [];
      toGroups(nodes, 'dY', 'dO', rep);
      toGroups(nodes, 'Q', 'Qg', rep);
      nodes.push({ op: 'Transpose', inputs: ['K'], outputs: ['Kt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push({ op: 'Transpose', inputs: ['V'], outputs: ['Vt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push({ op: 'Mul', inputs: ['dY', 'Y'], outputs: ['dYY'] });
      nodes.push({
        op: 'ReduceSum',
        inputs: ['dYY', 'lastAxis'],
        outputs: ['dotRows'],
        attributes: { keepdims: 1 },
      });
      toGroups(nodes, 'dotRows', 'dot', rep, 'dotShape');
      nodes.push(fusedMatMul('P', 'dO', 'dVt', true, false));
      nodes.push({ op: 'Transpose', inputs: ['dVt'], outputs: ['dV'], attributes: { perm: HEAD_MAJOR } });
      nodes.push(fusedMatMul('dO', 'Vt', 'dP', false, true));
      nodes.push({ op: 'Sub', inputs: ['dP', 'dot'], outputs: ['diff'] });
      nodes.push({ op: 'Mul', inputs: ['P', 'diff'], outputs: ['dS'] });
      nodes.push(fusedMatMul('dS', 'Kt', 'dQg', false, false, scale));
      fromGroups(nodes, 'dQg', 'dQ', rep);
      nodes.push(fusedMatMul('dS', 'Qg', 'dKt', true, false, scale));
      nodes.push({ op: 'Transpose', inputs: ['dKt'], outputs: ['dK'], attributes: { perm: HEAD_MAJOR } });
      return {
        name: 'attention_backward',
        nodes,
        initializers: [...shapeInits(s), { name: 'lastAxis', dims: [1], type: 'int64', values: [-1] }],
        inputs: [
          { name: 'dY', shape: ['b', 't', s.h, s.d] },
          { name: 'Q', shape: ['b', 't', s.h, s.d] },
          { name: 'K', shape: ['b', 't', s.hkv, s.d] },
          { name: 'V', shape: ['b', 't', s.hkv, s.d] },
          { name: 'Y', shape: ['b', 't', s.h, s.d] },
          { name: 'P', shape: ['b', s.hkv, 'r', 't'] },
        ],
        outputs: [
          { name: 'dQ', shape: ['b', 't', s.h, s.d] },
          { name: 'dK', shape: ['b', 't', s.hkv, s.d] },
          { name: 'dV', shape: ['b', 't', s.hkv, s.d] },
        ],
      };
    });
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
    // ONNX 23's Attention: the mask is added to the scaled scores (broadcast over the heads), past keys and values
    // come before the new ones, and the present outputs are all of them, head-major.
    const withPast = past !== null && s.tp > 0;
    // ORT's CPU kernel writes the present keys and values whenever past ones are given.
    const presentOut = wantKv || withPast;
    const g = this.cache.get(
      `attnMasked:${s.h}:${s.hkv}:${s.d}:${withPast}:${presentOut}`,
      (): GraphSpec => ({
        name: 'attention_masked',
        opset: 23,
        nodes: [
          {
            op: 'Attention',
            inputs: ['Q', 'K', 'V', 'M', ...(withPast ? ['PK', 'PV'] : [])],
            outputs: presentOut ? ['Y', 'K2', 'V2'] : ['Y'],
            attributes: { q_num_heads: s.h, kv_num_heads: s.hkv },
          },
        ],
        inputs: [
          { name: 'Q', shape: ['b', 'tq', s.h * s.d] },
          { name: 'K', shape: ['b', 'tk', s.hkv * s.d] },
          { name: 'V', shape: ['b', 'tk', s.hkv * s.d] },
          { name: 'M', shape: ['b', 1, 'tq', 'tt'] },
          ...(withPast
            ? [
                { name: 'PK', shape: ['b', s.hkv, 'tp', s.d] },
                { name: 'PV', shape: ['b', s.hkv, 'tp', s.d] },
              ]
            : []),
        ],
        outputs: [
          { name: 'Y', shape: ['b', 'tq', s.h * s.d] },
          ...(presentOut
            ? [
                { name: 'K2', shape: ['b', s.hkv, 'tt', s.d] },
                { name: 'V2', shape: ['b', s.hkv, 'tt', s.d] },
              ]
            : []),
        ],
      }),
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
    const g = this.cache.get('swigluF', (): GraphSpec => ({
      name: 'swiglu_forward',
      nodes: [
        { op: 'QuickGelu', domain: MS, inputs: ['G'], outputs: ['A'], attributes: { alpha: { float: 1 } } },
        { op: 'Mul', inputs: ['A', 'U'], outputs: ['Y'] },
      ],
      inputs: [
        { name: 'G', shape: ['n'] },
        { name: 'U', shape: ['n'] },
      ],
      outputs: [{ name: 'Y', shape: ['n'] }],
    }));
    return g.run({ G: [gate, [gate.length]], U: [up, [up.length]] }).Y;
  }

  swigluBackward(
    dy: Float32Array,
    gate: Float32Array,
    up: Float32Array,
  ): { dg: Float32Array; du: Float32Array } {
    // With s = sigmoid(g) and a = g s: dU = dY a;  dG = dY u (s + a - a s)
    const g = this.cache.get('swigluB', (): GraphSpec => ({
      name: 'swiglu_backward',
      nodes: [
        { op: 'Sigmoid', inputs: ['G'], outputs: ['S'] },
        { op: 'Mul', inputs: ['G', 'S'], outputs: ['A'] },
        { op: 'Mul', inputs: ['dY', 'A'], outputs: ['dU'] },
        { op: 'Mul', inputs: ['A', 'S'], outputs: ['AS'] },
        { op: 'Sub', inputs: ['A', 'AS'], outputs: ['T1'] },
        { op: 'Add', inputs: ['S', 'T1'], outputs: ['T2'] },
        { op: 'Mul', inputs: ['dY', 'U'], outputs: ['dYU'] },
        { op: 'Mul', inputs: ['dYU', 'T2'], outputs: ['dG'] },
      ],
      inputs: [
        { name: 'dY', shape: ['n'] },
        { name: 'G', shape: ['n'] },
        { name: 'U', shape: ['n'] },
      ],
      outputs: [
        { name: 'dG', shape: ['n'] },
        { name: 'dU', shape: ['n'] },
      ],
    }));
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
      const g = this.cache.get('softmaxScaled', (): GraphSpec => ({
        name: 'softmax_scaled',
        nodes: [
          { op: 'Softmax', inputs: ['X'], outputs: ['P'], attributes: { axis: -1 } },
          { op: 'Mul', inputs: ['P', 'C'], outputs: ['D'] },
        ],
        inputs: [
          { name: 'X', shape: ['n', 'v'] },
          { name: 'C', shape: ['n', 1] },
        ],
        outputs: [{ name: 'D', shape: ['n', 'v'] }],
      }));
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
    const g = this.cache.get(`rmsF:${eps}`, (): GraphSpec => ({
      name: 'rms_norm_forward',
      nodes: [
        {
          op: 'SimplifiedLayerNormalization',
          inputs: ['X', 'W'],
          outputs: ['Y', 'R'],
          attributes: { axis: -1, epsilon: { float: eps } },
        },
      ],
      inputs: [
        { name: 'X', shape: ['n', 'd'] },
        { name: 'W', shape: ['d'] },
      ],
      outputs: [
        { name: 'Y', shape: ['n', 'd'] },
        { name: 'R', shape: ['n', 1] },
      ],
    }));
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
    const g = this.cache.get('rmsB', (): GraphSpec => ({
      name: 'rms_norm_backward',
      nodes: [
        { op: 'Mul', inputs: ['X', 'R'], outputs: ['XR'] },
        { op: 'Mul', inputs: ['dY', 'XR'], outputs: ['dYXR'] },
        { op: 'ReduceSum', inputs: ['dYXR', 'axis0'], outputs: ['dW'], attributes: { keepdims: 0 } },
        { op: 'Mul', inputs: ['dY', 'W'], outputs: ['dYW'] },
        { op: 'Mul', inputs: ['dYW', 'XR'], outputs: ['dYWXR'] },
        { op: 'ReduceMean', inputs: ['dYWXR'], outputs: ['dotR'], attributes: { axes: [-1], keepdims: 1 } },
        { op: 'Mul', inputs: ['XR', 'dotR'], outputs: ['corr'] },
        { op: 'Sub', inputs: ['dYW', 'corr'], outputs: ['inner'] },
        { op: 'Mul', inputs: ['inner', 'R'], outputs: ['dX'] },
      ],
      initializers: [{ name: 'axis0', dims: [1], type: 'int64', values: [0] }],
      inputs: [
        { name: 'dY', shape: ['n', 'd'] },
        { name: 'X', shape: ['n', 'd'] },
        { name: 'W', shape: ['d'] },
        { name: 'R', shape: ['n', 1] },
      ],
      outputs: [
        { name: 'dX', shape: ['n', 'd'] },
        { name: 'dW', shape: ['d'] },
      ],
    }));
    const rows = x.length / d;
    const out = g.run({ dY: [dy, [rows, d]], X: [x, [rows, d]], W: [w, [d]], R: [rstd, [rows, 1]] });
    return { dx: out.dX, dw: out.dW };
  }

  add(a: Float32Array, b: Float32Array): Float32Array {
    const g = this.cache.get('add', (): GraphSpec => ({
      name: 'add',
      nodes: [{ op: 'Add', inputs: ['A', 'B'], outputs: ['Y'] }],
      inputs: [
        { name: 'A', shape: ['n'] },
        { name: 'B', shape: ['n'] },
      ],
      outputs: [{ name: 'Y', shape: ['n'] }],
    }));
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
    const g = this.cache.get(`rope:${h}`, (): GraphSpec => ({
      name: 'rotary_embedding',
      opset: 23,
      nodes: [
        { op: 'RotaryEmbedding', inputs: ['X', 'C', 'S', 'P'], outputs: ['Y'], attributes: { num_heads: h } },
      ],
      inputs: [
        { name: 'X', shape: ['b', 't', 'hd'] },
        { name: 'C', shape: ['m', 'half'] },
        { name: 'S', shape: ['m', 'half'] },
        { name: 'P', shape: ['b', 't'], type: 'int64' },
      ],
      outputs: [{ name: 'Y', shape: ['b', 't', 'hd'] }],
    }));
    const half = d / 2;
    return g.run({
      X: [x, [b, t, h * d]],
      C: [cos, [t, half]],
      S: [sin, [t, half]],
      P: [this.stepIds(b, t), [b, t]],
    }).Y;
  }

  private readonly stepIdCache = new Map<string, BigInt64Array>();
  /** [b, t] int64 time-step indices 0..t-1 per row. */
  private stepIds(b: number, t: number): BigInt64Array {
    const key = `${b}:${t}`;
    let ids = this.stepIdCache.get(key);
    if (!ids) {
      ids = new BigInt64Array(b * t);
      for (let i = 0; i < b * t; i++) ids[i] = BigInt(i % t);
      if (this.stepIdCache.size > 64) this.stepIdCache.clear();
      this.stepIdCache.set(key, ids);
    }
    return ids;
  }

  gatherRows(w: Float32Array, ids: Int32Array, dim: number): Float32Array {
    const g = this.cache.get('gatherRows', (): GraphSpec => ({
      name: 'gather_rows',
      nodes: [{ op: 'Gather', inputs: ['W', 'I'], outputs: ['Y'], attributes: { axis: 0 } }],
      inputs: [
        { name: 'W', shape: ['v', 'd'] },
        { name: 'I', shape: ['n'], type: 'int32' },
      ],
      outputs: [{ name: 'Y', shape: ['n', 'd'] }],
    }));
    return g.run({ W: [w, [w.length / dim, dim]], I: [ids, [ids.length]] }).Y;
  }
}
