/**
 * The decoder's forward pass as nodes of one ONNX graph (the kernels' own graphs from kernel-graphs.ts, inlined in
 * the order `LlamaModel.blocks` calls them), for the plain Llama block. The fused training step builds its graph on
 * it, and a forward without gradients, hooks or a cache runs it alone (`fusedHidden`): one native call instead of
 * ~15 per layer, none of whose results come back to JS but the final hidden states. Both compute what the per-kernel
 * path computes, to the bit.
 */
import { cachedRopeTables } from '../autograd/ops.ts';
import { GraphBuilder } from '../tensor/graph-builder.ts';
import {
  addGraph,
  attentionForwardGraph,
  gatherRowsGraph,
  gemmGraph,
  ropeGraph,
  ropeStepIds,
  rmsNormForwardGraph,
  swigluForwardGraph,
} from '../tensor/kernel-graphs.ts';
import { fusedKernels, getMatmulBackend } from '../tensor/matmul.ts';
import { OrtGraph, type Feed, type PreparedFeed } from '../tensor/ort-session.ts';
import { architectureOf, headDim, layerRope, layerWindow, type LlamaConfig } from './config.ts';
import type { LlamaModel } from './llama.ts';

/** Why the fused graphs cannot run `model` (null when they can): the backend, or a block they do not build. */
export function fusedGraphUnsupported(model: LlamaModel): string | null {
  const c = model.config;
  if (!fusedKernels() || getMatmulBackend().name !== 'onnxruntime') return 'the backend is not ONNX Runtime';
  if (model.adapters.size > 0) return 'the model has LoRA adapters';
  if (architectureOf(c) !== 'llama' || c.qkvBias) return `architecture ${architectureOf(c)}`;
  if (c.finalLogitSoftcap !== undefined || c.queryPreAttnScalar !== undefined) return 'Gemma-style scaling';
  for (let i = 0; i < c.nLayers; i++)
    if (layerWindow(c, i) !== Infinity) return `layer ${i} has a sliding window`;
  return null;
}

/** One block's weights and the values its backward pass reads. */
export interface BlockValues {
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
}

/** The forward nodes' names that a graph built on them reads. */
export interface ForwardValues {
  stepIds: string;
  /** int64 shapes: [b, t, -1], [b, t, heads, hd], [b, t, kv heads, hd], [b, kv heads, -1, t]. */
  shapes: { bt: string; q4: string; kv4: string; groupedProbs: string };
  embed: string;
  blocks: BlockValues[];
  /** The residual stream after the last block. */
  x: string;
  finalNorm: string;
  /** The final RMSNorm's outputs (Y, R). */
  nf: Record<string, string>;
  gemm: (a: string, w: string, transA: boolean, transB: boolean) => string;
  add: (a: string, b: string) => string;
}

/**
 * Adds the decoder's forward pass to `g`: inputs `ids` [n] (int32), `step_ids` [b, t] (int64: the time step of each
 * row), per layer `rope_cos.i`, `rope_sin.i`, `rope_neg_sin.i` [t, hd / 2], and every parameter by its name. With
 * `keepProbs` each attention also returns its probabilities, as it does when a gradient is needed.
 */
export function addForwardNodes(g: GraphBuilder, c: LlamaConfig, keepProbs: boolean): ForwardValues {
  const hd = headDim(c);
  const heads = { h: c.nHeads, hkv: c.nKvHeads, d: hd };
  const half = hd / 2;
  const param = (name: string, shape: number[]): string => g.input(name, shape);
  const gemm = (a: string, w: string, transA: boolean, transB: boolean): string =>
    g.inline(gemmGraph(transA, transB), { A: a, B: w }).Y;
  const add = (a: string, b: string): string => g.inline(addGraph(), { A: a, B: b }).Y;
  const rmsF = g.inline.bind(g, rmsNormForwardGraph(c.normEps));

  const ids = g.input('ids', ['n'], 'int32');
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
  const embed = param('model.embed_tokens.weight', [c.vocabSize, c.dim]);

  const blocks: BlockValues[] = [];
  let x = g.inline(gatherRowsGraph(), { W: embed, I: ids }).Y;
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}`;
    const w = {
      inNorm: param(`${p}.input_layernorm.weight`, [c.dim]),
      q: param(`${p}.self_attn.q_proj.weight`, [c.nHeads * hd, c.dim]),
      k: param(`${p}.self_attn.k_proj.weight`, [c.nKvHeads * hd, c.dim]),
      v: param(`${p}.self_attn.v_proj.weight`, [c.nKvHeads * hd, c.dim]),
      o: param(`${p}.self_attn.o_proj.weight`, [c.dim, c.nHeads * hd]),
      postNorm: param(`${p}.post_attention_layernorm.weight`, [c.dim]),
      gate: param(`${p}.mlp.gate_proj.weight`, [c.hiddenDim, c.dim]),
      up: param(`${p}.mlp.up_proj.weight`, [c.hiddenDim, c.dim]),
      down: param(`${p}.mlp.down_proj.weight`, [c.dim, c.hiddenDim]),
    };
    const rope = {
      cos: g.input(`rope_cos.${i}`, ['t', half]),
      sin: g.input(`rope_sin.${i}`, ['t', half]),
      negSin: g.input(`rope_neg_sin.${i}`, ['t', half]),
    };
    const n1 = rmsF({ X: x, W: w.inNorm });
    // The rotary embedding of a projection [n, count * hd], as [b, t, count * hd].
    const rotated = (weight: string, count: number): string =>
      g.inline(ropeGraph(count), {
        X: g.reshape(gemm(n1.Y, weight, false, true), shapes.bt),
        C: rope.cos,
        S: rope.sin,
        P: stepIds,
      }).Y;
    const q = rotated(w.q, c.nHeads);
    const k = rotated(w.k, c.nKvHeads);
    const v = g.reshape(gemm(n1.Y, w.v, false, true), shapes.bt);
    const att = g.inline(attentionForwardGraph(heads, keepProbs), { Q: q, K: k, V: v });
    const att2 = g.reshape(att.Y, [-1, c.nHeads * hd]);
    const xm = add(x, gemm(att2, w.o, false, true));
    const n2 = rmsF({ X: xm, W: w.postNorm });
    const gate = gemm(n2.Y, w.gate, false, true);
    const up = gemm(n2.Y, w.up, false, true);
    const act = g.inline(swigluForwardGraph(), { G: gate, U: up }).Y;
    blocks.push({ x, n1, q, k, v, att, att2, xm, n2, gate, up, act, w, rope });
    x = add(xm, gemm(act, w.down, false, true));
  }
  const finalNorm = param('model.norm.weight', [c.dim]);
  const nf = rmsF({ X: x, W: finalNorm });
  return { stepIds, shapes, embed, blocks, x, finalNorm, nf, gemm, add };
}

const ropeCache = new WeakMap<LlamaConfig, (number | Float64Array)[]>();

/** The forward nodes' feeds for ids [b, t] at positions 0..t-1: ids, step ids, RoPE tables, the parameters. */
export function forwardFeeds(
  model: LlamaModel,
  ids: Int32Array,
  b: number,
  t: number,
): Record<string, Feed | PreparedFeed> {
  const c = model.config;
  let ropes = ropeCache.get(c);
  if (!ropes) ropeCache.set(c, (ropes = Array.from({ length: c.nLayers }, (_, i) => layerRope(c, i))));
  const positions = Int32Array.from({ length: t }, (_, i) => i);
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
  return feeds;
}

const forwardGraphs = new Map<string, OrtGraph>();

/**
 * The final-normed hidden states [b * t, dim] of ids [b, t] (positions from 0), through one fused graph; null where
 * the fused graphs do not serve the model (the caller then takes the per-kernel path) or PSM_FUSED_FORWARD=0.
 */
export function fusedHidden(model: LlamaModel, ids: Int32Array, b: number): Float32Array | null {
  if (process.env.PSM_FUSED_FORWARD === '0' || fusedGraphUnsupported(model) !== null) return null;
  const c = model.config;
  const t = ids.length / b;
  if (!(Number.isInteger(t) && t >= 1 && t <= c.maxSeqLen)) return null;
  for (const id of ids) if (!(id >= 0 && id < c.vocabSize)) return null;
  const threads = getMatmulBackend().threads;
  const key = JSON.stringify([c, threads]);
  let graph = forwardGraphs.get(key);
  if (!graph) {
    const g = new GraphBuilder();
    const f = addForwardNodes(g, c, false);
    g.output('hidden', f.nf.Y, ['n', c.dim]);
    // No graph optimisation: a fusion across two kernels' nodes could round a sum differently.
    graph = new OrtGraph(g.build('forward', 'disabled'), threads);
    if (forwardGraphs.size >= 4) forwardGraphs.clear();
    forwardGraphs.set(key, graph);
  }
  return graph.run(forwardFeeds(model, ids, b, t)).hidden;
}
