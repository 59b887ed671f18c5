/**
 * The decoding step of a Llama-family decoder as a few ONNX Runtime graphs instead of a dozen per layer: one
 * graph per layer boundary runs the end of layer i-1 (each sequence's attention-weighted values, o projection,
 * residual add, RMSNorm, gate/up, SwiGLU, down, residual add) and the start of layer i (RMSNorm, q/k/v
 * projections with their biases and q/k norms, RoPE, each sequence's attention scores against its cached keys).
 * Only the attention softmax and the KV-cache writes run in JS between two graphs; each graph returns one packed
 * output. A prompt of one sequence runs on the same graphs with its positions as rows (the prefill kind).
 *
 * The graphs compute exactly what the per-op kernels compute (src/tensor/ort-kernels.ts, ort-matmul.ts and the
 * JS code that calls them), to the bit: the same ops with the same attributes on operands of the same layout
 * and size (Gemm with transB for every projection, FusedMatMul for batched attention matmuls and Gemm for a
 * single kv head, SimplifiedLayerNormalization, RotaryEmbedding, QuickGelu then Mul), on the same thread count,
 * with ORT's graph optimisations off so no fusion changes a rounding. Weights are graph inputs (a model may
 * be gigabytes), prepared once as the binding's feeds.
 */
import { getMatmulBackend, type MatmulBackend } from './matmul.ts';
import type { OnnxInitializer, OnnxNode, OnnxValue } from './onnx-graph.ts';
import { OrtMatmulBackend } from './ort-matmul.ts';
import { GraphCache, type Feed, type GraphSpec, type OrtGraph, type PreparedFeed } from './ort-session.ts';

const MS = 'com.microsoft';

/** The sizes and features of one decoder layer (every layer of a model has the same). */
export interface DecodeLayerShape {
  dim: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The MLP's width. */
  hidden: number;
  /** RMSNorm epsilon (of every norm). */
  eps: number;
  qkvBias: boolean;
  /** RMSNorm over each head of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
}

/** What one graph runs, for `n` sequences. */
export interface DecodeGraphKind {
  n: number;
  /**
   * One sequence's prompt of several positions instead of one position of each of n sequences (n is 1): rows are
   * positions, and attention groups them per kv head as the per-op path does (cachedAttention), through transposes.
   */
  prefill: boolean;
  /** Starts from token ids through the embedding (the first graph) instead of from the residual stream X. */
  embed: boolean;
  /** Ends the previous layer (attention values from its softmaxed scores, o projection, MLP). */
  attnOut: boolean;
  /** Starts a layer (norm, q/k/v, RoPE, attention scores); else ends with the final norm. */
  attnIn: boolean;
}

/** Weights of the end of a layer (attnOut). */
export interface AttnOutWeights {
  o: Float32Array;
  postNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/** Weights of the start of a layer (attnIn). */
export interface AttnInWeights {
  norm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  bias?: { q: Float32Array; k: Float32Array; v: Float32Array };
  qkNorm?: { q: Float32Array; k: Float32Array };
}

/** One sequence's KV cache of the layer a graph touches: [kvHeads, capacity, headDim] each. */
export interface DecodeCacheView {
  keys: Float32Array;
  values: Float32Array;
  capacity: number;
}

export interface DecodeGraphInput {
  /**
   * Prefill: the prompt's positions, of one sequence (n is 1); every "per sequence row" below is then per position,
   * and a sequence's scores and probabilities are [heads x positions, past + positions].
   */
  prompt?: number;
  /** The residual stream [n, dim] (when not embed). */
  x?: Float32Array;
  /** Token ids and the embedding matrix [vocab, dim] (embed). */
  embed?: { ids: Int32Array; weight: Float32Array };
  /** attnOut: the previous layer's weights, and per sequence its softmaxed scores and cache of that layer. */
  attnOut?: { weights: AttnOutWeights; probs: Float32Array[]; caches: DecodeCacheView[]; totals: number[] };
  /**
   * attnIn: the layer's weights, RoPE tables [n, headDim / 2] (row i for sequence i's position), and per sequence
   * its cache of this layer and how many positions it holds before this step.
   */
  attnIn?: {
    weights: AttnInWeights;
    cos: Float32Array;
    sin: Float32Array;
    caches: DecodeCacheView[];
    past: number[];
  };
  /** The final norm's weight (when not attnIn). */
  finalNorm?: Float32Array;
}

export interface DecodeGraphOutput {
  /** The residual stream entering the layer started (attnIn), or the final-normed hidden rows [n, dim]. */
  x: Float32Array;
  /** attnIn: the new keys (after RoPE) and values, [n, kvHeads * headDim] each. */
  keys?: Float32Array;
  values?: Float32Array;
  /** attnIn: per sequence, its scores [kvHeads * (heads / kvHeads), past + 1] (before scaling and softmax). */
  scores?: Float32Array[];
}

function gemm(a: string, b: string, out: string, transB: boolean): OnnxNode {
  return { op: 'Gemm', inputs: [a, b], outputs: [out], attributes: { transA: 0, transB: transB ? 1 : 0 } };
}

/** RMSNorm of the last axis, as the per-op kernel runs it. */
export function norm(x: string, w: string, out: string, eps: number): OnnxNode {
  return {
    op: 'SimplifiedLayerNormalization',
    inputs: [x, w],
    outputs: [out],
    attributes: { axis: -1, epsilon: { float: eps } },
  };
}

/**
 * The attention matmul of one sequence as the per-op path runs it (ort-matmul.ts): batched over kv heads with
 * FusedMatMul, or a plain Gemm when there is one kv head (3-D operands are then viewed as 2-D).
 */
export function attentionMatmul(
  nodes: OnnxNode[],
  a: string,
  b: string,
  out: string,
  transB: boolean,
  kvHeads: number,
): void {
  if (kvHeads > 1) {
    nodes.push({
      op: 'FusedMatMul',
      domain: MS,
      inputs: [a, b],
      outputs: [out],
      attributes: { transA: 0, transB: transB ? 1 : 0, alpha: { float: 1 } },
    });
    return;
  }
  nodes.push(gemm(a, b, out, transB));
}

/**
 * Flattens `parts` into one output 'OUT', their concatenation (needs the initializer 'flat' of [-1]): each output
 * costs the binding a fresh ArrayBuffer and the garbage collector its release, and views of one are cheap.
 */
export function packed(nodes: OnnxNode[], parts: string[]): OnnxValue {
  for (const part of parts) nodes.push({ op: 'Reshape', inputs: [part, 'flat'], outputs: [`${part}_flat`] });
  nodes.push({
    op: 'Concat',
    inputs: parts.map((p) => `${p}_flat`),
    outputs: ['OUT'],
    attributes: { axis: 0 },
  });
  return { name: 'OUT', shape: ['packed'] };
}

/** A 1-D int64 constant (shapes, axes, slice bounds). */
export function int64(name: string, values: number[]): OnnxInitializer {
  return { name, dims: [values.length], type: 'int64', values };
}

/**
 * The first `length` positions of cache `c` ([hkv, capacity, hd]) as the attention matmul reads them (needs the
 * initializers 'zero', 'axis1' and 'flatHeads' of [-1, hd]).
 */
export function cachePrefixNodes(
  nodes: OnnxNode[],
  c: string,
  length: string,
  out: string,
  hkv: number,
): void {
  nodes.push({ op: 'Slice', inputs: [c, 'zero', length, 'axis1'], outputs: [hkv > 1 ? out : `${out}_3d`] });
  if (hkv === 1) nodes.push({ op: 'Reshape', inputs: [`${out}_3d`, 'flatHeads'], outputs: [out] });
}

/**
 * What follows the q, k or v projection `y` ([rows, count x hd]): its bias, then for q and k the per-head norm
 * and RoPE (needs the initializers 'flatHeads', 'qRows' and 'kRows' and the inputs COS, SIN and PID); adds the
 * weights it reads to `inputs` and returns the result's name.
 */
export function projectionTail(
  nodes: OnnxNode[],
  inputs: OnnxValue[],
  s: DecodeLayerShape,
  p: 'Q' | 'K' | 'V',
  count: number,
  y: string,
): string {
  const hd = s.headDim;
  if (s.qkvBias) {
    inputs.push({ name: `B${p}`, shape: [count * hd] });
    nodes.push({ op: 'Add', inputs: [y, `B${p}`], outputs: [`${p}1`] });
    y = `${p}1`;
  }
  if (p === 'V') return y;
  if (s.qkNorm) {
    inputs.push({ name: `W${p}N`, shape: [hd] });
    nodes.push(
      { op: 'Reshape', inputs: [y, 'flatHeads'], outputs: [`${p}heads`] },
      norm(`${p}heads`, `W${p}N`, `${p}normed`, s.eps),
    );
    y = `${p}normed`;
  }
  nodes.push(
    { op: 'Reshape', inputs: [y, p === 'Q' ? 'qRows' : 'kRows'], outputs: [`${p}rows`] },
    {
      op: 'RotaryEmbedding',
      inputs: [`${p}rows`, 'COS', 'SIN', 'PID'],
      outputs: [`${p}R`],
      attributes: { num_heads: count },
    },
  );
  return `${p}R`;
}

/** Builds the graph of one kind (see {@link DecodeGraphKind}) for one layer shape. */
export function decodeGraphSpec(s: DecodeLayerShape, kind: DecodeGraphKind): GraphSpec {
  const { n, prefill } = kind;
  if (prefill && n !== 1) throw new Error(`decode graph: a prefill graph runs one sequence, not ${n}`);
  const { dim, heads: h, kvHeads: hkv, headDim: hd } = s;
  const rep = h / hkv;
  /** Rows of the residual stream: one per sequence, or the prompt's positions. */
  const rows = prefill ? 't' : n;
  const nodes: OnnxNode[] = [];
  const inputs: OnnxValue[] = [];
  const outputs: OnnxValue[] = [];
  const grouped = (rows: number): number[] => (hkv > 1 ? [hkv, rows, hd] : [rows, hd]);
  const initializers: OnnxInitializer[] = [
    int64('zero', [0]),
    int64('axis1', [1]),
    int64('rowShape', [1, h * hd]),
    // One sequence's q, and its new key, grouped by kv head as the per-op attention lays them out.
    int64('qShape', grouped(rep)),
    int64('kShape', grouped(1)),
    int64('flatHeads', [-1, hd]),
    int64('qRows', [1, -1, h * hd]),
    int64('kRows', [1, -1, hkv * hd]),
    // Prefill: positions x heads, grouped by kv head, and back.
    int64('posGroups', [-1, hkv, rep, hd]),
    int64('posKv', [-1, hkv, hd]),
    int64('groupedRows', hkv > 1 ? [hkv, -1, hd] : [-1, hd]),
    int64('groupPos', [hkv, rep, -1, hd]),
    int64('posRows', [-1, h * hd]),
  ];
  const weight = (name: string, shape: number[]): void => {
    inputs.push({ name, shape });
  };
  const cachePrefix = (c: string, length: string, out: string): void =>
    cachePrefixNodes(nodes, c, length, out, hkv);

  let x = 'X';
  if (kind.embed) {
    inputs.push({ name: 'EMB', shape: ['vocab', dim] }, { name: 'IDS', shape: [rows], type: 'int32' });
    nodes.push({ op: 'Gather', inputs: ['EMB', 'IDS'], outputs: ['X'], attributes: { axis: 0 } });
  } else {
    inputs.push({ name: 'X', shape: [rows, dim] });
  }

  if (kind.attnOut) {
    const attended: string[] = [];
    for (let i = 0; i < n; i++) {
      const queries = prefill ? 'qrows' : rep;
      inputs.push(
        { name: `P${i}`, shape: hkv > 1 ? [hkv, queries, `t${i}`] : [queries, `t${i}`] },
        { name: `VC${i}`, shape: [hkv, `vc${i}`, hd] },
        { name: `VT${i}`, shape: [1], type: 'int64' },
      );
      cachePrefix(`VC${i}`, `VT${i}`, `Vall${i}`);
      attentionMatmul(nodes, `P${i}`, `Vall${i}`, `O${i}`, false, hkv);
      if (prefill) {
        // [hkv, rep x t, hd] -> [t, hkv, rep, hd] -> [t, heads x hd]
        nodes.push(
          { op: 'Reshape', inputs: [`O${i}`, 'groupPos'], outputs: [`Ogp${i}`] },
          { op: 'Transpose', inputs: [`Ogp${i}`], outputs: [`Opg${i}`], attributes: { perm: [2, 0, 1, 3] } },
          { op: 'Reshape', inputs: [`Opg${i}`, 'posRows'], outputs: [`Orow${i}`] },
        );
      } else {
        nodes.push({ op: 'Reshape', inputs: [`O${i}`, 'rowShape'], outputs: [`Orow${i}`] });
      }
      attended.push(`Orow${i}`);
    }
    if (n > 1) nodes.push({ op: 'Concat', inputs: attended, outputs: ['ATT'], attributes: { axis: 0 } });
    const att = n > 1 ? 'ATT' : attended[0];
    weight('WO', [dim, h * hd]);
    weight('WPN', [dim]);
    weight('WG', [s.hidden, dim]);
    weight('WU', [s.hidden, dim]);
    weight('WD', [dim, s.hidden]);
    nodes.push(
      gemm(att, 'WO', 'AO', true),
      { op: 'Add', inputs: [x, 'AO'], outputs: ['X2'] },
      norm('X2', 'WPN', 'H2', s.eps),
      gemm('H2', 'WG', 'G', true),
      gemm('H2', 'WU', 'U', true),
      { op: 'QuickGelu', domain: MS, inputs: ['G'], outputs: ['GA'], attributes: { alpha: { float: 1 } } },
      { op: 'Mul', inputs: ['GA', 'U'], outputs: ['M'] },
      gemm('M', 'WD', 'D', true),
      { op: 'Add', inputs: ['X2', 'D'], outputs: ['X3'] },
    );
    x = 'X3';
  }

  if (!kind.attnIn) {
    weight('WF', [dim]);
    nodes.push(norm(x, 'WF', 'Y', s.eps));
    outputs.push({ name: 'Y', shape: [rows, dim] });
    return { name: 'decode_step', nodes, inputs, outputs, initializers, opset: 23, optimization: 'disabled' };
  }

  weight('WN', [dim]);
  nodes.push(norm(x, 'WN', 'H', s.eps));
  inputs.push({ name: 'COS', shape: [rows, hd / 2] }, { name: 'SIN', shape: [rows, hd / 2] });
  // Row i of the tables serves row i (a sequence, or a prompt position).
  if (prefill) inputs.push({ name: 'PID', shape: [1, 't'], type: 'int64' });
  else
    initializers.push({
      name: 'PID',
      dims: [1, n],
      type: 'int64',
      values: Array.from({ length: n }, (_, i) => i),
    });
  const project = (p: 'Q' | 'K' | 'V', count: number): string => {
    weight(`W${p}`, [count * hd, dim]);
    nodes.push(gemm('H', `W${p}`, `${p}0`, true));
    return projectionTail(nodes, inputs, s, p, count, `${p}0`);
  };
  const q = project('Q', h);
  const k = project('K', hkv);
  const v = project('V', hkv);
  for (let i = 0; i < n; i++) {
    inputs.push(
      { name: `KC${i}`, shape: [hkv, `kc${i}`, hd] },
      { name: `KP${i}`, shape: [1], type: 'int64' },
    );
    let qi = q;
    let ki = k;
    if (n > 1) {
      if (i === 0) initializers.push(int64('row0', [0]));
      initializers.push(int64(`row${i + 1}`, [i + 1]));
      nodes.push(
        { op: 'Slice', inputs: [q, `row${i}`, `row${i + 1}`, 'axis1'], outputs: [`Qrow${i}`] },
        { op: 'Slice', inputs: [k, `row${i}`, `row${i + 1}`, 'axis1'], outputs: [`Krow${i}`] },
      );
      qi = `Qrow${i}`;
      ki = `Krow${i}`;
    }
    if (prefill) {
      // q [t, heads x hd] -> [hkv, rep, t, hd] -> [hkv, rep x t, hd]; k [t, hkv x hd] -> [hkv, t, hd]
      nodes.push(
        { op: 'Reshape', inputs: [qi, 'posGroups'], outputs: [`Qpg${i}`] },
        { op: 'Transpose', inputs: [`Qpg${i}`], outputs: [`Qgp${i}`], attributes: { perm: [1, 2, 0, 3] } },
        { op: 'Reshape', inputs: [`Qgp${i}`, 'groupedRows'], outputs: [`Qg${i}`] },
        { op: 'Reshape', inputs: [ki, 'posKv'], outputs: [`Kpk${i}`] },
        { op: 'Transpose', inputs: [`Kpk${i}`], outputs: [`Kkp${i}`], attributes: { perm: [1, 0, 2] } },
        { op: 'Reshape', inputs: [`Kkp${i}`, 'groupedRows'], outputs: [`Kg${i}`] },
      );
    } else {
      nodes.push(
        { op: 'Reshape', inputs: [qi, 'qShape'], outputs: [`Qg${i}`] },
        { op: 'Reshape', inputs: [ki, 'kShape'], outputs: [`Kg${i}`] },
      );
    }
    cachePrefix(`KC${i}`, `KP${i}`, `Kpast${i}`);
    nodes.push({
      op: 'Concat',
      inputs: [`Kpast${i}`, `Kg${i}`],
      outputs: [`Kall${i}`],
      attributes: { axis: hkv > 1 ? 1 : 0 },
    });
    attentionMatmul(nodes, `Qg${i}`, `Kall${i}`, `S${i}`, true, hkv);
  }
  // One output, flat: the residual stream entering the layer, the new keys and values, each sequence's scores.
  initializers.push(int64('flat', [-1]));
  outputs.push(packed(nodes, [x, k, v, ...Array.from({ length: n }, (_, i) => `S${i}`)]));
  return { name: 'decode_step', nodes, inputs, outputs, initializers, opset: 23, optimization: 'disabled' };
}

/** A layer shape as a cache key. */
export function shapeKey(s: DecodeLayerShape): string {
  return `${s.dim}:${s.heads}:${s.kvHeads}:${s.headDim}:${s.hidden}:${s.eps}:${s.qkvBias}:${s.qkNorm}`;
}

/** The decode-step graphs of one backend (its thread count), with the ORT tensors of its long-lived inputs. */
/** Long-lived feeds (weights, KV caches, int64 scalars) wrapped once as the binding's tensors. */
export class PreparedFeeds {
  private readonly arrays = new WeakMap<Float32Array, PreparedFeed>();
  private readonly scalars = new Map<number, PreparedFeed>();

  /** data as an ORT tensor of `dims`, wrapped once per array (rewrapped when the dims change). */
  keep(g: OrtGraph, data: Float32Array, dims: readonly number[]): PreparedFeed {
    let t = this.arrays.get(data);
    if (!t || t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      t = g.prepare([data, dims]);
      this.arrays.set(data, t);
    }
    return t;
  }

  /** Into `feeds`, the weights {@link projectionTail} reads: the q/k/v biases and the q/k norms, where `s` has them. */
  projectionTail(
    g: OrtGraph,
    s: DecodeLayerShape,
    w: Pick<AttnInWeights, 'bias' | 'qkNorm'>,
    feeds: Record<string, Feed | PreparedFeed>,
  ): void {
    const { heads: h, kvHeads: hkv, headDim: hd } = s;
    if (s.qkvBias) {
      feeds.BQ = this.keep(g, w.bias!.q, [h * hd]);
      feeds.BK = this.keep(g, w.bias!.k, [hkv * hd]);
      feeds.BV = this.keep(g, w.bias!.v, [hkv * hd]);
    }
    if (s.qkNorm) {
      feeds.WQN = this.keep(g, w.qkNorm!.q, [hd]);
      feeds.WKN = this.keep(g, w.qkNorm!.k, [hd]);
    }
  }

  /** v as an int64 tensor [1]. */
  scalar(g: OrtGraph, v: number): PreparedFeed {
    let t = this.scalars.get(v);
    if (!t) {
      t = g.prepare([BigInt64Array.of(BigInt(v)), [1]]);
      this.scalars.set(v, t);
    }
    return t;
  }
}

export class OrtDecodeGraphs {
  private readonly cache: GraphCache;
  private readonly feeds = new PreparedFeeds();

  constructor(threads: number) {
    this.cache = new GraphCache(threads);
  }

  /** Per layer shape (the caller keeps one object per model), its graphs by kind. */
  private readonly byShape = new WeakMap<DecodeLayerShape, Map<string, OrtGraph>>();

  private graph(s: DecodeLayerShape, kind: DecodeGraphKind): OrtGraph {
    let graphs = this.byShape.get(s);
    if (!graphs) this.byShape.set(s, (graphs = new Map()));
    const kindKey = `${kind.n}:${kind.prefill}:${kind.embed}:${kind.attnOut}:${kind.attnIn}`;
    let g = graphs.get(kindKey);
    if (!g) {
      g = this.cache.get(`decode:${shapeKey(s)}:${kindKey}`, () => decodeGraphSpec(s, kind));
      graphs.set(kindKey, g);
    }
    return g;
  }

  private readonly positionRows = new Map<number, PreparedFeed>();

  /** [1, t] int64 0..t-1: RoPE table row i for prompt position i. */
  private positionIds(g: OrtGraph, t: number): PreparedFeed {
    let ids = this.positionRows.get(t);
    if (!ids) {
      ids = g.prepare([BigInt64Array.from({ length: t }, (_, i) => BigInt(i)), [1, t]]);
      this.positionRows.set(t, ids);
    }
    return ids;
  }

  /** Runs one graph; the kind follows from which parts of `input` are given. */
  run(s: DecodeLayerShape, n: number, input: DecodeGraphInput): DecodeGraphOutput {
    const prefill = input.prompt !== undefined;
    /** Query rows per sequence, and rows of the residual stream. */
    const t = input.prompt ?? 1;
    const rows = prefill ? t : n;
    const kind: DecodeGraphKind = {
      n,
      prefill,
      embed: input.embed !== undefined,
      attnOut: input.attnOut !== undefined,
      attnIn: input.attnIn !== undefined,
    };
    const g = this.graph(s, kind);
    const { dim, heads: h, kvHeads: hkv, headDim: hd, hidden } = s;
    const feeds: Record<string, Feed | PreparedFeed> = {};
    if (input.embed) {
      const w = input.embed.weight;
      feeds.EMB = this.feeds.keep(g, w, [w.length / dim, dim]);
      feeds.IDS = [input.embed.ids, [rows]];
    } else {
      feeds.X = [input.x!, [rows, dim]];
    }
    const cacheDims = (c: DecodeCacheView): number[] => [hkv, c.capacity, hd];
    if (input.attnOut) {
      const { weights: w, probs, caches, totals } = input.attnOut;
      for (let i = 0; i < n; i++) {
        const queries = (h / hkv) * t;
        feeds[`P${i}`] = [probs[i], hkv > 1 ? [hkv, queries, totals[i]] : [queries, totals[i]]];
        feeds[`VC${i}`] = this.feeds.keep(g, caches[i].values, cacheDims(caches[i]));
        feeds[`VT${i}`] = this.feeds.scalar(g, totals[i]);
      }
      feeds.WO = this.feeds.keep(g, w.o, [dim, h * hd]);
      feeds.WPN = this.feeds.keep(g, w.postNorm, [dim]);
      feeds.WG = this.feeds.keep(g, w.gate, [hidden, dim]);
      feeds.WU = this.feeds.keep(g, w.up, [hidden, dim]);
      feeds.WD = this.feeds.keep(g, w.down, [dim, hidden]);
    }
    if (!input.attnIn) {
      feeds.WF = this.feeds.keep(g, input.finalNorm!, [dim]);
      return { x: g.run(feeds).Y };
    }
    const { weights: w, cos, sin, caches, past } = input.attnIn;
    feeds.WN = this.feeds.keep(g, w.norm, [dim]);
    feeds.WQ = this.feeds.keep(g, w.q, [h * hd, dim]);
    feeds.WK = this.feeds.keep(g, w.k, [hkv * hd, dim]);
    feeds.WV = this.feeds.keep(g, w.v, [hkv * hd, dim]);
    this.feeds.projectionTail(g, s, w, feeds);
    feeds.COS = [cos, [rows, hd / 2]];
    feeds.SIN = [sin, [rows, hd / 2]];
    if (prefill) feeds.PID = this.positionIds(g, t);
    for (let i = 0; i < n; i++) {
      feeds[`KC${i}`] = this.feeds.keep(g, caches[i].keys, cacheDims(caches[i]));
      feeds[`KP${i}`] = this.feeds.scalar(g, past[i]);
    }
    const out = g.run(feeds).OUT;
    let at = 0;
    const take = (size: number): Float32Array => out.subarray(at, (at += size));
    return {
      x: take(rows * dim),
      keys: take(rows * hkv * hd),
      values: take(rows * hkv * hd),
      scores: past.map((p) => take(h * t * (p + t))),
    };
  }
}

/**
 * The object `made` holds for the active backend, made for its thread count on first use; null when the backend is
 * not ONNX Runtime.
 */
export function forOrtBackend<T>(made: WeakMap<MatmulBackend, T>, make: (threads: number) => T): T | null {
  const backend = getMatmulBackend();
  if (!(backend instanceof OrtMatmulBackend)) return null;
  let value = made.get(backend);
  if (value === undefined) {
    value = make(backend.threads);
    made.set(backend, value);
  }
  return value;
}

const perBackend = new WeakMap<MatmulBackend, OrtDecodeGraphs>();

/** The decode-step graphs of the active backend, or null when it is not ONNX Runtime. */
export function decodeGraphs(): OrtDecodeGraphs | null {
  return forOrtBackend(perBackend, (threads) => new OrtDecodeGraphs(threads));
}
