/**
 * The decoder's forward pass as nodes of one ONNX graph (the kernels' own graphs from kernel-graphs.ts, inlined in
 * the order `LlamaModel.blocks` calls them), for the plain Llama block. The fused training step builds its graph on
 * it, and a forward without gradients runs it alone: a plain or stopped pass (`fusedHidden`) and a scoring batch's
 * prompts and branches (`fusedPrompts`, `fusedBranches`). Hooks on the residual stream between blocks split a pass
 * into spans, one graph each, with the hooks run between them. One native call per span instead of ~15 per layer,
 * and none of the intermediate results come back to JS; every path computes what the per-kernel path computes, to
 * the bit.
 */
import { cachedRopeTables } from '../autograd/ops.ts';
import { GraphBuilder } from '../tensor/graph-builder.ts';
import {
  addGraph,
  attentionForwardGraph,
  gatherRowsGraph,
  gemmGraph,
  maskedAttentionGraph,
  ropeGraph,
  ropeStepIds,
  rmsNormForwardGraph,
  swigluForwardGraph,
} from '../tensor/kernel-graphs.ts';
import { fusedKernels, getMatmulBackend } from '../tensor/matmul.ts';
import { OrtGraph, type Feed, type PreparedFeed } from '../tensor/ort-session.ts';
import { Tensor } from '../autograd/tensor.ts';
import { hookBoundary, type HookSet } from './hooks.ts';
import {
  architectureOf,
  headDim,
  layerRope,
  layerWindow,
  llamaParamShapes,
  projectionWeightName,
  type LlamaConfig,
} from './config.ts';
import type { LlamaModel } from './llama.ts';

/** Why the fused graphs cannot run `model` (null when they can): the backend, or a block they do not build. */
export function fusedGraphUnsupported(model: LlamaModel, opts: { adapters?: boolean } = {}): string | null {
  const c = model.config;
  if (!fusedKernels() || getMatmulBackend().name !== 'onnxruntime') return 'the backend is not ONNX Runtime';
  // The training step builds adapters (and says which); the forward graphs do not.
  if (model.adapters.size > 0 && !opts.adapters) return 'the model has LoRA adapters';
  if (architectureOf(c) !== 'llama' || c.qkvBias) return `architecture ${architectureOf(c)}`;
  if (c.finalLogitSoftcap !== undefined || c.queryPreAttnScalar !== undefined) return 'Gemma-style scaling';
  for (let i = 0; i < c.nLayers; i++)
    if (layerWindow(c, i) !== Infinity) return `layer ${i} has a sliding window`;
  return null;
}

/** One block's weights and the values its backward pass reads. */
export interface BlockValues {
  layer: number;
  /** The residual stream entering the block. */
  x: string;
  n1: Record<string, string>;
  q: string;
  k: string;
  v: string;
  att: Record<string, string>;
  att2: string;
  xm: string;
  n2: Record<string, string>;
  gate: string;
  up: string;
  act: string;
  w: Record<string, string>;
  rope: { cos: string; sin: string; negSin: string };
  /** Each projection's adapter and its low-rank value x Aᵀ, when the model has adapters. */
  lora: Record<Projection, LoraValues> | null;
}

/** A block's projections, by their short names. */
export const PROJECTIONS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** The weight name of a projection of block `layer`. */
export function projectionWeight(layer: number, name: Projection): string {
  return projectionWeightName(layer, `${name}_proj`);
}

/** An adapter's inputs A [r, in] and B [out, r], and x Aᵀ. */
export interface LoraValues {
  a: string;
  b: string;
  low: string;
}

const paramShapes = new WeakMap<LlamaConfig, Map<string, number[]>>();

/**
 * The shape of a parameter of config `c` (llamaParamShapes), or of an adapter of rank `loraRank` on one
 * (`<weight>.lora_A` [r, in], `<weight>.lora_B` [out, r]).
 */
export function paramShape(c: LlamaConfig, name: string, loraRank: number | null = null): number[] {
  let shapes = paramShapes.get(c);
  if (!shapes) paramShapes.set(c, (shapes = new Map(llamaParamShapes(c))));
  const adapter = /^(.*)\.lora_([AB])$/.exec(name);
  const shape = shapes.get(adapter ? adapter[1] : name);
  if (!shape || (adapter && loraRank === null)) throw new Error(`fused graphs: no parameter ${name}`);
  if (!adapter) return shape;
  return adapter[2] === 'A' ? [loraRank!, shape[1]] : [shape[0], loraRank!];
}

/**
 * A stretch of the pass: blocks [from, to), from the token ids (the embedding lookup first) or from the residual
 * stream entering block `from` (graph input `x_in` [n, dim]), and with `final` the final RMSNorm after them. Graphs
 * of consecutive spans, with JS hooks between them, compute what the whole pass computes with those hooks.
 */
export interface BlockSpan {
  from: number;
  to: number;
  fromIds: boolean;
  final: boolean;
}

/** The whole pass. */
export function wholePass(c: LlamaConfig): BlockSpan {
  return { from: 0, to: c.nLayers, fromIds: true, final: true };
}

/** The forward nodes' names that a graph built on them reads. */
export interface ForwardValues {
  stepIds: string;
  /** int64 shapes: [b, t, -1], [b, t, heads, hd], [b, t, kv heads, hd], [b, kv heads, -1, t]. */
  shapes: { bt: string; q4: string; kv4: string; groupedProbs: string };
  /** The embedding weight, an input when the span starts at the ids. */
  embed: string | null;
  /** The span's blocks, from its first. */
  blocks: BlockValues[];
  /** The residual stream after the span's last block. */
  x: string;
  /** The final RMSNorm's weight and outputs (Y, R), when the span ends with it. */
  final: { weight: string; nf: Record<string, string> } | null;
  gemm: (a: string, w: string, transA: boolean, transB: boolean) => string;
  add: (a: string, b: string) => string;
}

/**
 * How a pass attends: causally (training, plain forwards), or under an additive mask input `mask` [b, 1, t, tp + t]
 * as a scoring batch's prompts do (each layer's present keys and values out: `present_k.i`, `present_v.i`
 * [b, hkv, t, hd]) and its branches do (each layer's past keys and values in: `past_k.i`, `past_v.i`
 * [b, hkv, tp, hd]).
 */
export type AttentionMode = 'causal' | 'prompts' | 'branches';

export interface ForwardNodeOptions {
  /** Each causal attention also returns its probabilities, as it does when a gradient is needed. */
  keepProbs?: boolean;
  /** Default: the whole pass. */
  span?: BlockSpan;
  /** Every projection has an adapter of this rank and scale 1 (inputs `<weight>.lora_A`, `<weight>.lora_B`). */
  loraRank?: number | null;
  /** Default: causal. */
  attention?: AttentionMode;
}

/**
 * Adds the forward pass of a span of blocks to `g`: inputs `ids` [n] (int32) or `x_in` [n, dim], `step_ids` [b, t]
 * (int64: the time step of each row), per layer of the span `rope_cos.i`, `rope_sin.i`, `rope_neg_sin.i`
 * [t, hd / 2] (the rotary tables of each step's position), and each parameter it reads by its name.
 */
export function addForwardNodes(
  g: GraphBuilder,
  c: LlamaConfig,
  opts: ForwardNodeOptions = {},
): ForwardValues {
  const { keepProbs = false, span = wholePass(c), loraRank = null, attention = 'causal' } = opts;
  const hd = headDim(c);
  const heads = { h: c.nHeads, hkv: c.nKvHeads, d: hd };
  const half = hd / 2;
  const param = (name: string): string => g.input(name, paramShape(c, name, loraRank));
  const gemm = (a: string, w: string, transA: boolean, transB: boolean): string =>
    g.inline(gemmGraph(transA, transB), { A: a, B: w }).Y;
  const add = (a: string, b: string): string => g.inline(addGraph(), { A: a, B: b }).Y;
  const rmsF = g.inline.bind(g, rmsNormForwardGraph(c.normEps));

  const stepIds = g.input('step_ids', ['b', 't'], 'int64');
  // Shapes of the batch, from the step ids [b, t]: a graph serves every batch size and sequence length.
  const [batchShape] = g.node('Shape', [stepIds]);
  const concat = (tail: number[]): string => g.node('Concat', [batchShape, g.int64(tail)], { axis: 0 })[0];
  const dim = (i: number): string => g.node('Gather', [batchShape, g.int64([i])], { axis: 0 })[0];
  const shapes = {
    bt: concat([-1]),
    q4: concat([c.nHeads, hd]),
    kv4: concat([c.nKvHeads, hd]),
    // Attention probabilities [b, h, t, t] as [b, hkv, rep * t, t].
    groupedProbs: g.node('Concat', [dim(0), g.int64([c.nKvHeads, -1]), dim(1)], { axis: 0 })[0],
  };
  const embed = span.fromIds ? param('model.embed_tokens.weight') : null;

  const mask = attention === 'causal' ? null : g.input('mask', ['b', 1, 't', 'tt']);
  const blocks: BlockValues[] = [];
  let x = embed
    ? g.inline(gatherRowsGraph(), { W: embed, I: g.input('ids', ['n'], 'int32') }).Y
    : g.input('x_in', ['n', c.dim]);
  for (let i = span.from; i < span.to; i++) {
    const p = `model.layers.${i}`;
    const w: Record<string, string> = {
      inNorm: param(`${p}.input_layernorm.weight`),
      postNorm: param(`${p}.post_attention_layernorm.weight`),
    };
    for (const name of PROJECTIONS) w[name] = param(projectionWeight(i, name));
    const rope = {
      cos: g.input(`rope_cos.${i}`, ['t', half]),
      sin: g.input(`rope_sin.${i}`, ['t', half]),
      negSin: g.input(`rope_neg_sin.${i}`, ['t', half]),
    };
    const n1 = rmsF({ X: x, W: w.inNorm });
    const lora: Partial<Record<Projection, LoraValues>> = {};
    // A projection x Wᵀ, plus (x Aᵀ) Bᵀ where the weight has an adapter, as LlamaModel.proj adds them.
    const proj = (input: string, name: Projection): string => {
      const y = gemm(input, w[name], false, true);
      if (loraRank === null) return y;
      const weight = projectionWeight(i, name);
      const a = param(`${weight}.lora_A`);
      const b = param(`${weight}.lora_B`);
      const low = gemm(input, a, false, true);
      lora[name] = { a, b, low };
      return add(y, gemm(low, b, false, true));
    };
    // The rotary embedding of a projection [n, count * hd], as [b, t, count * hd].
    const rotated = (name: Projection, count: number): string =>
      g.inline(ropeGraph(count), {
        X: g.reshape(proj(n1.Y, name), shapes.bt),
        C: rope.cos,
        S: rope.sin,
        P: stepIds,
      }).Y;
    const q = rotated('q', c.nHeads);
    const k = rotated('k', c.nKvHeads);
    const v = g.reshape(proj(n1.Y, 'v'), shapes.bt);
    let att: Record<string, string>;
    if (!mask) att = g.inline(attentionForwardGraph(heads, keepProbs), { Q: q, K: k, V: v });
    else {
      const kvShape = ['b', c.nKvHeads, attention === 'branches' ? 'tp' : 't', hd];
      const past: Record<string, string> =
        attention === 'branches'
          ? { PK: g.input(`past_k.${i}`, kvShape), PV: g.input(`past_v.${i}`, kvShape) }
          : {};
      // The per-kernel path's op: present keys and values out whenever past ones come in.
      att = g.inline(maskedAttentionGraph(heads, attention === 'branches', true), {
        Q: q,
        K: k,
        V: v,
        M: mask,
        ...past,
      });
      if (attention === 'prompts') {
        g.output(`present_k.${i}`, att.K2, kvShape);
        g.output(`present_v.${i}`, att.V2, kvShape);
      }
    }
    const att2 = g.reshape(att.Y, [-1, c.nHeads * hd]);
    const xm = add(x, proj(att2, 'o'));
    const n2 = rmsF({ X: xm, W: w.postNorm });
    const gate = proj(n2.Y, 'gate');
    const up = proj(n2.Y, 'up');
    const act = g.inline(swigluForwardGraph(), { G: gate, U: up }).Y;
    const down = proj(act, 'down');
    blocks.push({
      layer: i,
      x,
      n1,
      q,
      k,
      v,
      att,
      att2,
      xm,
      n2,
      gate,
      up,
      act,
      w,
      rope,
      lora: loraRank === null ? null : (lora as Record<Projection, LoraValues>),
    });
    x = add(xm, down);
  }
  let final: ForwardValues['final'] = null;
  if (span.final) {
    const weight = param('model.norm.weight');
    final = { weight, nf: rmsF({ X: x, W: weight }) };
  }
  return { stepIds, shapes, embed, blocks, x, final, gemm, add };
}

const ropeCache = new WeakMap<LlamaConfig, (number | Float64Array)[]>();

/**
 * The forward nodes' feeds for ids [b, t], step i at `positions[i]` (default 0..t-1): ids, step ids, RoPE tables,
 * the parameters and the adapters.
 */
export function forwardFeeds(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  t: number,
  positions: Int32Array = Int32Array.from({ length: t }, (_, i) => i),
): Record<string, Feed | PreparedFeed> {
  const c = model.config;
  let ropes = ropeCache.get(c);
  if (!ropes) ropeCache.set(c, (ropes = Array.from({ length: c.nLayers }, (_, i) => layerRope(c, i))));
  const half = headDim(c) / 2;
  const feeds: Record<string, Feed | PreparedFeed> = {
    ids: [ids, [b * t]],
    step_ids: [ropeStepIds(b, t), [b, t]],
  };
  for (let i = 0; i < c.nLayers; i++) {
    const tables = cachedRopeTables(positions, headDim(c), ropes[i]);
    feeds[`rope_cos.${i}`] = [tables.cos, [t, half]];
    feeds[`rope_sin.${i}`] = [tables.sin, [t, half]];
    feeds[`rope_neg_sin.${i}`] = [tables.negSin, [t, half]];
  }
  for (const [name, p] of model.params) feeds[name] = [p.data, p.shape as number[]];
  for (const [name, { a, b }] of model.adapters) {
    feeds[`${name}.lora_A`] = [a.data, a.shape as number[]];
    feeds[`${name}.lora_B`] = [b.data, b.shape as number[]];
  }
  return feeds;
}

/** A built graph and its input names (a span's graph reads only some of the pass's feeds). */
export interface FusedGraph {
  graph: OrtGraph;
  inputs: ReadonlySet<string>;
}

/** Runs `s` on `extra` and, for its other inputs, the pass's `feeds`. */
export function runFused(
  s: FusedGraph,
  feeds: Record<string, Feed | PreparedFeed>,
  extra: Record<string, Feed> = {},
): Record<string, Float32Array> {
  const f: Record<string, Feed | PreparedFeed> = { ...extra };
  for (const name of s.inputs) if (!(name in f)) f[name] = feeds[name];
  return s.graph.run(f);
}

/** Why the fused graphs cannot run under `hooks` (null when they can): a hook that does not act between blocks. */
export function fusedHooksUnsupported(hooks: HookSet | undefined, nLayers: number): string | null {
  for (const name of hooks?.names() ?? [])
    if (hookBoundary(name, nLayers) === null) return `hook ${name} acts inside a block`;
  return null;
}

/**
 * The spans of a pass through blocks [start, end), with the final norm after them when `final`, split where hooks
 * act (hooks after the pass's last block of a pass without the final norm run after its last span): without hooks,
 * one span. A pass from block 0 starts at the ids unless hooks act on the embeddings; one from a later block
 * (resumed) at the residual stream entering it.
 */
export function passSpans(
  c: LlamaConfig,
  hooks: HookSet | undefined,
  end: number,
  final: boolean,
  start = 0,
): BlockSpan[] {
  const boundaries = new Set((hooks?.names() ?? []).map((name) => hookBoundary(name, c.nLayers)!));
  const inner = [...boundaries].filter((k) => k > start && (k < end || final)).sort((a, b) => a - b);
  const starts = [start, ...inner];
  return starts.map((from, i) => ({
    from,
    to: starts[i + 1] ?? end,
    fromIds: from === 0 && !boundaries.has(0),
    final: final && i === starts.length - 1,
  }));
}

/** The residual stream at a boundary as the hooks' autograd input (`leaf`), and what the hooks made of it. */
export interface HookedResidual {
  leaf: Tensor;
  out: Tensor;
}

/** Where the hooks of a pass of ids [batch, seqLen] act, as the per-kernel pass tells them. */
export interface PassShape {
  batch: number;
  seqLen: number;
  positions: Int32Array;
  /** A scoring batch's left padding per sequence. */
  padding?: Int32Array;
}

/**
 * Runs the hooks at boundary k on `data` [b * t, dim], in the order the per-kernel pass applies them; `leaf`
 * requires a gradient when the caller will carry one back through them.
 */
function runBoundaryHooks(
  hooks: HookSet | undefined,
  c: LlamaConfig,
  k: number,
  data: Float32Array,
  shape: PassShape,
  requiresGrad: boolean,
): HookedResidual {
  const leaf = new Tensor(data, [shape.batch, shape.seqLen, c.dim], requiresGrad, 'residual');
  let out = leaf;
  if (!hooks) return { leaf, out };
  const names = [k === 0 ? 'embed' : `blocks.${k - 1}.hook_resid_post`];
  if (k < c.nLayers) names.push(`blocks.${k}.hook_resid_pre`);
  for (const name of names) out = hooks.apply(name, out, shape);
  return { leaf, out };
}

/** The embedding rows of `ids`, as the lookup copies them. */
function embeddingRows(model: LlamaModel, ids: Int32Array): Float32Array {
  const dim = model.config.dim;
  const w = model.param('model.embed_tokens.weight').data;
  const out = new Float32Array(ids.length * dim);
  for (let i = 0; i < ids.length; i++) out.set(w.subarray(ids[i] * dim, (ids[i] + 1) * dim), i * dim);
  return out;
}

/**
 * Runs the first `count` spans' forward graphs (attending as `attention` says), each from its input through the
 * hooks at the boundary after it (the first from the embedding rows or `start`, through the hooks at its own),
 * handing each run's outputs to `onOutputs`. Returns the spans' inputs (null for
 * one that starts at the ids) and, last, the output of span count - 1.
 */
export function forwardSpans(
  model: LlamaModel,
  spans: readonly BlockSpan[],
  count: number,
  hooks: HookSet | undefined,
  feeds: Record<string, Feed | PreparedFeed>,
  shape: PassShape,
  opts: {
    requiresGrad: boolean;
    attention?: AttentionMode;
    onOutputs?: (outputs: Record<string, Float32Array>) => void;
    /** The residual stream entering the first span, before the hooks there: a resumed pass's. */
    start?: Float32Array;
  },
): (HookedResidual | null)[] {
  const c = model.config;
  const ids = feeds.ids as Feed;
  const threads = getMatmulBackend().threads;
  const { requiresGrad } = opts;
  const first = spans[0];
  const hooked: (HookedResidual | null)[] = [
    first.fromIds
      ? null
      : runBoundaryHooks(
          hooks,
          c,
          first.from,
          opts.start ?? embeddingRows(model, ids[0] as Int32Array),
          shape,
          requiresGrad,
        ),
  ];
  for (let i = 0; i < count; i++) {
    const input = hooked[i];
    const outputs = runFused(
      spanForwardGraph(c, spans[i], threads, opts.attention),
      feeds,
      input ? { x_in: [input.out.data, [input.out.size / c.dim, c.dim]] } : {},
    );
    opts.onOutputs?.(outputs);
    // No hook acts after the final norm (fusedHooksUnsupported).
    const after = spans[i].final ? undefined : hooks;
    hooked.push(runBoundaryHooks(after, c, spans[i].to, outputs.y, shape, requiresGrad && !!after));
  }
  return hooked;
}

/** Built forward graphs, by config, span, attention and thread count. */
const forwardGraphs = new Map<string, FusedGraph>();

/**
 * A span's forward graph: `y`, the residual stream it leaves, or the final norm's output for the span that ends
 * with it (and a prompts pass's present keys and values).
 */
export function spanForwardGraph(
  c: LlamaConfig,
  span: BlockSpan,
  threads: number,
  attention: AttentionMode = 'causal',
): FusedGraph {
  const key = JSON.stringify([c, span, attention, threads]);
  let s = forwardGraphs.get(key);
  if (!s) {
    const g = new GraphBuilder();
    const f = addForwardNodes(g, c, { span, attention });
    g.output('y', f.final ? f.final.nf.Y : f.x, ['n', c.dim]);
    // No graph optimisation: a fusion across two kernels' nodes could round a sum differently.
    const spec = g.build('forward', 'disabled');
    s = { graph: new OrtGraph(spec, threads), inputs: new Set(spec.inputs.map((v) => v.name)) };
    // Models run one at a time, a few spans each.
    if (forwardGraphs.size >= 32) forwardGraphs.clear();
    forwardGraphs.set(key, s);
  }
  return s;
}

/** The time steps of ids [b, t] when the fused graphs can run the pass (see fusedHidden), else null. */
function fusedSteps(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  hooks: HookSet | undefined,
): number | null {
  if (process.env.PSM_FUSED_FORWARD === '0' || fusedGraphUnsupported(model) !== null) return null;
  const c = model.config;
  if (fusedHooksUnsupported(hooks, c.nLayers) !== null) return null;
  const t = ids.length / b;
  if (!(Number.isInteger(t) && t >= 1 && t <= c.maxSeqLen)) return null;
  for (const id of ids) if (!(id >= 0 && id < c.vocabSize)) return null;
  return t;
}

/**
 * The final-normed hidden states [b * t, dim] of ids [b, t] (positions from 0), or with `stopAfterLayer` the
 * residual stream after that block, through the fused graphs: one, or one per span between the blocks where
 * `hooks` act, the hooks run between them. Null where the fused graphs do not serve the model or the hooks (the
 * caller then takes the per-kernel path) or PSM_FUSED_FORWARD=0.
 */
export function fusedHidden(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  opts: { hooks?: HookSet; stopAfterLayer?: number } = {},
): Float32Array | null {
  const t = fusedSteps(model, ids, b, opts.hooks);
  if (t === null) return null;
  const c = model.config;
  const stop = opts.stopAfterLayer;
  const spans = passSpans(c, opts.hooks, stop === undefined ? c.nLayers : stop + 1, stop === undefined);
  const shape = { batch: b, seqLen: t, positions: Int32Array.from({ length: t }, (_, i) => i) };
  const feeds = forwardFeeds(model, ids, b, t);
  return forwardSpans(model, spans, spans.length, opts.hooks, feeds, shape, { requiresGrad: false }).at(-1)!
    .out.data;
}

/** Where a resumed pass starts: the residual stream [b * t, dim] after block `afterLayer`, before its hooks. */
export interface ResumePoint {
  afterLayer: number;
  hidden: Float32Array;
}

/**
 * A scoring batch's prompts, ids [b, t] left-padded as `padding` says, under `mask` (LlamaModel.forwardPrompts's):
 * the final-normed hidden states [b * t, dim] and each layer's keys and values [b, hkv, t, hd] (with `resume`,
 * of the layers after its block only), through the fused graphs as fusedHidden runs them. Null where those do not
 * serve the pass.
 */
export function fusedPrompts(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  opts: { padding: Int32Array; mask: Float32Array; hooks?: HookSet; resume?: ResumePoint },
): { hidden: Float32Array; keys: Float32Array[]; values: Float32Array[] } | null {
  const t = fusedSteps(model, ids, b, opts.hooks);
  if (t === null) return null;
  const c = model.config;
  const positions = Int32Array.from({ length: t }, (_, i) => i);
  const feeds = forwardFeeds(model, ids, b, t, positions);
  feeds.mask = [opts.mask, [b, 1, t, t]];
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  const hidden = scoringPass(
    model,
    feeds,
    { batch: b, seqLen: t, positions, padding: opts.padding },
    {
      ...opts,
      attention: 'prompts',
      onOutputs: (out) => {
        for (let i = 0; i < c.nLayers; i++)
          if (`present_k.${i}` in out) [keys[i], values[i]] = [out[`present_k.${i}`], out[`present_v.${i}`]];
      },
    },
  );
  return { hidden, keys, values };
}

/** A scoring pass (prompts or branches) through every span from the ids or `resume`: the final-normed hidden states. */
function scoringPass(
  model: LlamaModel,
  feeds: Record<string, Feed | PreparedFeed>,
  shape: PassShape,
  opts: {
    hooks?: HookSet;
    resume?: ResumePoint;
    attention: AttentionMode;
    onOutputs?: (outputs: Record<string, Float32Array>) => void;
  },
): Float32Array {
  const { hooks, resume } = opts;
  const spans = passSpans(
    model.config,
    hooks,
    model.config.nLayers,
    true,
    resume ? resume.afterLayer + 1 : 0,
  );
  const hooked = forwardSpans(model, spans, spans.length, hooks, feeds, shape, {
    requiresGrad: false,
    attention: opts.attention,
    start: resume?.hidden,
    onOutputs: opts.onOutputs,
  });
  return hooked.at(-1)!.out.data;
}

/**
 * Continuations of a scoring batch's prompts, ids [b, t] at `positions`, attending to each layer's cached keys and
 * values `past` ([b, hkv, tp, hd], tp > 0) under `mask` (LlamaModel.forwardBranches's), from the ids or `resume`:
 * the final-normed hidden states [b * t, dim], through the fused graphs as fusedHidden runs them. Null where those
 * do not serve the pass.
 */
export function fusedBranches(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  opts: {
    positions: Int32Array;
    padding: Int32Array;
    mask: Float32Array;
    past: {
      keys: readonly (Float32Array | null)[];
      values: readonly (Float32Array | null)[];
      length: number;
    };
    hooks?: HookSet;
    resume?: ResumePoint;
  },
): Float32Array | null {
  const t = fusedSteps(model, ids, b, opts.hooks);
  const c = model.config;
  const { past } = opts;
  const from = opts.resume ? opts.resume.afterLayer + 1 : 0;
  if (t === null || !(past.length > 0)) return null;
  const feeds = forwardFeeds(model, ids, b, t, opts.positions);
  feeds.mask = [opts.mask, [b, 1, t, past.length + t]];
  const kv = [b, c.nKvHeads, past.length, headDim(c)];
  for (let i = from; i < c.nLayers; i++) {
    const [k, v] = [past.keys[i], past.values[i]];
    // A resumed prompt pass left the early layers out: the per-kernel path reports it.
    if (!k || !v) return null;
    feeds[`past_k.${i}`] = [k, kv];
    feeds[`past_v.${i}`] = [v, kv];
  }
  const shape = { batch: b, seqLen: t, positions: opts.positions, padding: opts.padding };
  return scoringPass(model, feeds, shape, { ...opts, attention: 'branches' });
}
