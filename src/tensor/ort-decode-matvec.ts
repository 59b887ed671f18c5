/**
 * The decoding step of one sequence with every projection outside the graphs: the projections run on the
 * WebAssembly one-row matmul over weights in place (src/tensor/weight-memory.ts), and these graphs run what lies
 * between two of them. Each is the matching part of src/tensor/ort-decode.ts's graphs (the same ops, attributes
 * and operand layouts, optimisations off), and the one-row matmul sums as ONNX Runtime's Gemm does for one row,
 * so the numbers are the per-op path's to the bit. Per layer:
 *
 *   scores    q/k/v biases, q/k norms, RoPE, the scores against the cached keys and the new one
 *   attended  the softmaxed scores times the cached values (JS runs the softmax and the cache writes before it)
 *   residual  residual add and RMSNorm (after the o projection: the post-attention norm; after the down
 *             projection: the next layer's input norm or the final norm); in JS where src/tensor/ort-rmsnorm.ts
 *             has this machine's ONNX Runtime's bits
 *   swiglu    QuickGelu(gate) * up
 *
 * Given the model's WeightMemory, scores and attended run in JS and WebAssembly instead where
 * src/tensor/ort-attention.ts has this machine's ONNX Runtime's bits for the layer shape.
 */
import type { MatmulBackend } from './matmul.ts';
import type { OnnxInitializer, OnnxNode, OnnxValue } from './onnx-graph.ts';
import {
  attentionMatmul,
  cachePrefixNodes,
  forOrtBackend,
  int64,
  norm,
  packed,
  PreparedFeeds,
  projectionTail,
  shapeKey,
  type AttnInWeights,
  type DecodeLayerShape,
} from './ort-decode.ts';
import { attendedLikeOrt, attentionShapeSupported, scoresLikeOrt } from './ort-attention.ts';
import { rmsNormLikeOrt, rmsNormMatchesOrt, rmsNormWidthSupported } from './ort-rmsnorm.ts';
import { Rng } from './random.ts';
import { rowFor, type RowBuffers } from './row-buffers.ts';
import { sameBits } from './same-bits.ts';
import { GraphCache, type Feed, type GraphSpec, type OrtGraph, type PreparedFeed } from './ort-session.ts';
import { WeightMemory } from './weight-memory.ts';

const MS = 'com.microsoft';

function spec(
  name: string,
  nodes: OnnxNode[],
  inputs: OnnxValue[],
  outputs: OnnxValue[],
  init: OnnxInitializer[] = [],
): GraphSpec {
  return { name, nodes, inputs, outputs, initializers: init, opset: 23, optimization: 'disabled' };
}

/** q, k, v [1, heads x hd] from their projections; the new key after RoPE, the value, and the scores. */
export function scoresGraphSpec(s: DecodeLayerShape): GraphSpec {
  const { heads: h, kvHeads: hkv, headDim: hd } = s;
  const rep = h / hkv;
  const nodes: OnnxNode[] = [];
  const inputs: OnnxValue[] = [
    { name: 'Q0', shape: [1, h * hd] },
    { name: 'K0', shape: [1, hkv * hd] },
    { name: 'V0', shape: [1, hkv * hd] },
    { name: 'COS', shape: [1, hd / 2] },
    { name: 'SIN', shape: [1, hd / 2] },
    { name: 'KC', shape: [hkv, 'kc', hd] },
    { name: 'KP', shape: [1], type: 'int64' },
  ];
  const grouped = (rows: number): number[] => (hkv > 1 ? [hkv, rows, hd] : [rows, hd]);
  const init = [
    int64('zero', [0]),
    int64('axis1', [1]),
    int64('flatHeads', [-1, hd]),
    int64('qRows', [1, -1, h * hd]),
    int64('kRows', [1, -1, hkv * hd]),
    int64('qShape', grouped(rep)),
    int64('kShape', grouped(1)),
    int64('flat', [-1]),
    { name: 'PID', dims: [1, 1], type: 'int64' as const, values: [0] },
  ];
  const project = (p: 'Q' | 'K' | 'V', count: number): string =>
    projectionTail(nodes, inputs, s, p, count, `${p}0`);
  const q = project('Q', h);
  const k = project('K', hkv);
  const v = project('V', hkv);
  nodes.push(
    { op: 'Reshape', inputs: [q, 'qShape'], outputs: ['Qg'] },
    { op: 'Reshape', inputs: [k, 'kShape'], outputs: ['Kg'] },
  );
  cachePrefixNodes(nodes, 'KC', 'KP', 'Kpast', hkv);
  nodes.push({
    op: 'Concat',
    inputs: ['Kpast', 'Kg'],
    outputs: ['Kall'],
    attributes: { axis: hkv > 1 ? 1 : 0 },
  });
  attentionMatmul(nodes, 'Qg', 'Kall', 'S', true, hkv);
  return spec('decode_scores', nodes, inputs, [packed(nodes, [k, v, 'S'])], init);
}

/** The softmaxed scores P times the cache's first VT values: the attended row [1, heads x hd]. */
export function attendedGraphSpec(s: DecodeLayerShape): GraphSpec {
  const { heads: h, kvHeads: hkv, headDim: hd } = s;
  const rep = h / hkv;
  const nodes: OnnxNode[] = [];
  cachePrefixNodes(nodes, 'VC', 'VT', 'Vall', hkv);
  attentionMatmul(nodes, 'P', 'Vall', 'O', false, hkv);
  nodes.push({ op: 'Reshape', inputs: ['O', 'rowShape'], outputs: ['ATT'] });
  return spec(
    'decode_attended',
    nodes,
    [
      { name: 'P', shape: hkv > 1 ? [hkv, rep, 't'] : [rep, 't'] },
      { name: 'VC', shape: [hkv, 'vc', hd] },
      { name: 'VT', shape: [1], type: 'int64' },
    ],
    [{ name: 'ATT', shape: [1, h * hd] }],
    [int64('zero', [0]), int64('axis1', [1]), int64('flatHeads', [-1, hd]), int64('rowShape', [1, h * hd])],
  );
}

/**
 * X + D and its RMSNorm, packed ([X + D, norm]); without the residual (the embedding row entering the first layer),
 * only the norm of X.
 */
export function residualGraphSpec(s: DecodeLayerShape, withResidual: boolean): GraphSpec {
  const { dim } = s;
  const row = (name: string): OnnxValue => ({ name, shape: [1, dim] });
  if (!withResidual)
    return spec(
      'decode_norm',
      [norm('X', 'W', 'H', s.eps)],
      [row('X'), { name: 'W', shape: [dim] }],
      [row('H')],
    );
  const nodes: OnnxNode[] = [{ op: 'Add', inputs: ['X', 'D'], outputs: ['X2'] }, norm('X2', 'W', 'H', s.eps)];
  const out = packed(nodes, ['X2', 'H']);
  return spec(
    'decode_residual',
    nodes,
    [row('X'), row('D'), { name: 'W', shape: [dim] }],
    [out],
    [int64('flat', [-1])],
  );
}

/** QuickGelu(gate) * up, [1, hidden]. */
export function swigluGraphSpec(s: DecodeLayerShape): GraphSpec {
  const row = (name: string): OnnxValue => ({ name, shape: [1, s.hidden] });
  return spec(
    'decode_swiglu',
    [
      { op: 'QuickGelu', domain: MS, inputs: ['G'], outputs: ['GA'], attributes: { alpha: { float: 1 } } },
      { op: 'Mul', inputs: ['GA', 'U'], outputs: ['M'] },
    ],
    [row('G'), row('U')],
    [row('M')],
  );
}

/** The weights the scores graph takes besides the projections. */
export type ScoresWeights = Pick<AttnInWeights, 'bias' | 'qkNorm'>;

/** The graphs of one backend (its thread count), with the ORT tensors of long-lived inputs wrapped once. */
export class OrtMatvecDecodeGraphs {
  private readonly cache: GraphCache;
  private readonly feeds = new PreparedFeeds();

  constructor(readonly threads: number) {
    this.cache = new GraphCache(threads);
  }

  private graph(kind: string, s: DecodeLayerShape, build: () => GraphSpec): OrtGraph {
    return this.cache.get(`matvec-decode:${kind}:${shapeKey(s)}`, build);
  }

  /** By layer shape: whether the JS attention gave the graphs' bits on this machine. */
  private readonly attentionChecked = new Map<string, boolean>();

  /** True when `memory` can run this step's attention in JS with the graphs' bits (see ort-attention.ts). */
  attentionRunsInJs(
    s: DecodeLayerShape,
    memory: WeightMemory | undefined,
    total: number,
  ): memory is WeightMemory {
    if (!memory || !attentionShapeSupported(s) || !memory.fitsOperand(total, s.headDim)) return false;
    const key = shapeKey(s);
    let ok = this.attentionChecked.get(key);
    if (ok === undefined) {
      ok = this.attentionMatchesGraphs(s);
      this.attentionChecked.set(key, ok);
    }
    return ok;
  }

  /**
   * Runs the JS attention and the graphs on the same random layer at several cache lengths (every block remainder
   * of both matmuls) and compares every bit.
   */
  private attentionMatchesGraphs(s: DecodeLayerShape): boolean {
    const { heads: h, kvHeads: hkv, headDim: hd } = s;
    const capacity = 16;
    const memory = WeightMemory.create([], { rows: capacity, cols: hd });
    if (!memory) return false;
    const rng = new Rng(3);
    const random = (n: number, lo = -2, hi = 2): Float32Array =>
      Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
    const w: ScoresWeights = {
      bias: s.qkvBias ? { q: random(h * hd), k: random(hkv * hd), v: random(hkv * hd) } : undefined,
      qkNorm: s.qkNorm ? { q: random(hd, 0.5, 1.5), k: random(hd, 0.5, 1.5) } : undefined,
    };
    for (const past of [0, 1, 2, 3, 4, 5, 6, 7, 10, 13]) {
      const qkv = { q: random(h * hd), k: random(hkv * hd), v: random(hkv * hd) };
      const rope = { cos: random(hd / 2, -1, 1), sin: random(hd / 2, -1, 1) };
      const keys = random(hkv * capacity * hd);
      const graph = this.scores(s, qkv, w, rope, { keys: keys.slice(), capacity }, past);
      const js = scoresLikeOrt(memory, s, qkv, w, rope, { keys: keys.slice(), capacity }, past);
      if (
        !sameBits(graph.key, js.key) ||
        !sameBits(graph.value, js.value) ||
        !sameBits(graph.scores, js.scores)
      )
        return false;
      const values = random(hkv * capacity * hd);
      const probs = random(h * (past + 1), 0, 1);
      const attended = this.attended(s, probs, { values, capacity }, past + 1);
      if (!sameBits(attended, attendedLikeOrt(memory, s, probs, { values, capacity }, past + 1)))
        return false;
    }
    return true;
  }

  /**
   * The new key after RoPE and value ([kvHeads x hd] each) and the scores [heads, past + 1] against a cache
   * ([kvHeads, capacity, hd]) holding `past` positions. With `memory`, in JS where that has the graph's bits (into
   * rows of `buffers` when given).
   */
  scores(
    s: DecodeLayerShape,
    qkv: { q: Float32Array; k: Float32Array; v: Float32Array },
    w: ScoresWeights,
    rope: { cos: Float32Array; sin: Float32Array },
    cache: { keys: Float32Array; capacity: number },
    past: number,
    memory?: WeightMemory,
    buffers?: RowBuffers,
  ): { key: Float32Array; value: Float32Array; scores: Float32Array } {
    if (this.attentionRunsInJs(s, memory, past + 1))
      return scoresLikeOrt(memory, s, qkv, w, rope, cache, past, buffers);
    const { heads: h, kvHeads: hkv, headDim: hd } = s;
    const g = this.graph('scores', s, () => scoresGraphSpec(s));
    const feeds: Record<string, Feed | PreparedFeed> = {
      Q0: [qkv.q, [1, h * hd]],
      K0: [qkv.k, [1, hkv * hd]],
      V0: [qkv.v, [1, hkv * hd]],
      COS: [rope.cos, [1, hd / 2]],
      SIN: [rope.sin, [1, hd / 2]],
      KC: this.feeds.keep(g, cache.keys, [hkv, cache.capacity, hd]),
      KP: this.feeds.scalar(g, past),
    };
    this.feeds.projectionTail(g, s, w, feeds);
    const out = g.run(feeds).OUT;
    const kv = hkv * hd;
    return { key: out.subarray(0, kv), value: out.subarray(kv, 2 * kv), scores: out.subarray(2 * kv) };
  }

  /**
   * Softmaxed scores [heads, total] times the first `total` cached values: the attended row [heads x hd]. With
   * `memory`, in JS where that has the graph's bits.
   */
  attended(
    s: DecodeLayerShape,
    probs: Float32Array,
    cache: { values: Float32Array; capacity: number },
    total: number,
    memory?: WeightMemory,
    buffers?: RowBuffers,
  ): Float32Array {
    if (this.attentionRunsInJs(s, memory, total))
      return attendedLikeOrt(memory, s, probs, cache, total, buffers);
    const { heads: h, kvHeads: hkv, headDim: hd } = s;
    const g = this.graph('attended', s, () => attendedGraphSpec(s));
    const rep = h / hkv;
    return g.run({
      P: [probs, hkv > 1 ? [hkv, rep, total] : [rep, total]],
      VC: this.feeds.keep(g, cache.values, [hkv, cache.capacity, hd]),
      VT: this.feeds.scalar(g, total),
    }).ATT;
  }

  /**
   * The residual stream x + d and its RMSNorm under `weight`; with no d, x itself and its norm. In JS where the JS
   * norm has the graph's bits, into the rows `rows` names when given.
   */
  residual(
    s: DecodeLayerShape,
    x: Float32Array,
    d: Float32Array | null,
    weight: Float32Array,
    rows?: { buffers: RowBuffers; sum: string; normed: string },
  ): { x: Float32Array; normed: Float32Array } {
    const { dim } = s;
    // The add and the norm in JS where the JS norm has ONNX Runtime's bits: no graph run.
    if (rmsNormWidthSupported(dim) && rmsNormMatchesOrt()) {
      let sum = x;
      if (d) {
        sum = rowFor(rows?.buffers, rows?.sum ?? '', dim);
        for (let i = 0; i < dim; i++) sum[i] = x[i] + d[i];
      }
      return {
        x: sum,
        normed: rmsNormLikeOrt(sum, weight, s.eps, rowFor(rows?.buffers, rows?.normed ?? '', dim)),
      };
    }
    if (!d) {
      const g = this.graph('norm', s, () => residualGraphSpec(s, false));
      return { x, normed: g.run({ X: [x, [1, dim]], W: this.feeds.keep(g, weight, [dim]) }).H };
    }
    const g = this.graph('residual', s, () => residualGraphSpec(s, true));
    const out = g.run({ X: [x, [1, dim]], D: [d, [1, dim]], W: this.feeds.keep(g, weight, [dim]) }).OUT;
    return { x: out.subarray(0, dim), normed: out.subarray(dim) };
  }

  /**
   * QuickGelu(gate) * up. With `memory`, in WebAssembly where that has the graph's bits on this machine (into a row of
   * `buffers` when given).
   */
  swiglu(
    s: DecodeLayerShape,
    gate: Float32Array,
    up: Float32Array,
    memory?: WeightMemory,
    buffers?: RowBuffers,
  ): Float32Array {
    if (memory?.fitsRow(gate.length) && this.swigluMatchesGraph(s)) {
      const out = rowFor(buffers, 'swiglu', gate.length);
      memory.swiglu(gate, up, out);
      return out;
    }
    const g = this.graph('swiglu', s, () => swigluGraphSpec(s));
    return g.run({ G: [gate, [1, s.hidden]], U: [up, [1, s.hidden]] }).M;
  }

  private swigluChecked: boolean | undefined;

  /**
   * Whether the WebAssembly SwiGLU gives the graph's bits: values across the logistic's clamps at +-18, around zero
   * and of every magnitude in between, once per process.
   */
  private swigluMatchesGraph(s: DecodeLayerShape): boolean {
    if (this.swigluChecked !== undefined) return this.swigluChecked;
    const n = 4096;
    // Rows of n in and out: the smallest memory whose scratch takes them.
    const memory = WeightMemory.create([
      [n, 8],
      [8, n],
    ]);
    const rng = new Rng(4);
    const random = (): number => rng.next() - 0.5;
    const gate = Float32Array.from({ length: n }, (_, i) => random() * 2 ** ((i % 16) - 5) * 3);
    gate.set([0, -0, 18, -18, 17.999998, -18.000002, 1e-30, -1e-30]);
    const up = Float32Array.from({ length: n }, () => random() * 4);
    let ok = memory !== null;
    if (memory) {
      const checked = { ...s, hidden: n };
      const graph = this.graph('swiglu', checked, () => swigluGraphSpec(checked));
      const want = graph.run({ G: [gate, [1, n]], U: [up, [1, n]] }).M;
      const got = new Float32Array(n);
      memory.swiglu(gate, up, got);
      ok = sameBits(got, want);
    }
    this.swigluChecked = ok;
    return ok;
  }
}

const perBackend = new WeakMap<MatmulBackend, OrtMatvecDecodeGraphs>();

/** The graphs of the active backend, or null when it is not ONNX Runtime. */
export function matvecDecodeGraphs(): OrtMatvecDecodeGraphs | null {
  return forOrtBackend(perBackend, (threads) => new OrtMatvecDecodeGraphs(threads));
}
