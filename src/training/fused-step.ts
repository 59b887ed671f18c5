/**
 * A training step's forward and backward pass as one ONNX Runtime graph. The autograd path calls one small
 * session per kernel (about 25 per layer), and every result comes back as a fresh JS array: on these machines the
 * copies, page faults and garbage collection of those arrays cost more CPU than the kernels' arithmetic. Here
 * the same kernel graphs (kernel-graphs.ts) are inlined, node for node, into one graph per model, in the
 * order autograd runs them; intermediate values stay in ORT's arena, and only the loss's target probabilities,
 * the weight gradients and the embedding rows' gradient come back. The numbers are the autograd path's to the
 * bit (test/training/fused-step.test.ts): the same ops on the same inputs, gradients summed in the same order.
 *
 * It serves the plain Llama block (no biases, q/k norms, soft-capping or sliding windows) with the embedding
 * trained: pre-training, full fine-tunes and embedding-row fine-tunes (frozen weights get no gradient, as in
 * autograd), also under hooks on the residual stream between blocks (preventative steering, concept ablation),
 * which split the pass into one graph per span between them; and LoRA fine-tunes with adapters on every
 * projection. Anything else (a hook inside a block, adapters on some projections, say), or a batch that needs the
 * float64 fallback of cross-entropy (a target probability under 1e-30), takes the autograd path.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { headDim, type LlamaConfig } from '../model/config.ts';
import {
  addForwardNodes,
  forwardFeeds,
  forwardSpans,
  fusedGraphUnsupported,
  fusedHooksUnsupported,
  paramShape,
  passSpans,
  projectionWeight,
  PROJECTIONS,
  runFused,
  type BlockSpan,
  type ForwardValues,
  type FusedGraph,
  type HookedResidual,
  type Projection,
} from '../model/fused-forward.ts';
import type { Tensor } from '../autograd/tensor.ts';
import type { HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import { GraphBuilder } from '../tensor/graph-builder.ts';
import {
  attentionBackwardGraph,
  gatherRowsGraph,
  ropeGraph,
  rmsNormBackwardGraph,
  softmaxScaledGraph,
  swigluBackwardGraph,
} from '../tensor/kernel-graphs.ts';
import { getMatmulBackend } from '../tensor/matmul.ts';
import { OrtGraph, type Feed, type GraphSpec } from '../tensor/ort-session.ts';
import type { Batch } from './data.ts';

/** Why `model` cannot train through the fused step (null when it can). */
export function fusedStepUnsupported(model: LlamaModel, hooks?: HookSet): string | null {
  if (process.env.PSM_FUSED_STEP === '0') return 'PSM_FUSED_STEP=0';
  const graph = fusedGraphUnsupported(model, { adapters: true });
  if (graph) return graph;
  const hooked = fusedHooksUnsupported(hooks, model.config.nLayers);
  if (hooked) return hooked;
  if (model.adapters.size > 0) return loraUnsupported(model, hooks);
  // Frozen weights are fine (no gradient is computed for them), but the embedding must train: otherwise the
  // activations before the first trained weight need no gradient, and autograd's backward would stop there.
  if (!model.param('model.embed_tokens.weight').requiresGrad) return 'the embedding is frozen';
  return null;
}

/**
 * Why the fused step cannot train `model`'s adapters (null when it can). It builds the case the pipeline trains
 * (lora<r>): adapters of one rank and scale 1 on all seven projections of every block, nothing else trained, no
 * hooks. Then the gradient stops at the first block's input norm, as autograd's does.
 */
function loraUnsupported(model: LlamaModel, hooks: HookSet | undefined): string | null {
  if ((hooks?.names().length ?? 0) > 0) return 'hooks on a model with LoRA adapters';
  if (loraRankOf(model) === null)
    return 'LoRA adapters other than one rank and scale 1 on every projection of every block';
  for (const [name, p] of model.params) if (p.requiresGrad) return `LoRA with ${name} trained as well`;
  return null;
}

/** The adapters' rank when every projection of every block has one of that rank and scale 1, else null. */
function loraRankOf(model: LlamaModel): number | null {
  const c = model.config;
  if (model.adapters.size !== PROJECTIONS.length * c.nLayers) return null;
  const rank = [...model.adapters.values()][0].a.shape[0];
  for (let i = 0; i < c.nLayers; i++)
    for (const name of PROJECTIONS) {
      const a = model.adapters.get(projectionWeight(i, name));
      if (!a || a.scale !== 1 || a.a.shape[0] !== rank || !a.a.requiresGrad || !a.b.requiresGrad) return null;
    }
  return rank;
}

/** The tensors that train, by the names their gradients have in the graph (adapters: `<weight>.lora_A`, `.lora_B`). */
function trainedTensors(model: LlamaModel): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, p] of model.params) if (p.requiresGrad) out.set(name, p);
  for (const [name, a] of model.adapters) {
    if (a.a.requiresGrad) out.set(`${name}.lora_A`, a.a);
    if (a.b.requiresGrad) out.set(`${name}.lora_B`, a.b);
  }
  return out;
}

interface StepGraph extends FusedGraph {
  /** Parameter names whose gradient is a graph output. */
  gradients: string[];
}

/** Built graphs by config, span, row selection, trained set and thread count. */
const MAX_GRAPHS = 32;
let graphs = new Map<string, StepGraph>();
/** While {@link profileFusedSteps} runs: where ORT writes its traces. */
let profiling: { prefix: string } | null = null;

/** Gradient output name of a parameter. */
function gradName(param: string): string {
  return `grad:${param}`;
}

/**
 * The step's graph for config `c` over `span`, for any batch size and sequence length, with gradient outputs for the
 * `trained` parameters and `input_grad`, the gradient of the span's input (the embedding rows it looked up, or
 * `x_in`). The span that ends with the final norm computes the loss: with `selectRows`, as autograd's batchLoss does
 * for a batch with row weights, only the rows given in `rows` reach the unembedding. Any other span starts its
 * backward from `dx_out`, the gradient of the residual stream it leaves, and runs its forward again first (the
 * values its backward reads are not kept between graphs).
 */
function buildStepGraph(
  c: LlamaConfig,
  selectRows: boolean,
  trained: ReadonlySet<string>,
  span: BlockSpan,
  loraRank: number | null,
): GraphSpec {
  const g = new GraphBuilder();
  const f = addForwardNodes(g, c, { keepProbs: true, span, loraRank });
  // Gradients of the trained parameters only (of the parameter's own shape): autograd computes none for a frozen one.
  const grad: GradOutput = (name, value) => {
    if (trained.has(name)) g.output(gradName(name), value(), paramShape(c, name, loraRank));
  };
  const dx = f.final ? addLossBackward(g, c, f, f.final, selectRows, grad) : g.input('dx_out', ['n', c.dim]);
  // With adapters only the adapters train: the embedding rows need no gradient, and autograd computes none.
  const inputGrad = addBlocksBackward(g, c, f, dx, grad, loraRank === null);
  if (inputGrad) g.output('input_grad', inputGrad, ['n', c.dim]);
  // No graph optimisation: a fusion across two kernels' nodes could round a sum differently from autograd.
  return g.build('training_step', 'disabled');
}

type GradOutput = (name: string, value: () => string) => void;

/**
 * The unembedding, cross-entropy and the final norm's backward: returns the gradient of the residual stream after
 * the last block.
 */
function addLossBackward(
  g: GraphBuilder,
  c: LlamaConfig,
  f: ForwardValues,
  final: NonNullable<ForwardValues['final']>,
  selectRows: boolean,
  grad: GradOutput,
): string {
  const { gemm } = f;
  const { nf } = final;
  const targets = g.input('targets', ['m', 1], 'int64');
  const coef = g.input('coef', ['m', 1]);
  const head = c.tieEmbeddings
    ? (f.embed ?? g.input('model.embed_tokens.weight', paramShape(c, 'model.embed_tokens.weight')))
    : g.input('lm_head.weight', paramShape(c, 'lm_head.weight'));
  let rows: string | null = null;
  let flat = nf.Y;
  if (selectRows) {
    rows = g.input('rows', ['m'], 'int32');
    flat = g.inline(gatherRowsGraph(), { W: nf.Y, I: rows }).Y;
  }
  const logits = gemm(flat, head, false, true);
  // Cross-entropy as fusedCrossEntropy computes it: D = softmax * coef, the loss from D at the targets (in JS),
  // the gradient D with coef taken off at each target.
  const d = g.inline(softmaxScaledGraph(), { X: logits, C: coef }).D;
  const [targetProb] = g.node('GatherElements', [d, targets], { axis: 1 });
  g.output('target_prob', targetProb, ['m', 1]);
  const [atTarget] = g.node('Sub', [targetProb, coef]);
  const [dLogits] = g.node('ScatterElements', [d, targets, atTarget], { axis: 1 });

  // Backward, in the order autograd's topological sort runs the closures.
  let dHidden = gemm(dLogits, head, false, false);
  grad(c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', () =>
    gemm(dLogits, flat, true, false),
  );
  if (rows) {
    // selectRows' backward: the rows' gradients added into zeros (0 + g, as autograd's scatter-add does).
    const [zeros] = g.node('ConstantOfShape', [g.node('Shape', [nf.Y])[0]]);
    const rowIndex = g.input('rows_nd', ['m', 1], 'int64');
    [dHidden] = g.node('ScatterND', [zeros, rowIndex, dHidden], { reduction: { string: 'add' } });
  }
  const fb = g.inline(rmsNormBackwardGraph(), { dY: dHidden, X: f.x, W: final.weight, R: nf.R });
  grad('model.norm.weight', () => fb.dW);
  return fb.dX;
}

/**
 * The span's blocks backward from `dx`, the gradient of the residual stream they leave, in the order autograd's
 * topological sort runs the closures; where a value has several consumers its gradient is summed in that order
 * (h: v, then k, then q; an adapter's path before its base weight's). Returns the gradient of the span's input, or
 * null with `inputGrad` false (its input needs none: autograd stops before the first block's input norm).
 */
function addBlocksBackward(
  g: GraphBuilder,
  c: LlamaConfig,
  f: ForwardValues,
  dx: string,
  grad: GradOutput,
  inputGrad: boolean,
): string | null {
  const hd = headDim(c);
  const heads = { h: c.nHeads, hkv: c.nKvHeads, d: hd };
  const rep = c.nHeads / c.nKvHeads;
  const { gemm, add, stepIds } = f;
  const { bt, q4, kv4, groupedProbs } = f.shapes;
  /** Sums gradient contributions in the order given (the first taken as it is, as accumulateGrad adopts it). */
  const sum = (parts: string[]): string => parts.reduce((acc, part) => add(acc, part));
  for (let j = f.blocks.length - 1; j >= 0; j--) {
    const s = f.blocks[j];
    const p = `model.layers.${s.layer}`;
    const needInput = inputGrad || j > 0;
    /**
     * A projection's backward from dY: its weights' gradients, and its input's gradient contributions in autograd's
     * order (the adapter's, then the base weight's), none when the input needs no gradient.
     */
    const proj = (dY: string, input: string, name: Projection, needs = true): string[] => {
      const weight = projectionWeight(s.layer, name);
      const parts: string[] = [];
      const lora = s.lora?.[name];
      if (lora) {
        grad(`${weight}.lora_B`, () => gemm(dY, lora.low, true, false));
        const dLow = gemm(dY, lora.b, false, false);
        if (needs) parts.push(gemm(dLow, lora.a, false, false));
        grad(`${weight}.lora_A`, () => gemm(dLow, input, true, false));
      }
      if (needs) parts.push(gemm(dY, s.w[name], false, false));
      grad(weight, () => gemm(dY, input, true, false));
      return parts;
    };
    const dAct = sum(proj(dx, s.act, 'down'));
    const sb = g.inline(swigluBackwardGraph(), { dY: dAct, G: s.gate, U: s.up });
    const dUp = proj(sb.dU, s.n2.Y, 'up');
    const dGate = proj(sb.dG, s.n2.Y, 'gate');
    const b2 = g.inline(rmsNormBackwardGraph(), {
      dY: sum([...dUp, ...dGate]),
      X: s.xm,
      W: s.w.postNorm,
      R: s.n2.R,
    });
    grad(`${p}.post_attention_layernorm.weight`, () => b2.dW);
    const dMid = add(dx, b2.dX);
    const dAtt = sum(proj(dMid, s.att2, 'o'));
    const ab = g.inline(attentionBackwardGraph(heads), {
      dY: g.reshape(dAtt, q4),
      Q: g.reshape(s.q, q4),
      K: g.reshape(s.k, kv4),
      V: g.reshape(s.v, kv4),
      Y: g.reshape(s.att.Y, q4),
      P: rep === 1 ? s.att.P : g.reshape(s.att.P, groupedProbs),
    });
    const ropeBack = (value: string, count: number): string =>
      g.reshape(
        g.inline(ropeGraph(count), {
          X: g.reshape(value, bt),
          C: s.rope.cos,
          S: s.rope.negSin,
          P: stepIds,
        }).Y,
        [-1, count * hd],
      );
    const dv = g.reshape(ab.dV, [-1, c.nKvHeads * hd]);
    const dk = ropeBack(ab.dK, c.nKvHeads);
    const dq = ropeBack(ab.dQ, c.nHeads);
    const dh = [
      ...proj(dv, s.n1.Y, 'v', needInput),
      ...proj(dk, s.n1.Y, 'k', needInput),
      ...proj(dq, s.n1.Y, 'q', needInput),
    ];
    if (!needInput) return null;
    const b1 = g.inline(rmsNormBackwardGraph(), { dY: sum(dh), X: s.x, W: s.w.inNorm, R: s.n1.R });
    grad(`${p}.input_layernorm.weight`, () => b1.dW);
    dx = add(dMid, b1.dX);
  }
  return dx;
}

function cachedGraph(key: unknown[], build: () => GraphSpec, threads: number): StepGraph {
  const k = JSON.stringify(key);
  let s = graphs.get(k);
  if (!s) {
    const spec = build();
    s = {
      graph: new OrtGraph(spec, threads, profiling?.prefix),
      inputs: new Set(spec.inputs.map((i) => i.name)),
      gradients: spec.outputs.filter((o) => o.name.startsWith('grad:')).map((o) => o.name.slice(5)),
    };
    // Models train one at a time, a few spans each.
    if (graphs.size >= MAX_GRAPHS) graphs.clear();
    graphs.set(k, s);
  }
  return s;
}

/**
 * Loss and gradients of `batch` through the fused graphs: sets every trained parameter's gradient and returns the
 * loss (as crossEntropy rounds it) and the tokens that carried it. Returns null where the autograd path must run
 * instead (see the file comment), having set no gradient (hooks may have run once already: a recording hook then
 * sees the batch twice).
 *
 * Hooks on the residual stream between blocks (embed, hook_resid_pre, hook_resid_post) split the pass into spans,
 * one graph each, with the hooks run between them as autograd ops on the span's output. The backward goes back
 * span by span: each span's graph runs its forward again from its saved input and returns the gradient of that
 * input, which the hooks' own backward carries to the span before. Each value then has the same consumers as in
 * autograd's graph, so every gradient is summed in the same order.
 */
export function fusedLossAndGradients(
  model: LlamaModel,
  batch: Batch,
  hooks?: HookSet,
): { loss: number; tokens: number } | null {
  if (fusedStepUnsupported(model, hooks) !== null) return null;
  const c = model.config;
  const { batch: b, seqLen: t, weights } = batch;
  const n = b * t;
  if (n === 0 || t > c.maxSeqLen || batch.inputs.length !== n || batch.targets.length !== n) return null;
  if (weights && weights.length !== n) return null;
  const v = c.vocabSize;
  // The rows that carry loss: all, or (as batchLoss selects them) those of positive weight.
  const rows: number[] = [];
  let weightSum = 0;
  for (let r = 0; r < n; r++) {
    const id = batch.inputs[r];
    // Out-of-range ids go to the autograd path, which reports them.
    if (!(id >= 0 && id < v)) return null;
    const w = weights ? weights[r] : 1;
    if (!(w > 0)) continue;
    const target = batch.targets[r];
    if (!(target >= 0 && target < v)) return null;
    rows.push(r);
    weightSum += w;
  }
  const m = rows.length;
  if (m === 0) return null;
  const targets = BigInt64Array.from(rows, (r) => BigInt(batch.targets[r]));
  const rowWeights = Float32Array.from(rows, (r) => (weights ? weights[r] : 1));
  const coef = Float32Array.from(rowWeights, (w) => w / weightSum);

  const tensors = trainedTensors(model);
  const trained = [...tensors.keys()];
  const loraRank = model.adapters.size > 0 ? loraRankOf(model) : null;
  const threads = getMatmulBackend().threads;
  const feeds = forwardFeeds(model, batch.inputs, b, t);
  feeds.targets = [targets, [m, 1]];
  feeds.coef = [coef, [m, 1]];
  if (weights) {
    feeds.rows = [Int32Array.from(rows), [m]];
    feeds.rows_nd = [BigInt64Array.from(rows, (r) => BigInt(r)), [m, 1]];
  }
  const spans = passSpans(c, hooks, c.nLayers, true);
  const step = (span: BlockSpan): StepGraph =>
    cachedGraph(
      [c, span, weights !== null, trained, loraRank, threads],
      () => buildStepGraph(c, weights !== null, new Set(trained), span, loraRank),
      threads,
    );
  const residual = (h: HookedResidual): Feed => [h.out.data, [n, c.dim]];
  const shape = { batch: b, seqLen: t, positions: Int32Array.from({ length: t }, (_, i) => i) };
  // Forward: each span but the last, its output through the hooks that follow it; hooked[i] is span i's input.
  const hooked = forwardSpans(model, spans, spans.length - 1, hooks, feeds, shape, { requiresGrad: true });

  // The last span computes the loss and starts the backward.
  const lastInput = hooked[spans.length - 1];
  const last = step(spans[spans.length - 1]);
  const out = runFused(last, feeds, lastInput ? { x_in: residual(lastInput) } : {});
  const prob = out.target_prob;
  let total = 0;
  for (let i = 0; i < m; i++) {
    const p = prob[i] / coef[i];
    if (!(p > 1e-30)) return null;
    total -= rowWeights[i] * Math.log(p);
  }
  const loss = Math.fround(total / weightSum);
  const setGradients = (s: StepGraph, o: Record<string, Float32Array>): void => {
    for (const name of s.gradients) tensors.get(name)!.grad = o[gradName(name)];
  };
  setGradients(last, out);
  let dx: Float32Array | null = out.input_grad ?? null;
  for (let i = spans.length - 2; i >= 0; i--) {
    dx = hookInputGradient(hooked[i + 1]!, dx);
    // A hook that did not read its input: autograd's backward stops there too.
    if (!dx) return { loss, tokens: m };
    const s = step(spans[i]);
    const input = hooked[i];
    const o = runFused(s, feeds, { dx_out: [dx, [n, c.dim]], ...(input ? { x_in: residual(input) } : {}) });
    setGradients(s, o);
    dx = o.input_grad;
  }
  if (hooked[0]) dx = hookInputGradient(hooked[0], dx);
  if (!dx) return { loss, tokens: m };
  // The embedding's rows: scatter-added after the unembedding's gradient, as autograd does for tied weights.
  const embed = model.params.get('model.embed_tokens.weight')!;
  const gx = embed.gradBuffer();
  const dim = c.dim;
  for (let i = 0; i < n; i++) {
    const o = batch.inputs[i] * dim;
    for (let j = 0; j < dim; j++) gx[o + j] += dx[i * dim + j];
  }
  return { loss, tokens: m };
}

/** The gradient of the hooks' input from that of their output; null where their output did not depend on it. */
function hookInputGradient(h: HookedResidual, dOut: Float32Array | null): Float32Array | null {
  if (!dOut) return null;
  if (h.out === h.leaf) return dOut;
  if (!h.out.requiresGrad) return null;
  h.out.backward(dOut);
  return h.leaf.grad;
}

/** Time of the fused graph's nodes per step, added up by the kernel graph they came from. */
export interface GraphNodeTime {
  /** The kernel graph (`attention_backward`, a gemm with its operand shapes, ᵀ on a transposed one) or op. */
  kernel: string;
  calls: number;
  ms: number;
}

interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] };
}

/** The kernel a traced node belongs to: its kernel graph's name (gemms with their shapes), else its op. */
function nodeKernel(e: TraceEvent): string {
  const node = e.name.replace(/_kernel_time$/, '');
  const slash = node.indexOf('/');
  if (slash < 0) return e.args?.op_name ?? node;
  const graph = node.slice(0, slash).replace(/_\d+$/, '');
  const m = /^gemm(_tA)?(_tB)?$/.exec(graph);
  if (!m) return graph;
  const [a, b] = (e.args?.input_type_shape ?? []).map((t) => `[${Object.values(t)[0].join('x')}]`);
  return `matmul ${a}${m[1] ? 'ᵀ' : ''}·${b}${m[2] ? 'ᵀ' : ''}`;
}

/**
 * Runs `run` (which trains `warmup` steps, then timed ones) with the fused step's graphs built afresh under ORT's
 * profiler, and returns their nodes' time in the runs after the first `warmup`, per timed step. The profiled
 * graphs are dropped afterwards.
 */
export function profileFusedSteps(run: () => void, warmup: number, steps: number): GraphNodeTime[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-step-profile-'));
  const saved = graphs;
  graphs = new Map();
  profiling = { prefix: path.join(dir, 'step') };
  const events: TraceEvent[] = [];
  try {
    run();
  } finally {
    for (const g of graphs.values())
      events.push(...(JSON.parse(fs.readFileSync(g.graph.endProfiling(), 'utf8')) as TraceEvent[]));
    graphs = saved;
    profiling = null;
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const runs = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((a, b) => a.ts - b.ts);
  const timedFrom = runs[warmup]?.ts ?? Infinity;
  const totals = new Map<string, { calls: number; ms: number }>();
  for (const e of events) {
    if (e.cat !== 'Node' || e.ts < timedFrom) continue;
    const k = nodeKernel(e);
    const t = totals.get(k) ?? { calls: 0, ms: 0 };
    t.calls++;
    t.ms += e.dur / 1000;
    totals.set(k, t);
  }
  return [...totals]
    .map(([kernel, t]) => ({ kernel, calls: t.calls / steps, ms: t.ms / steps }))
    .sort((a, b) => b.ms - a.ms);
}
