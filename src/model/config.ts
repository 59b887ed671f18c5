/**
 * Model configuration, validated, and its mapping to and from a Hugging Face `config.json`: LlamaForCausalLM
 * (Llama 2/3, SmolLM2; Llama 3's scaled RoPE), Qwen2ForCausalLM (q/k/v biases), Qwen3ForCausalLM (per-head q/k
 * RMSNorm) and Gemma3ForCausalLM (see {@link ARCHITECTURES}).
 */
import { z } from 'zod';

/**
 * The decoder families the engine runs. `llama` and `qwen2` are the PSM models' own (a config without `arch`
 * is one of them, told apart by qkvBias); `qwen3` adds RMSNorm over each head of q and k; `gemma3` adds
 * Gemma's norms (scaled by 1 + weight, also after attention and after the MLP), an embedding scaled by
 * sqrt(dim), the GELU(tanh) gated MLP, q/k norms, and sliding-window attention on its local layers.
 */
export const ARCHITECTURES = ['llama', 'qwen2', 'qwen3', 'gemma3'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export const LAYER_TYPES = ['sliding_attention', 'full_attention'] as const;
export type LayerType = (typeof LAYER_TYPES)[number];

const RopeScalingSchema = z.discriminatedUnion('type', [
  /** Llama 3.x: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between. */
  z
    .object({
      type: z.literal('llama3'),
      factor: z.number().positive(),
      lowFreqFactor: z.number().positive(),
      highFreqFactor: z.number().positive(),
      originalMaxPositions: z.number().int().positive(),
    })
    .strict(),
  /** Every frequency divided by `factor` (Gemma 3's global layers in the 4B and larger models). */
  z.object({ type: z.literal('linear'), factor: z.number().positive() }).strict(),
]);
export type RopeScaling = z.output<typeof RopeScalingSchema>;

export const LlamaConfigSchema = z
  .object({
    vocabSize: z.number().int().positive(),
    dim: z.number().int().positive(),
    nLayers: z.number().int().positive(),
    nHeads: z.number().int().positive(),
    nKvHeads: z.number().int().positive(),
    hiddenDim: z.number().int().positive(),
    normEps: z.number().positive().default(1e-5),
    ropeTheta: z.number().positive().default(10000),
    tieEmbeddings: z.boolean().default(true),
    qkvBias: z.boolean().default(false),
    maxSeqLen: z.number().int().positive().default(256),
    // Optional fields of the newer families; absent from the PSM models' configs (which they leave unchanged).
    arch: z.enum(ARCHITECTURES).optional(),
    /** Size of each attention head when it is not dim / nHeads (Qwen3, Gemma 3). */
    headDim: z.number().int().positive().optional(),
    /** Scaled RoPE (on Gemma 3, on its global layers only). */
    ropeScaling: RopeScalingSchema.optional(),
    /** Gemma 3: how many keys (the query's own included) a sliding-window layer attends to. */
    slidingWindow: z.number().int().positive().optional(),
    /** Gemma 3: each layer's attention kind, nLayers entries. */
    layerTypes: z.array(z.enum(LAYER_TYPES)).optional(),
    /** Gemma 3: RoPE base of the sliding-window layers (ropeTheta is the global layers'). */
    ropeLocalTheta: z.number().positive().optional(),
    /** Gemma 3: attention scores are scaled by queryPreAttnScalar^-1/2 instead of headDim^-1/2. */
    queryPreAttnScalar: z.number().positive().optional(),
    /** Logits become cap * tanh(logits / cap). */
    finalLogitSoftcap: z.number().positive().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string): void => {
      ctx.addIssue({ code: 'custom', path: [path], message });
    };
    if (c.headDim === undefined && c.dim % c.nHeads !== 0)
      issue('dim', `dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
    if (c.nHeads % c.nKvHeads !== 0)
      issue('nKvHeads', `nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
    const hd = c.headDim ?? c.dim / c.nHeads;
    if (hd % 2 !== 0)
      issue(
        c.headDim === undefined ? 'nHeads' : 'headDim',
        'head dimension must be even for rotary embeddings',
      );
    const arch = c.arch ?? (c.qkvBias ? 'qwen2' : 'llama');
    if (c.qkvBias && arch !== 'qwen2')
      issue('qkvBias', `q/k/v biases are not part of the ${arch} architecture`);
    if (arch === 'qwen2' && !c.qkvBias) issue('qkvBias', 'the qwen2 architecture has q/k/v biases');
    const gemmaOnly = ['slidingWindow', 'layerTypes', 'ropeLocalTheta', 'queryPreAttnScalar'] as const;
    if (arch === 'gemma3') {
      for (const f of ['slidingWindow', 'layerTypes'] as const)
        if (c[f] === undefined) issue(f, 'the gemma3 architecture needs it');
      if (c.layerTypes && c.layerTypes.length !== c.nLayers)
        issue('layerTypes', `${c.layerTypes.length} layer types for ${c.nLayers} layers`);
    } else {
      for (const f of gemmaOnly) if (c[f] !== undefined) issue(f, `only the gemma3 architecture has it`);
    }
  });
export type LlamaConfig = z.output<typeof LlamaConfigSchema>;
export type LlamaConfigInput = z.input<typeof LlamaConfigSchema>;

export function formatZodError(error: z.ZodError, source: string): string {
  const lines = error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  return `${source} is invalid:\n${lines.join('\n')}`;
}

export function parseLlamaConfig(input: unknown, source = 'model config'): LlamaConfig {
  const r = LlamaConfigSchema.safeParse(input);
  if (!r.success) throw new Error(formatZodError(r.error, source));
  return r.data;
}

export function headDim(c: LlamaConfig): number {
  return c.headDim ?? c.dim / c.nHeads;
}

/** The family a config belongs to (configs written before `arch` existed are llama, or qwen2 with biases). */
export function architectureOf(c: LlamaConfig): Architecture {
  return c.arch ?? (c.qkvBias ? 'qwen2' : 'llama');
}

/** Whether q and k get an RMSNorm over each head before RoPE (Qwen3, Gemma 3). */
export function hasQkNorm(c: LlamaConfig): boolean {
  const a = architectureOf(c);
  return a === 'qwen3' || a === 'gemma3';
}

/** The parameters a config needs, in the order the model holds them: [HF name, row-major shape]. */
export function* llamaParamShapes(c: LlamaConfig): Generator<[string, number[]]> {
  const hd = headDim(c);
  yield ['model.embed_tokens.weight', [c.vocabSize, c.dim]];
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}`;
    yield [`${p}.input_layernorm.weight`, [c.dim]];
    yield [`${p}.self_attn.q_proj.weight`, [c.nHeads * hd, c.dim]];
    yield [`${p}.self_attn.k_proj.weight`, [c.nKvHeads * hd, c.dim]];
    yield [`${p}.self_attn.v_proj.weight`, [c.nKvHeads * hd, c.dim]];
    yield [`${p}.self_attn.o_proj.weight`, [c.dim, c.nHeads * hd]];
    yield [`${p}.post_attention_layernorm.weight`, [c.dim]];
    yield [`${p}.mlp.gate_proj.weight`, [c.hiddenDim, c.dim]];
    yield [`${p}.mlp.up_proj.weight`, [c.hiddenDim, c.dim]];
    yield [`${p}.mlp.down_proj.weight`, [c.dim, c.hiddenDim]];
    if (c.qkvBias) {
      yield [`${p}.self_attn.q_proj.bias`, [c.nHeads * hd]];
      yield [`${p}.self_attn.k_proj.bias`, [c.nKvHeads * hd]];
      yield [`${p}.self_attn.v_proj.bias`, [c.nKvHeads * hd]];
    }
    if (hasQkNorm(c)) {
      yield [`${p}.self_attn.q_norm.weight`, [hd]];
      yield [`${p}.self_attn.k_norm.weight`, [hd]];
    }
    if (architectureOf(c) === 'gemma3') {
      yield [`${p}.pre_feedforward_layernorm.weight`, [c.dim]];
      yield [`${p}.post_feedforward_layernorm.weight`, [c.dim]];
    }
  }
  yield ['model.norm.weight', [c.dim]];
  if (!c.tieEmbeddings) yield ['lm_head.weight', [c.vocabSize, c.dim]];
}

/** The parameter names a config needs, lazily (a config may claim more than a file could hold). */
export function* llamaParamNames(c: LlamaConfig): Generator<string> {
  for (const [name] of llamaParamShapes(c)) yield name;
}

/** The weight name of projection `proj` (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) of block `layer`. */
export function projectionWeightName(layer: number, proj: string): string {
  const section = proj === 'gate_proj' || proj === 'up_proj' || proj === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${section}.${proj}.weight`;
}

/** The sliding window of layer `layer`, or Infinity for a layer that attends to the whole context. */
export function layerWindow(c: LlamaConfig, layer: number): number {
  return c.layerTypes?.[layer] === 'sliding_attention' ? c.slidingWindow! : Infinity;
}

/**
 * The inverse frequencies of Llama 3's scaled RoPE (transformers' _compute_llama3_parameters): wavelengths
 * longer than originalMaxPositions / lowFreqFactor are slowed by `factor`, those shorter than
 * originalMaxPositions / highFreqFactor kept, and those between interpolated smoothly.
 */
export function llama3InverseFrequencies(
  theta: number,
  dims: number,
  s: Extract<RopeScaling, { type: 'llama3' }>,
): Float64Array {
  const out = new Float64Array(dims / 2);
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  for (let i = 0; i < out.length; i++) {
    const inv = 1 / Math.pow(theta, (2 * i) / dims);
    const wavelen = (2 * Math.PI) / inv;
    if (wavelen < highWavelen) out[i] = inv;
    else if (wavelen > lowWavelen) out[i] = inv / s.factor;
    else {
      const smooth =
        (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = (1 - smooth) * (inv / s.factor) + smooth * inv;
    }
  }
  return out;
}

/**
 * What layer `layer`'s RoPE turns with: a base (plain RoPE) or explicit inverse frequencies (scaled RoPE).
 * Gemma 3's sliding-window layers use ropeLocalTheta unscaled; its global layers ropeTheta with the scaling.
 */
export function layerRope(c: LlamaConfig, layer: number): number | Float64Array {
  if (c.layerTypes?.[layer] === 'sliding_attention' && c.ropeLocalTheta !== undefined)
    return c.ropeLocalTheta;
  const s = c.ropeScaling;
  if (!s) return c.ropeTheta;
  const d = headDim(c);
  if (s.type === 'llama3') return llama3InverseFrequencies(c.ropeTheta, d, s);
  const out = new Float64Array(d / 2);
  for (let i = 0; i < out.length; i++) out[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / d) / s.factor;
  return out;
}

/** Hugging Face config.json for this model. */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  const arch = architectureOf(c);
  const names: Record<Architecture, [string, string]> = {
    llama: ['LlamaForCausalLM', 'llama'],
    qwen2: ['Qwen2ForCausalLM', 'qwen2'],
    qwen3: ['Qwen3ForCausalLM', 'qwen3'],
    gemma3: ['Gemma3ForCausalLM', 'gemma3_text'],
  };
  const out: Record<string, unknown> = {
    architectures: [names[arch][0]],
    model_type: names[arch][1],
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    intermediate_size: c.hiddenDim,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieEmbeddings,
    max_position_embeddings: c.maxSeqLen,
    hidden_act: 'silu',
    attention_bias: c.qkvBias,
    torch_dtype: 'float32',
  };
  if (c.headDim !== undefined) out.head_dim = c.headDim;
  const s = c.ropeScaling;
  if (s?.type === 'llama3')
    out.rope_scaling = {
      rope_type: 'llama3',
      factor: s.factor,
      low_freq_factor: s.lowFreqFactor,
      high_freq_factor: s.highFreqFactor,
      original_max_position_embeddings: s.originalMaxPositions,
    };
  else if (s?.type === 'linear') out.rope_scaling = { rope_type: 'linear', factor: s.factor };
  else if (arch !== 'llama' && arch !== 'qwen2') out.rope_scaling = null;
  if (arch === 'gemma3') {
    delete out.hidden_act;
    out.hidden_activation = 'gelu_pytorch_tanh';
    out.query_pre_attn_scalar = c.queryPreAttnScalar ?? headDim(c);
    out.sliding_window = c.slidingWindow;
    out.layer_types = c.layerTypes;
    out.rope_local_base_freq = c.ropeLocalTheta ?? 10000;
    out.attn_logit_softcapping = null;
    out.final_logit_softcapping = c.finalLogitSoftcap ?? null;
  } else if (c.finalLogitSoftcap !== undefined) out.final_logit_softcapping = c.finalLogitSoftcap;
  return out;
}

const HfConfigSchema = z.object({
  model_type: z.enum(['llama', 'qwen2', 'qwen3', 'gemma3_text']),
  vocab_size: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive().optional(),
  num_key_value_heads: z.number().int().positive().optional(),
  intermediate_size: z.number().int().positive(),
  head_dim: z.number().int().positive().nullish(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
  max_position_embeddings: z.number().int().positive().optional(),
  hidden_act: z.string().optional(),
  hidden_activation: z.string().nullish(),
  attention_bias: z.boolean().optional(),
  rope_scaling: z.record(z.string(), z.unknown()).nullish(),
  query_pre_attn_scalar: z.number().positive().nullish(),
  sliding_window: z.number().int().positive().nullish(),
  sliding_window_pattern: z.number().int().positive().nullish(),
  layer_types: z.array(z.string()).nullish(),
  rope_local_base_freq: z.number().positive().optional(),
  final_logit_softcapping: z.number().positive().nullish(),
  attn_logit_softcapping: z.number().nullish(),
});

/** Hugging Face defaults for fields a config.json may leave out (the transformers config classes' own). */
const HF_DEFAULTS = {
  llama: { rope_theta: 10000, tie_word_embeddings: false, max_position_embeddings: 2048, vocab_size: 32000 },
  qwen2: {
    rope_theta: 10000,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
    vocab_size: 151936,
  },
  qwen3: {
    rope_theta: 10000,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
    vocab_size: 151936,
  },
  gemma3_text: {
    rope_theta: 1e6,
    tie_word_embeddings: true,
    max_position_embeddings: 131072,
    vocab_size: 262208,
  },
} as const;

/** Reads the rope_scaling of a config.json; throws for kinds the engine does not implement, naming them. */
function ropeScalingFromHf(
  raw: Record<string, unknown> | null | undefined,
  source: string,
): RopeScaling | undefined {
  if (raw === null || raw === undefined) return undefined;
  const type = raw.rope_type ?? raw.type;
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number')
      throw new Error(
        `${source}: rope_scaling.${key} must be a number (rope_scaling ${JSON.stringify(raw)})`,
      );
    return v;
  };
  if (type === 'default') return undefined;
  if (type === 'llama3')
    return {
      type: 'llama3',
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor', 1),
      highFreqFactor: num('high_freq_factor', 4),
      originalMaxPositions: num('original_max_position_embeddings', 8192),
    };
  if (type === 'linear') return { type: 'linear', factor: num('factor') };
  throw new Error(
    `${source}: rope_scaling ${JSON.stringify(raw)} is not supported (the engine implements plain RoPE and the "llama3" and "linear" scalings)`,
  );
}

/** Gemma 3's layer kinds: layer_types, or every sliding_window_pattern-th layer global (the older form). */
function gemmaLayerTypes(
  h: { layer_types?: string[] | null; sliding_window_pattern?: number | null; num_hidden_layers: number },
  source: string,
): LayerType[] {
  if (h.layer_types) {
    const bad = h.layer_types.find((t) => !(LAYER_TYPES as readonly string[]).includes(t));
    if (bad !== undefined)
      throw new Error(
        `${source}: layer_types entry ${JSON.stringify(bad)} is not one of ${LAYER_TYPES.join(', ')}`,
      );
    return h.layer_types as LayerType[];
  }
  const pattern = h.sliding_window_pattern ?? 6;
  return Array.from({ length: h.num_hidden_layers }, (_, i) =>
    (i + 1) % pattern === 0 ? 'full_attention' : 'sliding_attention',
  );
}

/** The most positions a model read from a file is given; more would only allow sequences nothing here can hold. */
export const MAX_POSITIONS = 32768;

/** A file's context length as the engine takes it: at most MAX_POSITIONS, with a warning when it is cut. */
export function positionsFromFile(asked: number, source: string, field: string): number {
  if (asked <= MAX_POSITIONS) return asked;
  process.emitWarning(
    `${source}: ${field} is ${asked}; the engine takes at most ${MAX_POSITIONS} positions, so longer sequences are refused`,
    { code: 'PSM_POSITIONS_CLAMPED' },
  );
  return MAX_POSITIONS;
}

/** Reads a Hugging Face config.json object (Llama, Qwen2, Qwen3 or Gemma 3 text family). */
export function fromHfConfig(raw: unknown, source = 'config.json'): LlamaConfig {
  const r = HfConfigSchema.passthrough().safeParse(raw);
  if (!r.success)
    throw new Error(
      formatZodError(r.error, `${source} (supported: model_type llama, qwen2, qwen3 or gemma3_text)`),
    );
  const h = r.data;
  const type = h.model_type;
  const d = HF_DEFAULTS[type];
  const gemma = type === 'gemma3_text';
  const act = gemma ? (h.hidden_activation ?? h.hidden_act ?? 'gelu_pytorch_tanh') : (h.hidden_act ?? 'silu');
  const wantAct = gemma ? 'gelu_pytorch_tanh' : 'silu';
  if (act !== wantAct)
    throw new Error(
      `${source}: hidden activation ${JSON.stringify(act)} is not supported for ${type} (only ${wantAct})`,
    );
  if (gemma && h.attn_logit_softcapping !== null && h.attn_logit_softcapping !== undefined)
    throw new Error(
      `${source}: attn_logit_softcapping ${h.attn_logit_softcapping} is not supported (Gemma 2 style attention soft-capping)`,
    );
  if (type === 'qwen3' && h.attention_bias === true)
    throw new Error(
      `${source}: attention_bias true on a Qwen3 model adds q/k/v/o biases, which the engine lacks for qwen3`,
    );
  const nHeads = h.num_attention_heads ?? (gemma ? 8 : 32);
  const defaultHeadDim = type === 'qwen3' ? 128 : gemma ? 256 : undefined;
  const hd = h.head_dim ?? defaultHeadDim;
  const arch: Architecture | undefined = type === 'qwen3' ? 'qwen3' : gemma ? 'gemma3' : undefined;
  const input: LlamaConfigInput = {
    vocabSize: h.vocab_size ?? d.vocab_size,
    dim: h.hidden_size,
    nLayers: h.num_hidden_layers,
    nHeads,
    nKvHeads: h.num_key_value_heads ?? (gemma ? 4 : nHeads),
    hiddenDim: h.intermediate_size,
    normEps: h.rms_norm_eps ?? 1e-6,
    ropeTheta: h.rope_theta ?? d.rope_theta,
    tieEmbeddings: h.tie_word_embeddings ?? d.tie_word_embeddings,
    qkvBias: type === 'qwen2' ? true : (h.attention_bias ?? false),
    maxSeqLen: positionsFromFile(
      h.max_position_embeddings ?? d.max_position_embeddings,
      source,
      'max_position_embeddings',
    ),
  };
  if (arch) input.arch = arch;
  // A head_dim equal to hidden / heads is the default layout: left out, so PSM configs read back unchanged.
  if (hd !== undefined && hd * nHeads !== h.hidden_size) input.headDim = hd;
  else if (hd !== undefined && arch) input.headDim = hd;
  const scaling = ropeScalingFromHf(h.rope_scaling, source);
  if (scaling) input.ropeScaling = scaling;
  if (h.final_logit_softcapping) input.finalLogitSoftcap = h.final_logit_softcapping;
  if (gemma) {
    input.slidingWindow = h.sliding_window ?? 4096;
    input.layerTypes = gemmaLayerTypes(h, source);
    input.ropeLocalTheta = h.rope_local_base_freq ?? 10000;
    input.queryPreAttnScalar = h.query_pre_attn_scalar ?? 256;
  }
  return parseLlamaConfig(input, source);
}
