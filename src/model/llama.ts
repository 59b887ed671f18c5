/**
 * The Llama-family decoder: embeddings, n blocks of (RMSNorm -> grouped-query attention with rotary
 * embeddings -> residual, RMSNorm -> SwiGLU MLP -> residual), a final RMSNorm and the unembedding (tied to
 * the embeddings or separate). Parameters carry their Hugging Face tensor names, so a checkpoint is a
 * loadable HF model. Optional q/k/v biases give the Qwen2 family; the other families of config.ts's
 * ARCHITECTURES change the block as noted where they do (Qwen3: q/k norms; Gemma 3: norms scaled by
 * 1 + weight, the embedding scaled by sqrt(dim), norms after attention and after the MLP as well as before,
 * a GELU(tanh) gate, sliding-window layers with their own RoPE base, its own attention scale).
 */
import { addConstant, geglu, softcap } from '../autograd/arch-ops.ts';
import {
  add,
  causalAttention,
  embedding,
  linear,
  reshape,
  rmsNorm,
  rope,
  scale,
  swiglu,
} from '../autograd/ops.ts';
import { isGradEnabled, sizeOf, Tensor } from '../autograd/tensor.ts';
import { fusedKernels, matmul, type MaskedAttentionShape } from '../tensor/matmul.ts';
import { causalSoftmaxInPlace } from '../tensor/kernels.ts';
import { Rng } from '../tensor/random.ts';
import { WeightMemory } from '../tensor/weight-memory.ts';
import {
  architectureOf,
  hasQkNorm,
  headDim,
  layerRope,
  layerWindow,
  llamaParamShapes,
  projectionWeightName,
  type LlamaConfig,
} from './config.ts';
import { fusedDecodeStep } from './fused-decode.ts';
import { fusedBranches, fusedHidden, fusedPrompts, type ResumePoint } from './fused-forward.ts';
import { hookBlock, HookSet } from './hooks.ts';

/** Low-rank adapter on one weight: W x + scale * B (A x). */
export interface LoraAdapter {
  a: Tensor; // [rank, in]
  b: Tensor; // [out, rank]
  scale: number;
}

/** Keys and values of earlier positions, per layer, for incremental decoding. */
export class KvCache {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  length = 0;
  /**
   * Per sequence, the first real position: earlier positions are left padding, which no later query may
   * attend to. Rotary embeddings are relative, so a sequence shifted right by its padding scores the same.
   */
  readonly keyStart: Int32Array;

  constructor(
    readonly config: LlamaConfig,
    readonly batch: number,
    readonly capacity: number,
  ) {
    const per = batch * capacity * config.nKvHeads * headDim(config);
    this.keys = Array.from({ length: config.nLayers }, () => new Float32Array(per));
    this.values = Array.from({ length: config.nLayers }, () => new Float32Array(per));
    this.keyStart = new Int32Array(batch);
  }
}

/**
 * The keys and values of a batch of left-padded prompts ({@link LlamaModel.forwardPrompts}), which
 * {@link LlamaModel.forwardBranches} continues without copying them.
 */
export class PromptCache {
  /** Per layer, [batch, nKvHeads, length, headDim] (null for a layer a resumed pass did not run). */
  readonly keys: (Float32Array | null)[];
  readonly values: (Float32Array | null)[];

  constructor(
    readonly batch: number,
    /** Positions per sequence, padding included. */
    readonly length: number,
    /** Per sequence, its left padding: the first real position. */
    readonly padding: Int32Array,
    nLayers: number,
  ) {
    this.keys = new Array<Float32Array | null>(nLayers).fill(null);
    this.values = new Array<Float32Array | null>(nLayers).fill(null);
  }
}

/** One sequence of a decoding step ({@link LlamaModel.forwardStep}): its own KV cache and interventions. */
export interface DecodeSequence {
  /** A cache of one sequence, holding everything the sequence has seen so far. */
  readonly cache: KvCache;
  readonly hooks?: HookSet;
}

export interface ForwardOptions {
  hooks?: HookSet;
  cache?: KvCache;
  /**
   * Start from the residual stream after block `afterLayer` ([batch, seqLen, dim], its value before that block's
   * hook_resid_post hooks) instead of from the tokens: the embedding and blocks 0..afterLayer are skipped, and a
   * cache keeps whatever those layers hold. An intervention at or after that point then costs only the blocks after
   * it, with the same numbers as a full pass; hooks may only sit there (blocks.{afterLayer}.hook_resid_post, later
   * blocks, final_norm).
   */
  resume?: { afterLayer: number; hidden: Tensor };
  /**
   * Run the blocks up to and including this one and return the residual stream after it (its hook_resid_post hooks
   * applied), not the final-normed one: a reader of activations at or before a block need not pay for the blocks
   * after it. Every hook must act at or before that point.
   */
  stopAfterLayer?: number;
}

/** Throws unless `stop` is a block and every hook acts at or before the residual stream after it. */
function checkStopHooks(hooks: HookSet | undefined, stop: number, nLayers: number): void {
  if (!Number.isInteger(stop) || stop < 0 || stop >= nLayers)
    throw new Error(`forward: cannot stop after block ${stop} (the model has blocks 0..${nLayers - 1})`);
  for (const name of hooks?.names() ?? []) {
    if (hookBlock(name) <= stop) continue;
    throw new Error(`forward: hook "${name}" acts after block ${stop}, where the pass stops`);
  }
}

/** Throws unless every hook acts at or after the residual stream following block `afterLayer`. */
function checkResumeHooks(hooks: HookSet | undefined, afterLayer: number): void {
  for (const name of hooks?.names() ?? []) {
    if (name === 'final_norm') continue;
    const m = /^blocks\.(\d+)\.(\w+)$/.exec(name);
    const layer = m ? Number(m[1]) : -1;
    if (layer > afterLayer || (layer === afterLayer && m![2] === 'hook_resid_post')) continue;
    throw new Error(
      `forward: hook "${name}" acts before the point the pass resumes from (after block ${afterLayer})`,
    );
  }
}

export const LORA_TARGETS = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/**
 * Refuses, before anything is allocated, a config whose parameters could not fit in `weightBytes` bytes of
 * weights (at least 2 bytes each, as F16/BF16): a config that lies (a million layers over a small file) would
 * otherwise allocate gigabytes. Counting stops as soon as the bound is passed.
 */
export function checkConfigFitsWeights(config: LlamaConfig, weightBytes: number, source: string): void {
  const limit = weightBytes / 2;
  let count = 0;
  for (const [, shape] of llamaParamShapes(config)) {
    count += shape.reduce((a, b) => a * b, 1);
    if (count > limit)
      throw new Error(
        `${source}: the config (dim ${config.dim}, ${config.nLayers} layers, hidden ${config.hiddenDim}, vocabulary ${config.vocabSize}) needs more parameters than ${weightBytes} bytes of weights can hold; it does not describe these weights`,
      );
  }
}

/**
 * Parameters (16 MB of weights) from which every model keeps its weights in a WeightMemory: decoding one sequence
 * is then bound by streaming the weights, which the WebAssembly matmul does faster on some CPUs (the faster kernel
 * is timed on first use: matvecPaysOff in src/tensor/ort-matmul.ts).
 */
const WEIGHT_MEMORY_MIN_PARAMS = 1 << 22;
let weightMemoryMinParams: number | null = null;

/** PSM_WEIGHT_MEMORY: on (every model), off (none) or auto (the rule below, and the default). */
function weightMemoryFromEnvironment(): number | null {
  const choice = process.env.PSM_WEIGHT_MEMORY ?? 'auto';
  if (choice === 'on') return 0;
  if (choice === 'off') return Infinity;
  if (choice === 'auto') return null;
  throw new Error(`PSM_WEIGHT_MEMORY must be on, off or auto, not ${JSON.stringify(choice)}`);
}

/**
 * Whether a model keeps its weights in a WeightMemory: from 16 MB of weights, and below that when every head has
 * its own kv head, whose decoding step of one sequence then runs without a graph (src/tensor/ort-attention.ts;
 * grouped heads keep two graphs per layer, which cost a small model more than the faster matmul saves).
 * PSM_WEIGHT_MEMORY overrides the rule for the process, setWeightMemoryMinParams for the models made after it.
 */
function wantsWeightMemory(config: LlamaConfig, params: number): boolean {
  const minParams = weightMemoryMinParams ?? weightMemoryFromEnvironment();
  if (minParams !== null) return params >= minParams;
  return params >= WEIGHT_MEMORY_MIN_PARAMS || config.nHeads === config.nKvHeads;
}

/**
 * Sets the size from which models made after this call keep their weights in a WeightMemory (0: every model;
 * Infinity: none; no argument: the default rule). The numbers are the same either way; for tests and benchmarks.
 */
export function setWeightMemoryMinParams(params: number | null = null): void {
  weightMemoryMinParams = params;
}

export class LlamaModel {
  readonly params = new Map<string, Tensor>();
  readonly adapters = new Map<string, LoraAdapter>();

  /**
   * The WebAssembly memory the parameters live in (src/tensor/weight-memory.ts; see wantsWeightMemory for which
   * models); null when they are ordinary arrays.
   */
  readonly weightMemory: WeightMemory | null;

  constructor(readonly config: LlamaConfig) {
    const shapes = Array.from(llamaParamShapes(config));
    const count = shapes.reduce((sum, [, shape]) => sum + sizeOf(shape), 0);
    this.weightMemory = wantsWeightMemory(config, count)
      ? WeightMemory.create(
          shapes.map(([, s]) => s),
          // A head's cached keys or values, for the attention of a decoding step.
          { rows: config.maxSeqLen, cols: headDim(config) },
        )
      : null;
    shapes.forEach(([name, shape], i) =>
      this.params.set(
        name,
        this.weightMemory
          ? new Tensor(this.weightMemory.views[i], shape, true, name)
          : Tensor.zeros(shape, true, name),
      ),
    );
  }

  /**
   * GPT-2 style initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * layers), norms
   * the identity (weight 1, or 0 where a norm scales by 1 + weight).
   */
  initialize(seed: number): this {
    const rng = new Rng(seed);
    const residualStd = 0.02 / Math.sqrt(2 * this.config.nLayers);
    const normIdentity = 1 - this.normOffset;
    for (const [name, t] of this.params) {
      if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight')) t.data.fill(normIdentity);
      else if (name.endsWith('.bias')) t.data.fill(0);
      else {
        const std = name.endsWith('o_proj.weight') || name.endsWith('down_proj.weight') ? residualStd : 0.02;
        for (let i = 0; i < t.size; i++) t.data[i] = rng.gaussian() * std;
      }
    }
    return this;
  }

  /** Gemma's RMSNorms scale by 1 + weight; the others by weight. */
  get normOffset(): number {
    return architectureOf(this.config) === 'gemma3' ? 1 : 0;
  }

  /** RMSNorm of x with the norm parameter `name` (scaled by 1 + weight on Gemma). */
  private norm(x: Tensor, name: string): Tensor {
    const w = this.param(name);
    return rmsNorm(x, this.normOffset ? addConstant(w, this.normOffset) : w, this.config.normEps);
  }

  param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`model has no parameter "${name}"`);
    return t;
  }

  parameterCount(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    return n;
  }

  /** The unembedding matrix [vocab, dim]. */
  get headWeight(): Tensor {
    return this.config.tieEmbeddings ? this.param('model.embed_tokens.weight') : this.param('lm_head.weight');
  }

  /** Adds (or replaces) LoRA adapters of `rank` on the chosen projections of every layer; B starts at zero. */
  addLora(rank: number, targets: readonly LoraTarget[], seed: number, alpha = rank): LoraAdapter[] {
    const rng = new Rng(seed);
    const made: LoraAdapter[] = [];
    for (let i = 0; i < this.config.nLayers; i++) {
      for (const target of targets) {
        const name = projectionWeightName(i, target);
        const w = this.param(name);
        const [out, inp] = w.shape;
        const a = Tensor.zeros([rank, inp], true, `${name}.lora_A`);
        const std = 1 / Math.sqrt(inp);
        for (let j = 0; j < a.size; j++) a.data[j] = rng.gaussian() * std;
        const b = Tensor.zeros([out, rank], true, `${name}.lora_B`);
        const adapter = { a, b, scale: alpha / rank };
        this.adapters.set(name, adapter);
        made.push(adapter);
      }
    }
    return made;
  }

  /** Folds adapters into their weights (W += scale * B A) and removes them. */
  mergeLora(): void {
    for (const [name, { a, b, scale }] of this.adapters) {
      const w = this.param(name);
      const [out, inp] = w.shape;
      const rank = a.shape[0];
      const delta = matmul(b.data, a.data, {
        batch: 1,
        m: out,
        n: inp,
        k: rank,
        transA: false,
        transB: false,
      });
      for (let i = 0; i < w.size; i++) w.data[i] += scale * delta[i];
    }
    this.adapters.clear();
  }

  private proj(x: Tensor, name: string, bias?: Tensor | null): Tensor {
    const y = linear(x, this.param(name), bias);
    const lora = this.adapters.get(name);
    if (!lora) return y;
    const low = linear(x, lora.a);
    const up = linear(low, lora.b);
    const s = lora.scale;
    return add(y, s === 1 ? up : scale(up, s));
  }

  /** Whether a pass now records its graph for a gradient (gradients on and some weight or adapter trains). */
  private recordsGradient(): boolean {
    if (!isGradEnabled()) return false;
    for (const p of this.params.values()) if (p.requiresGrad) return true;
    for (const a of this.adapters.values()) if (a.a.requiresGrad || a.b.requiresGrad) return true;
    return false;
  }

  /**
   * Runs the decoder on ids [batch, seqLen] and returns the final-normed hidden states [batch, seqLen, dim].
   * With a cache, ids continue the cached sequences and the cache is extended.
   */
  forwardHidden(ids: Int32Array, batch: number, opts: ForwardOptions = {}): Tensor {
    const c = this.config;
    const seqLen = ids.length / batch;
    if (!Number.isInteger(seqLen))
      throw new Error(`forward: ${ids.length} ids do not split into ${batch} sequences`);
    const hooks = opts.hooks;
    hooks?.validate(c.nLayers);
    const cache = opts.cache;
    const offset = cache ? cache.length : 0;
    if (offset + seqLen > c.maxSeqLen) {
      throw new Error(
        `forward: sequence length ${offset + seqLen} exceeds the model's maxSeqLen ${c.maxSeqLen}`,
      );
    }
    if (cache && (cache.batch !== batch || offset + seqLen > cache.capacity)) {
      throw new Error('forward: KV cache does not fit this batch or is full');
    }
    const stop = opts.stopAfterLayer;
    if (stop !== undefined) checkStopHooks(hooks, stop, c.nLayers);
    if (!cache && !opts.resume && !this.recordsGradient()) {
      // Nothing to record for a gradient: the pass as one graph, or one per span between hooks (null where the
      // graphs do not serve the model or the hooks).
      const hidden = fusedHidden(this, ids, batch, { hooks, stopAfterLayer: stop });
      if (hidden) return new Tensor(hidden, [batch, seqLen, c.dim]);
    }
    const positions = new Int32Array(seqLen);
    for (let t = 0; t < seqLen; t++) positions[t] = offset + t;
    const hook = (name: string, x: Tensor): Tensor =>
      hooks ? hooks.apply(name, x, { batch, seqLen, positions }) : x;
    const { x, first } = this.start(ids, batch, seqLen, hook, hooks, opts.resume);
    const y = this.blocks(
      x,
      first,
      { batch, seqLen, positions },
      hook,
      (q, k, v, layer, window) =>
        cache ? cachedAttention(q, k, v, cache, layer, offset, window) : causalAttention(q, k, v, window),
      stop === undefined ? c.nLayers : stop + 1,
    );
    if (cache) cache.length += seqLen;
    return stop === undefined ? hook('final_norm', this.norm(y, 'model.norm.weight')) : y;
  }

  /**
   * Where a pass starts: the (hooked) token embeddings, or with `resume` the given residual stream after block
   * `afterLayer` (its hook_resid_post hooks applied), with the first block still to run.
   */
  private start(
    ids: Int32Array,
    batch: number,
    seqLen: number,
    hook: (name: string, x: Tensor) => Tensor,
    hooks: HookSet | undefined,
    resume: ForwardOptions['resume'],
  ): { x: Tensor; first: number } {
    if (!resume) return { x: hook('embed', this.embed(ids, batch, seqLen)), first: 0 };
    const a = this.checkResume(resume, batch, seqLen, hooks).afterLayer;
    return { x: hook(`blocks.${a}.hook_resid_post`, resume.hidden), first: a + 1 };
  }

  /**
   * Throws unless `resume` fits a pass of ids [batch, seqLen] and every hook acts at or after the point it resumes
   * from; returns that point for the fused graphs.
   */
  private checkResume(
    resume: NonNullable<ForwardOptions['resume']>,
    batch: number,
    seqLen: number,
    hooks: HookSet | undefined,
  ): ResumePoint {
    const c = this.config;
    const a = resume.afterLayer;
    if (!Number.isInteger(a) || a < 0 || a >= c.nLayers)
      throw new Error(`forward: cannot resume after block ${a} (the model has blocks 0..${c.nLayers - 1})`);
    const want = [batch, seqLen, c.dim];
    if (resume.hidden.shape.join(',') !== want.join(','))
      throw new Error(`forward: resume hidden has shape [${resume.hidden.shape}], expected [${want}]`);
    checkResumeHooks(hooks, a);
    return { afterLayer: a, hidden: resume.hidden.data };
  }

  /**
   * The prompts of a scoring batch, left-padded to one length: ids [batch, seqLen], where the first padding[i] ids
   * of sequence i are padding that no position attends to (rotary embeddings are relative, so a shifted sequence
   * scores as it would alone). Returns the final-normed hidden states and a cache of exactly these positions, which
   * {@link forwardBranches} continues. Hooks see the padded batch; their context's `padding` says where each
   * sequence starts. With `resume`, the cache holds only the layers the pass ran.
   */
  forwardPrompts(
    ids: Int32Array,
    batch: number,
    opts: { padding?: Int32Array; hooks?: HookSet; resume?: ForwardOptions['resume'] } = {},
  ): { hidden: Tensor; cache: PromptCache } {
    const c = this.config;
    const seqLen = ids.length / batch;
    if (!Number.isInteger(seqLen) || seqLen < 1)
      throw new Error(`forwardPrompts: ${ids.length} ids do not split into ${batch} sequences`);
    if (seqLen > c.maxSeqLen)
      throw new Error(
        `forwardPrompts: sequence length ${seqLen} exceeds the model's maxSeqLen ${c.maxSeqLen}`,
      );
    const padding = opts.padding ?? new Int32Array(batch);
    if (padding.length !== batch || padding.some((p) => !(p >= 0 && p < seqLen)))
      throw new Error(
        `forwardPrompts: padding must give each of ${batch} sequences 0..${seqLen - 1} pad tokens`,
      );
    const hooks = opts.hooks;
    hooks?.validate(c.nLayers);
    const positions = Int32Array.from({ length: seqLen }, (_, t) => t);
    const ctx = { batch, seqLen, positions, padding };
    const hook = (name: string, x: Tensor): Tensor => (hooks ? hooks.apply(name, x, ctx) : x);
    const cache = new PromptCache(batch, seqLen, padding, c.nLayers);
    const masks = new Map<number, Float32Array>();
    if (!this.recordsGradient()) {
      // One graph per span between hooks (null where the fused graphs do not serve the pass); the windowless
      // plain block has one mask.
      const resume = opts.resume && this.checkResume(opts.resume, batch, seqLen, hooks);
      const mask = promptMask(padding, seqLen, Infinity);
      const fused = fusedPrompts(this, ids, batch, { padding, mask, hooks, resume });
      if (fused) {
        fused.keys.forEach((k, i) => (cache.keys[i] = k));
        fused.values.forEach((v, i) => (cache.values[i] = v));
        return { hidden: new Tensor(fused.hidden, [batch, seqLen, c.dim]), cache };
      }
    }
    const { x, first } = this.start(ids, batch, seqLen, hook, hooks, opts.resume);
    const y = this.blocks(x, first, ctx, hook, (q, k, v, layer, window) => {
      let mask = masks.get(window);
      if (!mask) masks.set(window, (mask = promptMask(padding, seqLen, window)));
      const out = maskedAttention(q, k, v, null, mask, true);
      cache.keys[layer] = out.k;
      cache.values[layer] = out.v;
      return out.y;
    });
    return { hidden: hook('final_norm', this.norm(y, 'model.norm.weight')), cache };
  }

  /**
   * Several continuations of every prompt of `cache` at once, without copying the prompts' keys and values: ids
   * [batch, branches x branchLen] hold, for each cached sequence, its continuations of branchLen tokens each (right-
   * padded), one after the other. Each continuation attends to its own prompt and its own earlier tokens only, at
   * the positions it would have after the prompt alone (cache.length + j, j < branchLen), so each scores exactly as
   * if it ran alone after its prompt. The cache is read, never changed. Returns the final-normed hidden states
   * [batch, branches x branchLen, dim]; hooks see them at those positions, with the prompts' `padding`.
   */
  forwardBranches(
    ids: Int32Array,
    cache: PromptCache,
    branchLen: number,
    opts: { hooks?: HookSet; resume?: ForwardOptions['resume'] } = {},
  ): Tensor {
    const c = this.config;
    const batch = cache.batch;
    const seqLen = ids.length / batch;
    if (!Number.isInteger(branchLen) || branchLen < 1 || !Number.isInteger(seqLen / branchLen) || seqLen < 1)
      throw new Error(
        `forwardBranches: ${ids.length} ids do not split into ${batch} sequences of continuations of ${branchLen}`,
      );
    if (cache.length + branchLen > c.maxSeqLen)
      throw new Error(
        `forwardBranches: continuations of ${branchLen} after ${cache.length} positions exceed the model's maxSeqLen ${c.maxSeqLen}`,
      );
    const hooks = opts.hooks;
    hooks?.validate(c.nLayers);
    const positions = Int32Array.from({ length: seqLen }, (_, t) => cache.length + (t % branchLen));
    const ctx = { batch, seqLen, positions, padding: cache.padding };
    const hook = (name: string, x: Tensor): Tensor => (hooks ? hooks.apply(name, x, ctx) : x);
    const masks = new Map<number, Float32Array>();
    if (!this.recordsGradient()) {
      const mask = branchMask(cache.padding, cache.length, seqLen, branchLen, Infinity);
      const fused = fusedBranches(this, ids, batch, {
        positions,
        padding: cache.padding,
        mask,
        past: cache,
        hooks,
        resume: opts.resume && this.checkResume(opts.resume, batch, seqLen, hooks),
      });
      if (fused) return new Tensor(fused, [batch, seqLen, c.dim]);
    }
    const { x, first } = this.start(ids, batch, seqLen, hook, hooks, opts.resume);
    const y = this.blocks(x, first, ctx, hook, (q, k, v, layer, window) => {
      const keys = cache.keys[layer];
      const values = cache.values[layer];
      if (!keys || !values)
        throw new Error(
          `forwardBranches: the prompt cache has no keys for layer ${layer} (a resumed pass skipped it)`,
        );
      let mask = masks.get(window);
      if (!mask)
        masks.set(window, (mask = branchMask(cache.padding, cache.length, seqLen, branchLen, window)));
      return maskedAttention(q, k, v, { k: keys, v: values }, mask, false).y;
    });
    return hook('final_norm', this.norm(y, 'model.norm.weight'));
  }

  /** Token embeddings [batch, seqLen, dim] (Gemma scales them by sqrt(dim), in float32 as its reference does). */
  private embed(ids: Int32Array, batch: number, seqLen: number): Tensor {
    const e = embedding(this.param('model.embed_tokens.weight'), ids, [batch, seqLen]);
    return architectureOf(this.config) === 'gemma3' ? scale(e, Math.fround(Math.sqrt(this.config.dim))) : e;
  }

  /**
   * One decoding step of several independent sequences: ids[i] continues seqs[i], each with its own KV cache
   * (one sequence, any length) and hooks. The projections and the MLP run on every sequence's row at once;
   * RoPE turns each row by its own position, and each row attends to its own cache alone. Hooks see each
   * sequence's row by itself ([1, 1, dim] at its position, batch index 0), exactly as a forward of that
   * sequence alone shows it, so one sequence's interventions never touch another's. Returns the final-normed
   * hidden rows [1, ids.length, dim] (row i is sequence i's) and extends every cache by one position.
   */
  forwardStep(ids: Int32Array, seqs: readonly DecodeSequence[]): Tensor {
    const c = this.config;
    const n = ids.length;
    if (n === 0 || seqs.length !== n)
      throw new Error(`forwardStep: ${n} ids for ${seqs.length} sequences (one id per sequence)`);
    if (new Set(seqs.map((s) => s.cache)).size !== n)
      throw new Error('forwardStep: two sequences share a KV cache');
    const positions = new Int32Array(n);
    const hookNames: ReadonlySet<string>[] = [];
    seqs.forEach(({ cache, hooks }, i) => {
      if (cache.batch !== 1)
        throw new Error(`forwardStep: sequence ${i}'s KV cache holds ${cache.batch} sequences, not 1`);
      if (cache.length + 1 > Math.min(cache.capacity, c.maxSeqLen))
        throw new Error(`forwardStep: sequence ${i}'s KV cache is full (${cache.length} positions)`);
      hooks?.validate(c.nLayers);
      positions[i] = cache.length;
      hookNames.push(new Set(hooks?.names()));
    });
    const hooked = seqs.some((s) => s.hooks);
    // Without hooks, ONNX Runtime runs the step as a few fused graphs, with the same numbers as the ops below.
    const fused = hooked ? null : fusedDecodeStep(this, ids, seqs, positions);
    if (fused) {
      for (const s of seqs) s.cache.length += 1;
      return fused;
    }
    const hook = (name: string, x: Tensor): Tensor => {
      if (!hooked) return x;
      const width = x.size / n;
      let out: Float32Array | undefined;
      for (let i = 0; i < n; i++) {
        const hooks = seqs[i].hooks;
        if (!hooks || !hookNames[i].has(name)) continue;
        const row = new Tensor(x.data.slice(i * width, (i + 1) * width), [1, 1, width]);
        const y = hooks.apply(name, row, { batch: 1, seqLen: 1, positions: positions.subarray(i, i + 1) });
        out ??= Float32Array.from(x.data);
        out.set(y.data, i * width);
      }
      return out ? new Tensor(out, x.shape) : x;
    };
    const row = (t: Tensor, i: number): Tensor => {
      const [, , heads, d] = t.shape;
      const w = heads * d;
      return new Tensor(t.data.subarray(i * w, (i + 1) * w), [1, 1, heads, d]);
    };
    const x = this.blocks(
      hook('embed', this.embed(ids, 1, n)),
      0,
      { batch: 1, seqLen: n, positions },
      hook,
      (q, k, v, layer, window) => {
        if (n === 1) return cachedAttention(q, k, v, seqs[0].cache, layer, positions[0], window);
        const w = q.shape[2] * q.shape[3];
        const out = new Float32Array(n * w);
        for (let i = 0; i < n; i++) {
          const y = cachedAttention(
            row(q, i),
            row(k, i),
            row(v, i),
            seqs[i].cache,
            layer,
            positions[i],
            window,
          );
          out.set(y.data, i * w);
        }
        return new Tensor(out, [1, n, w], false, 'cachedAttention');
      },
    );
    for (const s of seqs) s.cache.length += 1;
    return hook('final_norm', this.norm(x, 'model.norm.weight'));
  }

  /**
   * Blocks first..end-1 on the residual stream x [batch, seqLen, dim] (rows at `shape.positions`), each
   * block's attention computed by `attend` (q [batch, seqLen, heads, hd], k and v with the kv heads).
   */
  private blocks(
    x: Tensor,
    first: number,
    shape: { batch: number; seqLen: number; positions: Int32Array },
    hook: (name: string, x: Tensor) => Tensor,
    attend: (q: Tensor, k: Tensor, v: Tensor, layer: number, window: number) => Tensor,
    end = this.config.nLayers,
  ): Tensor {
    const c = this.config;
    const { batch, seqLen, positions } = shape;
    const hd = headDim(c);
    const gemma = architectureOf(c) === 'gemma3';
    const qkNorm = hasQkNorm(c);
    // Attention scores are scaled by 1/sqrt(hd) inside attention; another scale (Gemma's
    // query_pre_attn_scalar) is folded into q.
    const qScale = c.queryPreAttnScalar === undefined ? 1 : Math.sqrt(hd / c.queryPreAttnScalar);
    for (let i = first; i < end; i++) {
      const p = `model.layers.${i}`;
      x = hook(`blocks.${i}.hook_resid_pre`, x);
      const h = this.norm(x, `${p}.input_layernorm.weight`);
      const bias = (n: string): Tensor | null => (c.qkvBias ? this.param(`${p}.self_attn.${n}.bias`) : null);
      const heads = (n: string, count: number): Tensor => {
        const y = reshape(this.proj(h, `${p}.self_attn.${n}_proj.weight`, bias(`${n}_proj`)), [
          batch,
          seqLen,
          count,
          hd,
        ]);
        return qkNorm && n !== 'v' ? this.norm(y, `${p}.self_attn.${n}_norm.weight`) : y;
      };
      const theta = this.ropeOf(i);
      let q = rope(heads('q', c.nHeads), positions, theta);
      if (qScale !== 1) q = scale(q, qScale);
      const k = rope(heads('k', c.nKvHeads), positions, theta);
      const v = heads('v', c.nKvHeads);
      const window = layerWindow(c, i);
      const att = attend(q, k, v, i, window);
      let attnOut = this.proj(att, `${p}.self_attn.o_proj.weight`);
      if (gemma) attnOut = this.norm(attnOut, `${p}.post_attention_layernorm.weight`);
      attnOut = hook(`blocks.${i}.hook_attn_out`, attnOut);
      x = hook(`blocks.${i}.hook_resid_mid`, add(x, attnOut));
      const h2 = this.norm(
        x,
        `${p}.${gemma ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'}.weight`,
      );
      const gate = this.proj(h2, `${p}.mlp.gate_proj.weight`);
      const up = this.proj(h2, `${p}.mlp.up_proj.weight`);
      let mlpOut = this.proj(gemma ? geglu(gate, up) : swiglu(gate, up), `${p}.mlp.down_proj.weight`);
      if (gemma) mlpOut = this.norm(mlpOut, `${p}.post_feedforward_layernorm.weight`);
      mlpOut = hook(`blocks.${i}.hook_mlp_out`, mlpOut);
      x = hook(`blocks.${i}.hook_resid_post`, add(x, mlpOut));
    }
    return x;
  }

  /** Per layer, what its RoPE turns with (computed once: scaled frequencies are cached per array). */
  private ropeOf(layer: number): number | Float64Array {
    this.ropes ??= Array.from({ length: this.config.nLayers }, (_, i) => layerRope(this.config, i));
    return this.ropes[layer];
  }
  private ropes: (number | Float64Array)[] | undefined;

  /** Logits [rows, vocab] for hidden rows [rows, dim]. */
  logits(hidden: Tensor): Tensor {
    const y = linear(hidden, this.headWeight);
    const cap = this.config.finalLogitSoftcap;
    return cap === undefined ? y : softcap(y, cap);
  }

  /** Full forward to logits [batch, seqLen, vocab]. */
  forward(ids: Int32Array, batch: number, opts: ForwardOptions = {}): Tensor {
    return this.logits(this.forwardHidden(ids, batch, opts));
  }
}

/**
 * Attention of new queries against cached plus new keys (inference only: generation runs without
 * gradients). Writes the new keys and values into the cache at [offset, offset + t).
 */
function cachedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  cache: KvCache,
  layer: number,
  offset: number,
  window: number,
): Tensor {
  const [b, t, h, d] = q.shape;
  const hkv = k.shape[2];
  const rep = h / hkv;
  const cap = cache.capacity;
  const kc = cache.keys[layer];
  const vc = cache.values[layer];
  // Cache layout [b, hkv, capacity, d] so each head's keys are contiguous for the matmul.
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let hi = 0; hi < hkv; hi++) {
        const src = ((bi * t + ti) * hkv + hi) * d;
        const dst = ((bi * hkv + hi) * cap + offset + ti) * d;
        kc.set(k.data.subarray(src, src + d), dst);
        vc.set(v.data.subarray(src, src + d), dst);
      }
    }
  }
  const total = offset + t;
  const bg = b * hkv;
  // Gather per (sequence, kv head): the `rep` query heads sharing it stacked as rows [rep * t, d], and the
  // cached keys/values [total, d]; then two batched matmuls over all (sequence, kv head) pairs.
  const qAll = new Float32Array(bg * rep * t * d);
  const kAll = total === cap ? kc : new Float32Array(bg * total * d);
  const vAll = total === cap ? vc : new Float32Array(bg * total * d);
  for (let bi = 0; bi < b; bi++) {
    for (let g = 0; g < hkv; g++) {
      const pair = bi * hkv + g;
      for (let r = 0; r < rep; r++) {
        for (let ti = 0; ti < t; ti++) {
          const src = ((bi * t + ti) * h + g * rep + r) * d;
          qAll.set(q.data.subarray(src, src + d), ((pair * rep + r) * t + ti) * d);
        }
      }
      if (total !== cap) {
        const base = pair * cap * d;
        kAll.set(kc.subarray(base, base + total * d), pair * total * d);
        vAll.set(vc.subarray(base, base + total * d), pair * total * d);
      }
    }
  }
  const rows = rep * t;
  const scores = matmul(qAll, kAll, { batch: bg, m: rows, n: total, k: d, transA: false, transB: true });
  for (let pair = 0; pair < bg; pair++) {
    const start = cache.keyStart[Math.floor(pair / hkv)];
    const block = scores.subarray(pair * rows * total, (pair + 1) * rows * total);
    if (start > 0) {
      // Left padding is invisible to every query except itself (so padding rows stay finite).
      for (let r = 0; r < rows; r++) {
        const pos = offset + (r % t);
        for (let j = 0; j < Math.min(start, total); j++) if (j !== pos) block[r * total + j] = -Infinity;
      }
    }
    causalSoftmaxInPlace(block, rep, t, total, 1 / Math.sqrt(d), offset, window);
  }
  const out = matmul(scores, vAll, { batch: bg, m: rows, n: d, k: total, transA: false, transB: false });
  const y = new Float32Array(b * t * h * d);
  for (let bi = 0; bi < b; bi++) {
    for (let g = 0; g < hkv; g++) {
      const pair = bi * hkv + g;
      for (let r = 0; r < rep; r++) {
        for (let ti = 0; ti < t; ti++) {
          const src = ((pair * rep + r) * t + ti) * d;
          y.set(out.subarray(src, src + d), ((bi * t + ti) * h + g * rep + r) * d);
        }
      }
    }
  }
  return new Tensor(y, [b, t, h * d], false, 'cachedAttention');
}

/** An additive attention mask [batch, seqLen, seqLen]: causal, within the window, and blind to left padding. */
function promptMask(padding: Int32Array, seqLen: number, window: number): Float32Array {
  const mask = new Float32Array(padding.length * seqLen * seqLen).fill(-Infinity);
  padding.forEach((pad, b) => {
    for (let i = 0; i < seqLen; i++) {
      const row = (b * seqLen + i) * seqLen;
      // A padding position sees itself only, so its row stays finite.
      const from = i < pad ? i : Math.max(pad, i - window + 1);
      mask.fill(0, row + from, row + i + 1);
    }
  });
  return mask;
}

/**
 * The mask [batch, seqLen, prefix + seqLen] of continuations of branchLen tokens after a cached prefix: each token
 * sees its prompt (not the padding) and its own continuation's tokens up to itself, within the window.
 */
function branchMask(
  padding: Int32Array,
  prefix: number,
  seqLen: number,
  branchLen: number,
  window: number,
): Float32Array {
  const total = prefix + seqLen;
  const mask = new Float32Array(padding.length * seqLen * total).fill(-Infinity);
  padding.forEach((pad, b) => {
    for (let t = 0; t < seqLen; t++) {
      const j = t % branchLen;
      const row = (b * seqLen + t) * total;
      const pos = prefix + j;
      mask.fill(0, row + Math.max(pad, pos - window + 1), row + prefix);
      mask.fill(0, row + prefix + t - j + Math.max(0, j - window + 1), row + prefix + t + 1);
    }
  });
  return mask;
}

/**
 * Inference attention of q [b, tq, h, d] on the `past` keys and values ([b, hkv, tp, d]) followed by k and v
 * [b, tk, hkv, d], under an additive mask [b, tq, tp + tk]; with wantKv, also the keys and values of every position
 * ([b, hkv, tp + tk, d]). The backend's fused kernel when it has one, else matmuls and a JS softmax.
 */
function maskedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  past: { k: Float32Array; v: Float32Array } | null,
  mask: Float32Array,
  wantKv: boolean,
): { y: Tensor; k: Float32Array | null; v: Float32Array | null } {
  const [b, tq, h, d] = q.shape;
  const tk = k.shape[1];
  const hkv = k.shape[2];
  const tp = past ? past.k.length / (b * hkv * d) : 0;
  const s = { b, tq, tk, tp, h, hkv, d };
  const fk = fusedKernels();
  const out = fk
    ? fk.maskedAttention(q.data, k.data, v.data, past, mask, s, wantKv)
    : maskedAttentionJs(q.data, k.data, v.data, past, mask, s, wantKv);
  return { y: new Tensor(out.y, [b, tq, h * d], false, 'maskedAttention'), k: out.k, v: out.v };
}

function maskedAttentionJs(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  past: { k: Float32Array; v: Float32Array } | null,
  mask: Float32Array,
  s: MaskedAttentionShape,
  wantKv: boolean,
): { y: Float32Array; k: Float32Array | null; v: Float32Array | null } {
  const { b, tq, tk, tp, h, hkv, d } = s;
  const rep = h / hkv;
  const tt = tp + tk;
  const bg = b * hkv;
  // Keys and values of every position, head-major [b, hkv, tt, d]; queries grouped per (sequence, kv head).
  const kAll = new Float32Array(bg * tt * d);
  const vAll = new Float32Array(bg * tt * d);
  const qAll = new Float32Array(bg * rep * tq * d);
  for (let bi = 0; bi < b; bi++) {
    for (let g = 0; g < hkv; g++) {
      const pair = bi * hkv + g;
      if (past && tp > 0) {
        kAll.set(past.k.subarray(pair * tp * d, (pair + 1) * tp * d), pair * tt * d);
        vAll.set(past.v.subarray(pair * tp * d, (pair + 1) * tp * d), pair * tt * d);
      }
      for (let ti = 0; ti < tk; ti++) {
        const src = ((bi * tk + ti) * hkv + g) * d;
        kAll.set(k.subarray(src, src + d), (pair * tt + tp + ti) * d);
        vAll.set(v.subarray(src, src + d), (pair * tt + tp + ti) * d);
      }
      for (let r = 0; r < rep; r++) {
        for (let ti = 0; ti < tq; ti++) {
          const src = ((bi * tq + ti) * h + g * rep + r) * d;
          qAll.set(q.subarray(src, src + d), ((pair * rep + r) * tq + ti) * d);
        }
      }
    }
  }
  const rows = rep * tq;
  const scores = matmul(qAll, kAll, { batch: bg, m: rows, n: tt, k: d, transA: false, transB: true });
  const scale = 1 / Math.sqrt(d);
  for (let pair = 0; pair < bg; pair++) {
    const bi = Math.floor(pair / hkv);
    for (let r = 0; r < rows; r++) {
      const o = (pair * rows + r) * tt;
      const m = (bi * tq + (r % tq)) * tt;
      let max = -Infinity;
      for (let j = 0; j < tt; j++) {
        const x = scores[o + j] * scale + mask[m + j];
        scores[o + j] = x;
        if (x > max) max = x;
      }
      let sum = 0;
      for (let j = 0; j < tt; j++) {
        const e = Math.exp(scores[o + j] - max);
        scores[o + j] = e;
        sum += e;
      }
      for (let j = 0; j < tt; j++) scores[o + j] /= sum;
    }
  }
  const out = matmul(scores, vAll, { batch: bg, m: rows, n: d, k: tt, transA: false, transB: false });
  const y = new Float32Array(b * tq * h * d);
  for (let bi = 0; bi < b; bi++) {
    for (let g = 0; g < hkv; g++) {
      const pair = bi * hkv + g;
      for (let r = 0; r < rep; r++) {
        for (let ti = 0; ti < tq; ti++) {
          const src = ((pair * rep + r) * tq + ti) * d;
          y.set(out.subarray(src, src + d), ((bi * tq + ti) * h + g * rep + r) * d);
        }
      }
    }
  }
  return { y, k: wantKv ? kAll : null, v: wantKv ? vAll : null };
}
