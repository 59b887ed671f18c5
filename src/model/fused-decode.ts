/**
 * The fused decoding step: {@link LlamaModel.forwardStep} without hooks, and the prompt's pass of a reply
 * ({@link fusedPrefill}), run each layer boundary as one ONNX Runtime graph (src/tensor/ort-decode.ts) instead of
 * a dozen kernels per layer, with the same logits to the bit. Between two graphs only the attention softmax (the
 * per-op path's own JS softmax) and the KV-cache writes run here. The per-op path stays the reference and takes
 * every pass this one does not cover: the JS backend, gradients, hooks, LoRA adapters, caches with left padding,
 * and Gemma 3 (its norms scaled by 1 + weight, GeGLU, embedding and attention scales are computed in JS there).
 *
 * A step of one sequence on a model whose weights are in a WeightMemory runs its projections on the WebAssembly
 * one-row matmul instead, where that reads the weights faster than ONNX Runtime's one-row kernel (with the same
 * sums), and the ops between them through src/tensor/ort-decode-matvec.ts: in JS and WebAssembly where those have
 * this machine's ONNX Runtime's bits, else on small graphs; again with the same logits.
 */
import { isGradEnabled, Tensor } from '../autograd/tensor.ts';
import { causalSoftmaxInPlace, ropeTables } from '../tensor/kernels.ts';
import {
  decodeGraphs,
  type OrtDecodeGraphs,
  type AttnInWeights,
  type AttnOutWeights,
  type DecodeCacheView,
  type DecodeGraphInput,
  type DecodeLayerShape,
} from '../tensor/ort-decode.ts';
import { matvecDecodeGraphs, type OrtMatvecDecodeGraphs } from '../tensor/ort-decode-matvec.ts';
import { matvecPaysOff } from '../tensor/ort-matmul.ts';
import { RowBuffers } from '../tensor/row-buffers.ts';
import type { WeightMemory } from '../tensor/weight-memory.ts';
import { architectureOf, hasQkNorm, headDim, layerRope, layerWindow } from './config.ts';
import type { DecodeSequence, KvCache, LlamaModel } from './llama.ts';

let enabled = process.env.PSM_FUSED_DECODE !== '0';

/**
 * Turns the fused decoding step on or off for the process (on unless PSM_FUSED_DECODE=0); off, every step takes
 * the per-op path. For comparing the two paths; results are the same either way.
 */
export function setFusedDecoding(on: boolean): void {
  enabled = on;
}

interface LayerParams {
  norm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  bias: { q: Tensor; k: Tensor; v: Tensor } | null;
  qkNorm: { q: Tensor; k: Tensor } | null;
  o: Tensor;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
  rope: RopeTable;
  window: number;
}

/**
 * Cos and sin of every position up to `positions` for one RoPE (base or scaled frequencies), [positions, hd / 2]
 * each, grown as needed: the values ropeTables gives each position, computed once.
 */
interface RopeTable {
  theta: number | Float64Array;
  positions: number;
  cos: Float32Array;
  sin: Float32Array;
}

/** Rows `positions` of the table, [n, hd / 2] each (views when there is one row). */
function ropeRows(
  table: RopeTable,
  positions: Int32Array,
  hd: number,
): { cos: Float32Array; sin: Float32Array } {
  const last = Math.max(...positions);
  if (last >= table.positions) {
    const grown = Math.max(last + 1, 2 * table.positions, 256);
    Object.assign(
      table,
      ropeTables(
        Int32Array.from({ length: grown }, (_, i) => i),
        hd,
        table.theta,
      ),
    );
    table.positions = grown;
  }
  const half = hd / 2;
  if (positions.length === 1) {
    const a = positions[0] * half;
    return { cos: table.cos.subarray(a, a + half), sin: table.sin.subarray(a, a + half) };
  }
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  positions.forEach((p, i) => {
    cos.set(table.cos.subarray(p * half, (p + 1) * half), i * half);
    sin.set(table.sin.subarray(p * half, (p + 1) * half), i * half);
  });
  return { cos, sin };
}

interface DecodePlan {
  shape: DecodeLayerShape;
  embed: Tensor;
  finalNorm: Tensor;
  layers: LayerParams[];
}

const plans = new WeakMap<LlamaModel, DecodePlan | null>();

/** The model's parameters as the graphs take them, or null for an architecture the graphs do not cover. */
function planOf(model: LlamaModel): DecodePlan | null {
  let plan = plans.get(model);
  if (plan !== undefined) return plan;
  const c = model.config;
  plan = null;
  if (architectureOf(c) !== 'gemma3' && c.queryPreAttnScalar === undefined) {
    const p = (name: string): Tensor => model.param(name);
    const qkNorm = hasQkNorm(c);
    // Layers that turn with the same frequencies share a table.
    const ropes = new Map<string, RopeTable>();
    const ropeOf = (layer: number): RopeTable => {
      const theta = layerRope(c, layer);
      const key = typeof theta === 'number' ? String(theta) : theta.join(',');
      let table = ropes.get(key);
      if (!table) {
        table = { theta, positions: 0, cos: new Float32Array(0), sin: new Float32Array(0) };
        ropes.set(key, table);
      }
      return table;
    };
    plan = {
      shape: {
        dim: c.dim,
        heads: c.nHeads,
        kvHeads: c.nKvHeads,
        headDim: headDim(c),
        hidden: c.hiddenDim,
        eps: c.normEps,
        qkvBias: c.qkvBias,
        qkNorm,
      },
      embed: p('model.embed_tokens.weight'),
      finalNorm: p('model.norm.weight'),
      layers: Array.from({ length: c.nLayers }, (_, i): LayerParams => {
        const a = `model.layers.${i}.self_attn`;
        const m = `model.layers.${i}.mlp`;
        return {
          norm: p(`model.layers.${i}.input_layernorm.weight`),
          q: p(`${a}.q_proj.weight`),
          k: p(`${a}.k_proj.weight`),
          v: p(`${a}.v_proj.weight`),
          bias: c.qkvBias
            ? { q: p(`${a}.q_proj.bias`), k: p(`${a}.k_proj.bias`), v: p(`${a}.v_proj.bias`) }
            : null,
          qkNorm: qkNorm ? { q: p(`${a}.q_norm.weight`), k: p(`${a}.k_norm.weight`) } : null,
          o: p(`${a}.o_proj.weight`),
          postNorm: p(`model.layers.${i}.post_attention_layernorm.weight`),
          gate: p(`${m}.gate_proj.weight`),
          up: p(`${m}.up_proj.weight`),
          down: p(`${m}.down_proj.weight`),
          rope: ropeOf(i),
          window: layerWindow(c, i),
        };
      }),
    };
  }
  plans.set(model, plan);
  return plan;
}

function attnInWeights(l: LayerParams): AttnInWeights {
  return {
    norm: l.norm.data,
    q: l.q.data,
    k: l.k.data,
    v: l.v.data,
    bias: l.bias ? { q: l.bias.q.data, k: l.bias.k.data, v: l.bias.v.data } : undefined,
    qkNorm: l.qkNorm ? { q: l.qkNorm.q.data, k: l.qkNorm.k.data } : undefined,
  };
}

function attnOutWeights(l: LayerParams): AttnOutWeights {
  return { o: l.o.data, postNorm: l.postNorm.data, gate: l.gate.data, up: l.up.data, down: l.down.data };
}

/** The plan and graphs for a pass of `model` on the fused graphs, or null when it needs the per-op path. */
function fusedSetup(model: LlamaModel, ids: Int32Array, caches: readonly KvCache[]) {
  // The graphs compute without gradients; a pass that records them takes the ops.
  if (!enabled || isGradEnabled() || model.adapters.size > 0) return null;
  const graphs = decodeGraphs();
  const plan = graphs ? planOf(model) : null;
  if (!graphs || !plan) return null;
  if (caches.some((cache) => cache.keyStart[0] !== 0)) return null;
  const vocab = model.config.vocabSize;
  if (ids.some((id) => !(id >= 0 && id < vocab))) return null;
  return { graphs, plan };
}

/**
 * The layers on the fused graphs: ids enter the embedding; each of `caches` (one sequence each) holds `past[s]`
 * positions and gets its new keys and values written after them. `rows` is n (one position per sequence) or, with
 * `prompt`, the prompt's positions of the one sequence. Returns the final-normed hidden rows [rows, dim].
 */
function runLayers(
  graphs: OrtDecodeGraphs,
  plan: DecodePlan,
  ids: Int32Array,
  caches: readonly KvCache[],
  past: number[],
  prompt: number | undefined,
): Float32Array {
  const { shape, layers } = plan;
  const { kvHeads: hkv, headDim: hd, heads: h } = shape;
  const n = caches.length;
  const t = prompt ?? 1;
  const views = (layer: number): DecodeCacheView[] =>
    caches.map((cache) => ({
      keys: cache.keys[layer],
      values: cache.values[layer],
      capacity: cache.capacity,
    }));
  const totals = past.map((p) => p + t);
  // RoPE rows: one per sequence at its position, or the prompt's positions.
  const positions =
    prompt === undefined ? Int32Array.from(past) : Int32Array.from({ length: t }, (_, i) => past[0] + i);
  const tables = new Map<RopeTable, { cos: Float32Array; sin: Float32Array }>();
  const ropeOf = (table: RopeTable) => {
    let rows = tables.get(table);
    if (!rows) tables.set(table, (rows = ropeRows(table, positions, hd)));
    return rows;
  };
  const scale = 1 / Math.sqrt(hd);
  let x: Float32Array | undefined;
  let probs: Float32Array[] = [];
  for (let i = 0; i <= layers.length; i++) {
    const input: DecodeGraphInput = { prompt };
    if (i === 0) input.embed = { ids, weight: plan.embed.data };
    else {
      input.x = x;
      input.attnOut = { weights: attnOutWeights(layers[i - 1]), probs, caches: views(i - 1), totals };
    }
    if (i === layers.length) {
      input.finalNorm = plan.finalNorm.data;
      return graphs.run(shape, n, input).x;
    }
    const layer = layers[i];
    const { cos, sin } = ropeOf(layer.rope);
    input.attnIn = { weights: attnInWeights(layer), cos, sin, caches: views(i), past };
    const out = graphs.run(shape, n, input);
    x = out.x;
    if (prompt === undefined)
      for (let s = 0; s < n; s++) writeCache(caches[s], i, past[s], out.keys!, out.values!, s, hkv, hd);
    else
      for (let r = 0; r < t; r++) writeCache(caches[0], i, past[0] + r, out.keys!, out.values!, r, hkv, hd);
    probs = out.scores!;
    // The per-op path's softmax (cachedAttention): per query head, its t rows over the past and the new keys.
    for (let s = 0; s < n; s++) causalSoftmaxInPlace(probs[s], h, t, totals[s], scale, past[s], layer.window);
  }
  throw new Error('unreachable: the last layer boundary returns');
}

/**
 * One decoding step of `seqs` (one new id each, at `positions`) on the fused graphs: the final-normed hidden rows
 * [1, n, dim], the new keys and values written into each cache (whose length the caller advances). Null, with
 * nothing changed, when this step needs the per-op path (see the module comment; also an id outside the
 * vocabulary, which that path reports).
 */
export function fusedDecodeStep(
  model: LlamaModel,
  ids: Int32Array,
  seqs: readonly DecodeSequence[],
  positions: Int32Array,
): Tensor | null {
  if (seqs.some((s) => s.hooks)) return null;
  const caches = seqs.map((s) => s.cache);
  const setup = fusedSetup(model, ids, caches);
  if (!setup) return null;
  const matvec = ids.length === 1 ? matvecSetup(model, setup.plan) : null;
  const x = matvec
    ? matvecStep(matvec.graphs, matvec.memory, setup.plan, ids[0], caches[0], positions[0])
    : runLayers(setup.graphs, setup.plan, ids, caches, Array.from(positions), undefined);
  return new Tensor(x, [1, ids.length, model.config.dim], false, 'fusedDecodeStep');
}

/**
 * The one-row matmul and its graphs for a step of one sequence, or null when a weight is not in the model's
 * WeightMemory (a model too small to have one, or a parameter since replaced by another array), when the kernel
 * does not sum as this machine's ONNX Runtime does, or when it streams these weights slower (see matvecPaysOff).
 */
function matvecSetup(model: LlamaModel, plan: DecodePlan) {
  const memory = model.weightMemory;
  const graphs = memory ? matvecDecodeGraphs() : null;
  if (!memory || !graphs || !matvecPaysOff(memory, graphs.threads)) return null;
  const held = (t: Tensor): boolean => memory.holds(t.data);
  for (const l of plan.layers) if (![l.q, l.k, l.v, l.o, l.gate, l.up, l.down].every(held)) return null;
  return { memory, graphs };
}

/** Each model's rows of the one-sequence step, reused from step to step (one model decodes one step at a time). */
const stepRows = new WeakMap<DecodePlan, RowBuffers>();

/**
 * One decoding step of one sequence with its projections on the one-row matmul (src/tensor/ort-decode-matvec.ts):
 * the final-normed hidden row [dim] (a new array), the new keys and values written into the cache at `past`. Every
 * other row is one the model reuses from step to step.
 */
function matvecStep(
  graphs: OrtMatvecDecodeGraphs,
  memory: WeightMemory,
  plan: DecodePlan,
  id: number,
  cache: KvCache,
  past: number,
): Float32Array {
  const { shape, layers } = plan;
  const { dim, heads: h, kvHeads: hkv, headDim: hd } = shape;
  let buffers = stepRows.get(plan);
  if (!buffers) stepRows.set(plan, (buffers = new RowBuffers()));
  const rows = buffers;
  const project = (w: Tensor, x: Float32Array, role: string): Float32Array => {
    const [n, cols] = w.shape;
    const y = rows.row(role, n);
    memory.matvec(w.data, n, cols, x, y);
    return y;
  };
  const position = Int32Array.of(past);
  const scale = 1 / Math.sqrt(hd);
  // The embedding's row, as the graphs' Gather copies it.
  let { x, normed } = graphs.residual(
    shape,
    plan.embed.data.slice(id * dim, (id + 1) * dim),
    null,
    layers[0].norm.data,
    {
      buffers: rows,
      sum: 'x',
      normed: 'normed',
    },
  );
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i];
    const qkv = { q: project(l.q, normed, 'q'), k: project(l.k, normed, 'k'), v: project(l.v, normed, 'v') };
    const { key, value, scores } = graphs.scores(
      shape,
      qkv,
      attnInWeights(l),
      ropeRows(l.rope, position, hd),
      { keys: cache.keys[i], capacity: cache.capacity },
      past,
      memory,
      rows,
    );
    writeCache(cache, i, past, key, value, 0, hkv, hd);
    causalSoftmaxInPlace(scores, h, 1, past + 1, scale, past, l.window);
    const attended = graphs.attended(
      shape,
      scores,
      { values: cache.values[i], capacity: cache.capacity },
      past + 1,
      memory,
      rows,
    );
    const mid = graphs.residual(shape, x, project(l.o, attended, 'o'), l.postNorm.data, {
      buffers: rows,
      sum: 'mid',
      normed: 'midNormed',
    });
    const gate = project(l.gate, mid.normed, 'gate');
    const m = graphs.swiglu(shape, gate, project(l.up, mid.normed, 'up'), memory, rows);
    const last = i + 1 === layers.length;
    // The last norm is the step's result: a new row.
    ({ x, normed } = graphs.residual(
      shape,
      mid.x,
      project(l.down, m, 'down'),
      (last ? plan.finalNorm : layers[i + 1].norm).data,
      last ? undefined : { buffers: rows, sum: 'x', normed: 'normed' },
    ));
  }
  return normed;
}

/** Attention scores (floats) of one layer up to which a prompt runs on the fused graphs: 64 MiB. */
const MAX_PREFILL_SCORES = 1 << 24;

/**
 * A prompt of one sequence continuing `cache` (batch 1; two or more ids) on the fused graphs, as
 * forwardHidden(ids, 1, { cache }) computes it without hooks, to the bit: the final-normed hidden rows
 * [1, ids.length, dim], and the cache extended by the prompt. Null, with nothing changed, where that call would take
 * the per-op path's checks or ops (a prompt that does not fit, and the cases of the module comment).
 */
export function fusedPrefill(model: LlamaModel, ids: Int32Array, cache: KvCache): Tensor | null {
  const t = ids.length;
  const c = model.config;
  if (t < 2 || cache.batch !== 1 || cache.length + t > Math.min(cache.capacity, c.maxSeqLen)) return null;
  // The graphs hold each layer's attention scores twice (their own and the packed output); a long prompt's
  // [heads x t, past + t] scores take the per-op path, which holds them once.
  if (c.nHeads * t * (cache.length + t) > MAX_PREFILL_SCORES) return null;
  const setup = fusedSetup(model, ids, [cache]);
  if (!setup) return null;
  const x = runLayers(setup.graphs, setup.plan, ids, [cache], [cache.length], t);
  cache.length += t;
  return new Tensor(x, [1, t, c.dim], false, 'fusedPrefill');
}

/** Row `row` of keys and values [n, hkv * hd] into layer `layer` of a one-sequence cache at `pos`. */
function writeCache(
  cache: KvCache,
  layer: number,
  pos: number,
  keys: Float32Array,
  values: Float32Array,
  row: number,
  hkv: number,
  hd: number,
): void {
  const kc = cache.keys[layer];
  const vc = cache.values[layer];
  for (let g = 0; g < hkv; g++) {
    const src = (row * hkv + g) * hd;
    const dst = (g * cache.capacity + pos) * hd;
    kc.set(keys.subarray(src, src + hd), dst);
    vc.set(values.subarray(src, src + hd), dst);
  }
}
