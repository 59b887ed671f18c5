/**
 * Model configuration, validated, and its mapping to and from a Hugging Face `config.json`
 * (LlamaForCausalLM, or Qwen2ForCausalLM when q/k/v carry biases).
 */
import { z } from 'zod';

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
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.dim % c.nHeads !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['dim'],
        message: `dim ${c.dim} is not divisible by nHeads ${c.nHeads}`,
      });
    if (c.nHeads % c.nKvHeads !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['nKvHeads'],
        message: `nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`,
      });
    if ((c.dim / c.nHeads) % 2 !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['nHeads'],
        message: 'head dimension must be even for rotary embeddings',
      });
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
  return c.dim / c.nHeads;
}

/** Hugging Face config.json for this model. */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  const qwen = c.qkvBias;
  return {
    architectures: [qwen ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: qwen ? 'qwen2' : 'llama',
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
}

const HfConfigSchema = z.object({
  model_type: z.enum(['llama', 'qwen2']),
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  intermediate_size: z.number().int().positive(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
  max_position_embeddings: z.number().int().positive().optional(),
  hidden_act: z.literal('silu').optional(),
  attention_bias: z.boolean().optional(),
});

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

/** Reads a Hugging Face config.json object (Llama or Qwen2 family). */
export function fromHfConfig(raw: unknown, source = 'config.json'): LlamaConfig {
  const r = HfConfigSchema.passthrough().safeParse(raw);
  if (!r.success)
    throw new Error(formatZodError(r.error, `${source} (supported: model_type llama or qwen2)`));
  const h = r.data;
  return parseLlamaConfig(
    {
      vocabSize: h.vocab_size,
      dim: h.hidden_size,
      nLayers: h.num_hidden_layers,
      nHeads: h.num_attention_heads,
      nKvHeads: h.num_key_value_heads ?? h.num_attention_heads,
      hiddenDim: h.intermediate_size,
      normEps: h.rms_norm_eps ?? 1e-6,
      ropeTheta: h.rope_theta ?? 10000,
      tieEmbeddings: h.tie_word_embeddings ?? false,
      qkvBias: h.model_type === 'qwen2' ? true : (h.attention_bias ?? false),
      maxSeqLen: positionsFromFile(h.max_position_embeddings ?? 2048, source, 'max_position_embeddings'),
    },
    source,
  );
}
