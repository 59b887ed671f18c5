/**
 * Fused kernels as ONNX Runtime graphs: the element-wise and row-wise work around the matmuls (attention's
 * masked softmax and its backward, SwiGLU, RMSNorm, the vocabulary-wide log-softmax of cross-entropy) runs
 * vectorised (MLAS) and on the session's intra-op threads instead of in scalar JS loops. Each graph is built
 * once per process (per model-shape key) with symbolic batch and sequence dimensions.
 */
import type { AttentionShape, FusedKernels } from './matmul.ts';
import type { OnnxInitializer, OnnxNode } from './onnx-graph.ts';
import { GraphCache, type GraphSpec } from './ort-session.ts';

const MS = 'com.microsoft';
const HEAD_MAJOR = [0, 2, 1, 3];

/** Additive causal masks [rep * t, t] (0 where query i may see key j <= i, -inf elsewhere), cached. */
const masks = new Map<string, Float32Array>();
function causalMask(rep: number, t: number): Float32Array {
  const key = `${rep}:${t}`;
  let m = masks.get(key);
  if (!m) {
    m = new Float32Array(rep * t * t);
    for (let r = 0; r < rep; r++) {
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[(r * t + i) * t + j] = -Infinity;
    }
    masks.set(key, m);
  }
  return m;
}

/** Nodes that bring [b, t, heads, d] into [b, hkv, rep * t, d] (grouped by kv head). */
function toGroups(nodes: OnnxNode[], src: string, dst: string, rep: number): void {
  if (rep === 1) {
    nodes.push({ op: 'Transpose', inputs: [src], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
    return;
  }
  nodes.push({ op: 'Transpose', inputs: [src], outputs: [`${dst}_hm`], attributes: { perm: HEAD_MAJOR } });
  nodes.push({ op: 'Reshape', inputs: [`${dst}_hm`, 'groupShape'], outputs: [dst] });
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
  return [
    { name: 'groupShape', dims: [4], type: 'int64', values: [0, s.hkv, -1, s.d] },
    { name: 'headShape', dims: [4], type: 'int64', values: [0, s.h, -1, s.d] },
  ];
}

function fusedMatMul(a: string, b: string, out: string, transA: boolean, transB: boolean, alpha = 1): OnnxNode {
  return {
    op: 'FusedMatMul',
    domain: MS,
    inputs: [a, b],
    outputs: [out],
    attributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0, alpha: { float: alpha } },
  };
}

export class OrtFusedKernels implements FusedKernels {
  private readonly cache: GraphCache;

  constructor(threads: number) {
    this.cache = new GraphCache(threads);
  }

  attentionForward(q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionShape): { y: Float32Array; p: Float32Array } {
    const rep = s.h / s.hkv;
    const scale = 1 / Math.sqrt(s.d);
    const g = this.cache.get(`attnF:${s.h}:${s.hkv}:${s.d}`, () => {
      const nodes: OnnxNode[] = [];
      toGroups(nodes, 'Q', 'Qg', rep);
      nodes.push({ op: 'Transpose', inputs: ['K'], outputs: ['Kt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push({ op: 'Transpose', inputs: ['V'], outputs: ['Vt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push(fusedMatMul('Qg', 'Kt', 'S', false, true, scale));
      nodes.push({ op: 'Add', inputs: ['S', 'M'], outputs: ['Sm'] });
      nodes.push({ op: 'Softmax', inputs: ['Sm'], outputs: ['P'], attributes: { axis: -1 } });
      nodes.push({ op: 'MatMul', inputs: ['P', 'Vt'], outputs: ['O'] });
      fromGroups(nodes, 'O', 'Y', rep);
      return {
        name: 'attention_forward',
        nodes,
        initializers: shapeInits(s),
        inputs: [
          { name: 'Q', shape: ['b', 't', s.h, s.d] },
          { name: 'K', shape: ['b', 't', s.hkv, s.d] },
          { name: 'V', shape: ['b', 't', s.hkv, s.d] },
          { name: 'M', shape: ['r', 't'] },
        ],
        outputs: [
          { name: 'Y', shape: ['b', 't', s.h, s.d] },
          { name: 'P', shape: ['b', s.hkv, 'r', 't'] },
        ],
      };
    });
    const { b, t, h, hkv, d } = s;
    const out = g.run({
      Q: [q, [b, t, h, d]],
      K: [k, [b, t, hkv, d]],
      V: [v, [b, t, hkv, d]],
      M: [causalMask(rep, t), [rep * t, t]],
    });
    return { y: out.Y, p: out.P };
  }

  attentionBackward(
    dy: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    p: Float32Array,
    s: AttentionShape,
  ): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
    const rep = s.h / s.hkv;
    const scale = 1 / Math.sqrt(s.d);
    const g = this.cache.get(`attnB:${s.h}:${s.hkv}:${s.d}`, () => {
      const nodes: OnnxNode[] = [];
      toGroups(nodes, 'dY', 'dO', rep);
      toGroups(nodes, 'Q', 'Qg', rep);
      nodes.push({ op: 'Transpose', inputs: ['K'], outputs: ['Kt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push({ op: 'Transpose', inputs: ['V'], outputs: ['Vt'], attributes: { perm: HEAD_MAJOR } });
      nodes.push(fusedMatMul('P', 'dO', 'dVt', true, false));
      nodes.push({ op: 'Transpose', inputs: ['dVt'], outputs: ['dV'], attributes: { perm: HEAD_MAJOR } });
      nodes.push(fusedMatMul('dO', 'Vt', 'dP', false, true));
      nodes.push({ op: 'Mul', inputs: ['P', 'dP'], outputs: ['PdP'] });
      nodes.push({ op: 'ReduceSum', inputs: ['PdP', 'lastAxis'], outputs: ['dot'], attributes: { keepdims: 1 } });
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
      P: [p, [b, hkv, rep * t, t]],
    });
    return { dq: out.dQ, dk: out.dK, dv: out.dV };
  }

  swigluForward(gate: Float32Array, up: Float32Array): Float32Array {
    const g = this.cache.get('swigluF', (): GraphSpec => ({
      name: 'swiglu_forward',
      nodes: [
        { op: 'Sigmoid', inputs: ['G'], outputs: ['S'] },
        { op: 'Mul', inputs: ['G', 'S'], outputs: ['GS'] },
        { op: 'Mul', inputs: ['GS', 'U'], outputs: ['Y'] },
      ],
      inputs: [
        { name: 'G', shape: ['n'] },
        { name: 'U', shape: ['n'] },
      ],
      outputs: [{ name: 'Y', shape: ['n'] }],
    }));
    return g.run({ G: [gate, [gate.length]], U: [up, [up.length]] }).Y;
  }

  swigluBackward(dy: Float32Array, gate: Float32Array, up: Float32Array): { dg: Float32Array; du: Float32Array } {
    // dU = dY * g * s;  dG = dY * u * (s + g s (1 - s))
    const g = this.cache.get('swigluB', (): GraphSpec => ({
      name: 'swiglu_backward',
      nodes: [
        { op: 'Sigmoid', inputs: ['G'], outputs: ['S'] },
        { op: 'Mul', inputs: ['G', 'S'], outputs: ['GS'] },
        { op: 'Mul', inputs: ['dY', 'GS'], outputs: ['dU'] },
        { op: 'Sub', inputs: ['one', 'S'], outputs: ['OmS'] },
        { op: 'Mul', inputs: ['GS', 'OmS'], outputs: ['T1'] },
        { op: 'Add', inputs: ['S', 'T1'], outputs: ['T2'] },
        { op: 'Mul', inputs: ['dY', 'U'], outputs: ['dYU'] },
        { op: 'Mul', inputs: ['dYU', 'T2'], outputs: ['dG'] },
      ],
      initializers: [{ name: 'one', dims: [], type: 'float32', values: [1] }],
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
  ): { logp: Float32Array; dLogits: Float32Array | null } {
    const n = targets.length;
    const t64 = new BigInt64Array(n);
    for (let i = 0; i < n; i++) t64[i] = BigInt(targets[i]);
    const withGrad = coef !== null;
    const g = this.cache.get(withGrad ? 'lsmG' : 'lsm', () => {
      const nodes: OnnxNode[] = [
        { op: 'LogSoftmax', inputs: ['X'], outputs: ['LS'], attributes: { axis: -1 } },
        { op: 'GatherElements', inputs: ['LS', 'T'], outputs: ['LT'], attributes: { axis: 1 } },
      ];
      if (withGrad) {
        nodes.push({ op: 'Exp', inputs: ['LS'], outputs: ['E'] });
        nodes.push({ op: 'Mul', inputs: ['E', 'C'], outputs: ['D'] });
      }
      return {
        name: 'log_softmax_gather',
        nodes,
        inputs: [
          { name: 'X', shape: ['n', 'v'] },
          { name: 'T', shape: ['n', 1], type: 'int64' as const },
          ...(withGrad ? [{ name: 'C', shape: ['n', 1] }] : []),
        ],
        outputs: [{ name: 'LT', shape: ['n', 1] }, ...(withGrad ? [{ name: 'D', shape: ['n', 'v'] }] : [])],
      };
    });
    const out = g.run(
      withGrad
        ? { X: [logits, [n, v]], T: [t64, [n, 1]], C: [coef, [n, 1]] }
        : { X: [logits, [n, v]], T: [t64, [n, 1]] },
    );
    return { logp: out.LT, dLogits: withGrad ? out.D : null };
  }

  rmsNormForward(x: Float32Array, w: Float32Array, d: number, eps: number): { y: Float32Array; rstd: Float32Array } {
    const g = this.cache.get(`rmsF:${eps}`, (): GraphSpec => ({
      name: 'rms_norm_forward',
      nodes: [
        { op: 'Mul', inputs: ['X', 'X'], outputs: ['X2'] },
        { op: 'ReduceMean', inputs: ['X2'], outputs: ['MS'], attributes: { axes: [-1], keepdims: 1 } },
        { op: 'Add', inputs: ['MS', 'eps'], outputs: ['MSe'] },
        { op: 'Sqrt', inputs: ['MSe'], outputs: ['RMS'] },
        { op: 'Reciprocal', inputs: ['RMS'], outputs: ['R'] },
        { op: 'Mul', inputs: ['X', 'R'], outputs: ['XR'] },
        { op: 'Mul', inputs: ['XR', 'W'], outputs: ['Y'] },
      ],
      initializers: [{ name: 'eps', dims: [], type: 'float32', values: [eps] }],
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
}
