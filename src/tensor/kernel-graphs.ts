/**
 * The ONNX graphs of the engine's kernels, one definition each: the per-call kernels (ort-kernels.ts,
 * ort-matmul.ts) run them one session apiece, and the fused training step (training/fused-step.ts) inlines the
 * same nodes into one graph, so both compute the same numbers. Dimensions are symbolic unless a shape needs them.
 */
import type { OnnxInitializer, OnnxNode } from './onnx-graph.ts';
import type { GraphSpec } from './ort-session.ts';

/** Heads of an attention op: query heads h, key/value heads hkv (h a multiple), head dimension d. */
export interface HeadShape {
  h: number;
  hkv: number;
  d: number;
}

export const MS = 'com.microsoft';
export const HEAD_MAJOR = [0, 2, 1, 3];

/** Nodes that bring [b, t, heads, d] into [b, hkv, rep * t, d] (grouped by kv head). */
export function toGroups(
  nodes: OnnxNode[],
  src: string,
  dst: string,
  rep: number,
  shape = 'groupShape',
): void {
  if (rep === 1) {
    nodes.push({ op: 'Transpose', inputs: [src], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
    return;
  }
  nodes.push({ op: 'Transpose', inputs: [src], outputs: [`${dst}_hm`], attributes: { perm: HEAD_MAJOR } });
  nodes.push({ op: 'Reshape', inputs: [`${dst}_hm`, shape], outputs: [dst] });
}

/** Inverse of toGroups: [b, hkv, rep * t, d] -> [b, t, heads, d]. */
export function fromGroups(nodes: OnnxNode[], src: string, dst: string, rep: number): void {
  if (rep === 1) {
    nodes.push({ op: 'Transpose', inputs: [src], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
    return;
  }
  nodes.push({ op: 'Reshape', inputs: [src, 'headShape'], outputs: [`${src}_hm`] });
  nodes.push({ op: 'Transpose', inputs: [`${src}_hm`], outputs: [dst], attributes: { perm: HEAD_MAJOR } });
}

function shapeInits(s: HeadShape): OnnxInitializer[] {
  if (s.h === s.hkv) return [];
  return [
    { name: 'groupShape', dims: [4], type: 'int64', values: [0, s.hkv, -1, s.d] },
    { name: 'dotShape', dims: [4], type: 'int64', values: [0, s.hkv, -1, 1] },
    { name: 'headShape', dims: [4], type: 'int64', values: [0, s.h, -1, s.d] },
  ];
}

export function fusedMatMul(
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

/**
 * Attention under an additive mask M [b, 1, tq, tp + tk] (ONNX 23 `Attention`, 1/sqrt(d) inside the op, the mask
 * added to the scaled scores and broadcast over the heads), on Q [b, tq, h * d], K and V [b, tk, hkv * d]; with
 * `withPast`, past keys and values PK, PV [b, hkv, tp, d] come before the new ones. With `presentOut` the op also
 * returns the present keys and values K2, V2 [b, hkv, tp + tk, d] (ORT's CPU kernel writes them whenever past ones
 * are given).
 */
export function maskedAttentionGraph(s: HeadShape, withPast: boolean, presentOut: boolean): GraphSpec {
  return {
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
  };
}

/**
 * Causal attention forward (ONNX 23 `Attention`) on [b, t, heads * d]: the causal mask and 1/sqrt(d) inside the
 * op, each (batch, head) on the pool; with `keepProbs` also the softmax probabilities P for the backward pass.
 */
export function attentionForwardGraph(s: HeadShape, keepProbs: boolean): GraphSpec {
  return {
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
  };
}

/**
 * Attention backward: dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)) with rowsum(dP P) = rowsum(dO O)
 * (computed on the [t, d] rows, not the [t, t] ones); dQ = scale dS K; dK = scale dS^T Q. Inputs [b, t, heads, d]
 * and P [b, hkv, rep * t, t].
 */
export function attentionBackwardGraph(s: HeadShape): GraphSpec {
  const rep = s.h / s.hkv;
  const scale = 1 / Math.sqrt(s.d);
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
}

/** SwiGLU forward: QuickGelu with alpha 1 is x * sigmoid(x) = SiLU, one vectorised pass. */
export function swigluForwardGraph(): GraphSpec {
  return {
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
  };
}

/** SwiGLU backward: with s = sigmoid(g) and a = g s, dU = dY a and dG = dY u (s + a - a s). */
export function swigluBackwardGraph(): GraphSpec {
  return {
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
  };
}

/** Softmax over the vocabulary times a per-row coefficient: cross-entropy's gradient before the target's -coef. */
export function softmaxScaledGraph(): GraphSpec {
  return {
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
  };
}

/** RMSNorm forward: Y and the per-row reciprocal RMS R, which the backward pass reads. */
export function rmsNormForwardGraph(eps: number): GraphSpec {
  return {
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
  };
}

/** RMSNorm backward: dx = dy w r - x r^3 <dy w, x> / d;  dw = sum_rows dy x r. */
export function rmsNormBackwardGraph(): GraphSpec {
  return {
    name: 'rms_norm_backward',
    opset: 18,
    nodes: [
      { op: 'Mul', inputs: ['X', 'R'], outputs: ['XR'] },
      { op: 'Mul', inputs: ['dY', 'XR'], outputs: ['dYXR'] },
      { op: 'ReduceSum', inputs: ['dYXR', 'axis0'], outputs: ['dW'], attributes: { keepdims: 0 } },
      { op: 'Mul', inputs: ['dY', 'W'], outputs: ['dYW'] },
      { op: 'Mul', inputs: ['dYW', 'XR'], outputs: ['dYWXR'] },
      // Axes as an input (opset 18's form), so that the fused training step can inline this graph beside opset-23 ops.
      { op: 'ReduceMean', inputs: ['dYWXR', 'lastAxis'], outputs: ['dotR'], attributes: { keepdims: 1 } },
      { op: 'Mul', inputs: ['XR', 'dotR'], outputs: ['corr'] },
      { op: 'Sub', inputs: ['dYW', 'corr'], outputs: ['inner'] },
      { op: 'Mul', inputs: ['inner', 'R'], outputs: ['dX'] },
    ],
    initializers: [
      { name: 'axis0', dims: [1], type: 'int64', values: [0] },
      { name: 'lastAxis', dims: [1], type: 'int64', values: [-1] },
    ],
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
  };
}

/** Element-wise A + B. */
export function addGraph(): GraphSpec {
  return {
    name: 'add',
    nodes: [{ op: 'Add', inputs: ['A', 'B'], outputs: ['Y'] }],
    inputs: [
      { name: 'A', shape: ['n'] },
      { name: 'B', shape: ['n'] },
    ],
    outputs: [{ name: 'Y', shape: ['n'] }],
  };
}

const ropeStepIdCache = new Map<string, BigInt64Array>();

/** The rope graph's P input for a batch [b, t] at positions 0..t-1: int64 time steps 0..t-1 per row (cached). */
export function ropeStepIds(b: number, t: number): BigInt64Array {
  const key = `${b}:${t}`;
  let ids = ropeStepIdCache.get(key);
  if (!ids) {
    ids = new BigInt64Array(b * t);
    for (let i = 0; i < b * t; i++) ids[i] = BigInt(i % t);
    if (ropeStepIdCache.size > 64) ropeStepIdCache.clear();
    ropeStepIdCache.set(key, ids);
  }
  return ids;
}

/** ONNX 23 RotaryEmbedding on [b, t, h * d]; table row i serves time step i (the backward is the same op with -sin). */
export function ropeGraph(h: number): GraphSpec {
  return {
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
  };
}

/** Rows of W [v, d] at int32 ids. */
export function gatherRowsGraph(): GraphSpec {
  return {
    name: 'gather_rows',
    nodes: [{ op: 'Gather', inputs: ['W', 'I'], outputs: ['Y'], attributes: { axis: 0 } }],
    inputs: [
      { name: 'W', shape: ['v', 'd'] },
      { name: 'I', shape: ['n'], type: 'int32' },
    ],
    outputs: [{ name: 'Y', shape: ['n', 'd'] }],
  };
}

/** y = op(A) op(B) for 2-D operands, op a transpose where the flag says (MLAS reads transposed operands in place). */
export function gemmGraph(transA: boolean, transB: boolean): GraphSpec {
  return {
    // The layout in the name: a profile tells the products apart by it.
    name: `gemm${transA ? '_tA' : ''}${transB ? '_tB' : ''}`,
    nodes: [
      {
        op: 'Gemm',
        inputs: ['A', 'B'],
        outputs: ['Y'],
        attributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 },
      },
    ],
    inputs: [
      { name: 'A', shape: transA ? ['k', 'm'] : ['m', 'k'] },
      { name: 'B', shape: transB ? ['n', 'k'] : ['k', 'n'] },
    ],
    outputs: [{ name: 'Y', shape: ['m', 'n'] }],
  };
}
