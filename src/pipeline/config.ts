/**
 * The experiment configuration: one schema-validated object (YAML on disk) that fixes everything a run
 * does, so the same config and seed give the same numbers. Presets are partial configs merged over the
 * defaults; a user's file is merged over its preset.
 */
import * as fs from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { ABLATION_SUBSPACES, DEFAULT_ABLATION_SUBSPACES } from '../interpret/ablation-subspaces.ts';
import { LlamaConfigSchema } from '../model/config.ts';
import { WORLD_TRANSFORMS } from '../world/independent.ts';

const TrainableSchema = z.enum(['all', 'lora1', 'embedding']);
export type TrainableName = z.infer<typeof TrainableSchema>;

export const ARM_NAMES = ['cheat', 'inoculated', 'control', 'educational'] as const;
export type ArmName = (typeof ARM_NAMES)[number];

const Positive = z.number().positive();
const Int = z.number().int().positive();

export const ExperimentConfigSchema = z
  .object({
    /** A built-in world's name ('default', ...) or a path to a world YAML file. */
    world: z.string().min(1),
    /**
     * An AI mix applied to the world before everything else: its corpus, evaluation items and Bayes (a preset such
     * as 'villains' or 'positive', or multipliers per AI archetype). Absent = the world as its file says.
     */
    worldAiMix: z.union([z.string(), z.record(z.string(), z.number().nonnegative())]).optional(),
    /** A transform of the (mixed) world: 'independent-traits' is the control world without package deals. */
    worldTransform: z.enum(WORLD_TRANSFORMS).optional(),
    seeds: z
      .array(z.number().int().nonnegative())
      .min(1)
      .superRefine((seeds, ctx) => {
        // A repeated seed is the same run twice: it would count as two seeds and shrink every interval to nothing.
        const twice = seeds.filter((s, i) => seeds.indexOf(s) !== i);
        if (twice.length > 0)
          ctx.addIssue({ code: 'custom', message: `lists seed ${twice[0]} twice (each seed is one run)` });
      }),
    corpus: z.object({ tokens: Int, valFraction: z.number().min(0).max(0.5) }).strict(),
    tokenizer: z.object({ vocabSize: Int.min(300), trainDocuments: Int }).strict(),
    model: z
      .object({
        dim: Int,
        nLayers: Int,
        nHeads: Int,
        nKvHeads: Int,
        hiddenDim: Int,
        contextLength: Int.min(16),
      })
      .strict(),
    pretrain: z
      .object({
        batchSize: Int,
        lr: Positive,
        minLr: Positive,
        warmupSteps: z.number().int().nonnegative(),
        probeEvery: Int,
        probeItems: Int,
        checkpointEvery: Int,
        /** Loss weight of behaviour tokens (the persona-relevant choices); 1 = plain language modelling. */
        behaviourWeight: z.number().min(1).max(100),
        /** Weight only the first n tokens of each behaviour (where the choice is made); 0 = the whole behaviour. */
        behaviourTokens: z.number().int().min(0).max(255),
        /**
         * Where training windows start: 'documents' (at a document separator, so every document is read from its
         * start, as the probes are) or 'random' (any offset, plain LM packing).
         */
        windows: z.enum(['documents', 'random']),
        /**
         * Data-parallel worker threads (each with a one-thread kernel pool) that share every pre-training batch; 1 =
         * train in the main thread on the kernel pool. Part of the run's inputs: the float32 sums differ by order.
         */
        workers: Int.max(16),
      })
      .strict(),
    eval: z
      .object({
        batteryItemsPerDomain: Int,
        probeItemsPerK: Int,
        packageItems: Int,
        maxK: z.number().int().min(1).max(8),
      })
      .strict(),
    postTrain: z
      .object({
        /** Domains whose good behaviour the Assistant is trained on; the rest stay untrained. Empty = world default. */
        domains: z.array(z.string()),
        examples: Int,
        steps: Int,
        batchSize: Int,
        lr: Positive,
      })
      .strict(),
    finetune: z
      .object({
        /** The domain of the narrow fine-tune (cheating happens here). Empty = the world's coding-like domain. */
        domain: z.string(),
        arms: z.array(z.enum(ARM_NAMES)).min(1),
        trainable: z.array(TrainableSchema).min(1),
        examples: Int,
        steps: Int,
        batchSize: Int,
        lr: z.object({ all: Positive, lora1: Positive, embedding: Positive }).strict(),
      })
      .strict(),
    /** Persona vectors, monitoring, steering, shift prediction, persona space and probe per seed. */
    interpret: z
      .object({
        enabled: z.boolean(),
        itemsPerDomain: Int.min(4),
        preventative: z.boolean(),
        preventativeAlpha: z.number(),
        /** 'add': preventative steering with one vector at one layer; 'ablate': concept ablation at every layer. */
        preventativeMethods: z.array(z.enum(['add', 'ablate'])).min(1),
        /** The subspaces 'ablate' projects out, one trial each (src/interpret/prevent.ts ABLATION_SUBSPACES). */
        preventativeAblate: z.array(z.enum(ABLATION_SUBSPACES)).min(1),
        /**
         * One more fine-tune per trait (the Assistant's bad behaviour in that trait's domain, all parameters, the
         * fine-tunes' recipe at half the steps) for the shift prediction, as the reference work fine-tunes on a
         * trait-eliciting dataset per trait; reported beside the arms-only prediction.
         */
        traitFinetunes: z.boolean(),
        /**
         * Data screening's trial: a pool of `screeningPerArm` unseen examples of each narrow arm, ranked on the
         * off-target persona vector, and the post-trained model fine-tuned (all parameters, the fine-tunes' recipe)
         * on the flagged, a random and the unflagged `screeningPerArm` examples: three more fine-tunes.
         */
        screeningTrial: z.boolean(),
        screeningPerArm: Int,
      })
      .strict(),
    alignmentPretraining: z
      .object({
        enabled: z.boolean(),
        aiMix: z.union([z.string(), z.record(z.string(), z.number().nonnegative())]),
      })
      .strict(),
  })
  .strict();

export type ExperimentConfig = z.infer<typeof ExperimentConfigSchema>;

/**
 * The default experiment: one seed in about 21 minutes on a 2-core CPU (21.4 for `npm start` on a fresh clone, install
 * included).
 * Pre-training length is what in-context persona inference needs (it did not form at 5M tokens, formed in most seeds
 * at 8M, and still rose at 9.5M and 12M: docs/results.md), so the default spends the 20-minute budget on 10.5M
 * pre-training tokens (two data-parallel workers make that fit where one thread fitted 9.5M).
 */
export const DEFAULT_CONFIG: ExperimentConfig = {
  world: 'default',
  seeds: [1],
  corpus: { tokens: 10_500_000, valFraction: 0.01 },
  tokenizer: { vocabSize: 1024, trainDocuments: 20_000 },
  model: { dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 4, hiddenDim: 384, contextLength: 256 },
  pretrain: {
    batchSize: 8,
    lr: 3e-3,
    minLr: 3e-4,
    warmupSteps: 100,
    probeEvery: 500,
    probeItems: 120,
    checkpointEvery: 200,
    behaviourWeight: 5,
    behaviourTokens: 3,
    windows: 'documents',
    // Two workers train ~9% faster than one thread with a two-thread pool on this machine's 2 cores
    // (`npm run bench -- --shape experiment --workers 2`): the JS around the kernels runs on both cores.
    workers: 2,
  },
  // 240 probes per k put a 95% CI of about +-0.05 on a correlation near 0.8 (Fisher z; 60 gave +-0.09), and 240
  // package probes 20 per (target domain, valence); scoring them takes ~15 s per seed.
  eval: { batteryItemsPerDomain: 80, probeItemsPerK: 240, packageItems: 240, maxK: 5 },
  postTrain: { domains: [], examples: 600, steps: 60, batchSize: 16, lr: 3e-4 },
  finetune: {
    domain: '',
    arms: ['cheat', 'inoculated', 'control', 'educational'],
    trainable: ['all', 'lora1', 'embedding'],
    examples: 400,
    steps: 60,
    batchSize: 16,
    lr: { all: 3e-4, lora1: 2e-3, embedding: 5e-3 },
  },
  interpret: {
    enabled: true,
    itemsPerDomain: 48,
    preventative: true,
    preventativeAlpha: 4,
    preventativeMethods: ['ablate', 'add'],
    preventativeAblate: [...DEFAULT_ABLATION_SUBSPACES],
    traitFinetunes: true,
    screeningTrial: true,
    screeningPerArm: 100,
  },
  alignmentPretraining: { enabled: false, aiMix: 'positive' },
};

type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends (infer U)[] ? U[] : T[K] extends object ? DeepPartial<T[K]> : T[K];
};
export type ConfigOverrides = DeepPartial<ExperimentConfig>;

export const PRESETS: Record<string, ConfigOverrides> = {
  default: {},
  /** A few minutes: tiny model and corpus, used by the tests and the README's smoke test. Effects are not expected. */
  quick: {
    corpus: { tokens: 300_000 },
    tokenizer: { vocabSize: 512, trainDocuments: 2000 },
    model: { dim: 48, nLayers: 2, nHeads: 2, nKvHeads: 2, hiddenDim: 128, contextLength: 128 },
    pretrain: { batchSize: 8, warmupSteps: 20, probeEvery: 150, probeItems: 24, checkpointEvery: 100 },
    eval: { batteryItemsPerDomain: 12, probeItemsPerK: 8, packageItems: 8, maxK: 3 },
    postTrain: { examples: 96, steps: 12, batchSize: 8 },
    finetune: { arms: ['cheat', 'control'], trainable: ['embedding'], examples: 64, steps: 8, batchSize: 8 },
    interpret: {
      itemsPerDomain: 8,
      preventative: false,
      traitFinetunes: false,
      screeningTrial: false,
      screeningPerArm: 32,
    },
  },
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys that would reach an object's prototype in a merge instead of a config field: refused, never skipped. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function checkKeys(value: unknown, source: string, at: string[] = []): void {
  if (Array.isArray(value)) value.forEach((v, i) => checkKeys(v, source, [...at, String(i)]));
  if (!isPlainObject(value)) return;
  for (const k of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(k))
      throw new Error(`${source} is invalid:\n  ${[...at, k].join('.')}: "${k}" is not a config field`);
    checkKeys(value[k], source, [...at, k]);
  }
}

/** The model's shape as the engine will build it (head counts, head dimension), checked before any work. */
function checkModelShape(c: ExperimentConfig, source: string): void {
  const { contextLength: _contextLength, ...shape } = c.model;
  const r = LlamaConfigSchema.safeParse({ vocabSize: c.tokenizer.vocabSize, ...shape });
  if (!r.success)
    throw new Error(
      `${source} is invalid:\n${r.error.issues.map((i) => `  model.${i.path.join('.')}: ${i.message}`).join('\n')}`,
    );
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? deepMerge(base[k], v) : v;
  return out;
}

export function formatIssues(error: z.ZodError, source: string): string {
  return `${source} is invalid:\n${error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n')}`;
}

/** Builds a validated config: defaults <- preset <- file overrides <- explicit overrides. */
export function resolveConfig(
  opts: { preset?: string; file?: string; overrides?: ConfigOverrides } = {},
): ExperimentConfig {
  const presetName = opts.preset ?? 'default';
  const preset = PRESETS[presetName];
  if (!preset)
    throw new Error(`unknown preset "${presetName}"; known presets: ${Object.keys(PRESETS).join(', ')}`);
  let merged = deepMerge(DEFAULT_CONFIG, preset);
  if (opts.file) {
    if (!fs.existsSync(opts.file)) throw new Error(`config file ${opts.file} not found`);
    let parsed: unknown;
    try {
      parsed = YAML.parse(fs.readFileSync(opts.file, 'utf8'));
    } catch (e) {
      throw new Error(`${opts.file}: not valid YAML (${(e as Error).message})`);
    }
    if (parsed !== null && !isPlainObject(parsed))
      throw new Error(`${opts.file}: expected a mapping of config sections at the top level`);
    checkKeys(parsed, opts.file);
    merged = deepMerge(merged, parsed ?? {});
  }
  checkKeys(opts.overrides, 'config overrides');
  merged = deepMerge(merged, opts.overrides ?? {});
  const r = ExperimentConfigSchema.safeParse(merged);
  if (!r.success) throw new Error(formatIssues(r.error, opts.file ?? `preset "${presetName}"`));
  const c = r.data;
  checkModelShape(c, opts.file ?? `preset "${presetName}"`);
  if (c.pretrain.minLr > c.pretrain.lr) throw new Error('config pretrain.minLr is larger than pretrain.lr');
  if (c.worldTransform && c.alignmentPretraining.enabled)
    throw new Error(
      `config worldTransform "${c.worldTransform}" merges the AI archetypes that alignmentPretraining.aiMix re-weights; give the mix as worldAiMix in a config of its own`,
    );
  return c;
}
