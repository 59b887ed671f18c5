/**
 * The PSM experiment, end to end: corpus -> pre-training (tracking in-context persona inference) -> persona
 * check -> post-training of the Assistant -> narrow fine-tune arms x trainable sets -> measurements beside the
 * exact Bayesian persona model. Every stage is cached by the hash of its inputs in the run folder and resumes
 * after a kill; pre-training resumes from its own checkpoints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { appendJsonLineSync, readJsonLinesSync } from '../io/json-lines.ts';
import { parseLlamaConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { loadModelFolder, saveModelFolder } from '../model/weights.ts';
import { configureBackend } from '../tensor/backend.ts';
import {
  loadTokenizerSync,
  saveTokenizerSync,
  tokenizerToJson,
  trainBpe,
  type BpeTokenizer,
} from '../tokenizer/index.ts';
import { TokenWindowSource } from '../training/data.ts';
import { fineTuneInPlace } from '../training/finetune.ts';
import { batchLoss, Trainer } from '../training/trainer.ts';
import { noGrad } from '../autograd/tensor.ts';
import {
  assistantUpdate,
  batteryItems,
  datasetEvidence,
  END_OF_TEXT,
  eotIdOf,
  generateDocuments,
  inferenceProbes,
  loadBehaviourMask,
  loadShardTokens,
  loadWorldVariant,
  narrowSet,
  packageProbes,
  postTrainingSet,
  supervisedChats,
  trainableSpec,
  worldHash,
  writeBehaviourMask,
  writeCorpus,
  type AiMix,
  type ChatExample,
  type EvalItem,
  type Evidence,
  type World,
} from '../world/index.ts';
import type { ArmName, ExperimentConfig, TrainableName } from './config.ts';
import { batteryResult, personaCheck, pGoodWithProgress } from './measure.ts';
import type { ProgressFactory } from './progress.ts';
import type {
  ArmResult,
  BatteryResult,
  PersonaCheck,
  PretrainProbe,
  RunResults,
  SeedResult,
} from './results.ts';
import { hashInputs, readStageRecord, runStage, stageInputsHash } from './stage.ts';
import { renderReport } from './report.ts';
import {
  INTERPRET_VERSION,
  interpretRun,
  type InterpretRunOptions,
  type InterpretSummary,
  type ScreeningSubset,
} from '../interpret/index.ts';
import { pearson, mean } from '../measurement/stats.ts';

export const RESULTS_VERSION = 1;

export interface RunOptions {
  runDir: string;
  force?: boolean;
  progress: ProgressFactory;
  log: (line: string) => void;
}

/** Effective evidence per training example in the Bayesian Assistant update (see bayes.ts, `temper`). */
export const BAYES_TEMPER = 0.02;

/** The items a run measures every seed's models on. */
export interface EvalItemSets {
  /** The Assistant's trait battery (the eval-* stages). */
  battery: EvalItem[];
  /** In-context persona inference probes and package-deal probes (the persona check). */
  inference: EvalItem[];
  pkg: EvalItem[];
  /** Inference probes tracked during pre-training. */
  pretrainProbes: EvalItem[];
}

interface Context extends EvalItemSets {
  config: ExperimentConfig;
  world: World;
  opts: RunOptions;
  domains: string[];
  trained: string[];
  untrained: string[];
  finetuneDomain: string;
}

/** The run's evaluation items, drawn from the config's eval settings with fixed seeds (the same in every seed). */
export function evalItemSets(config: ExperimentConfig, world: World): EvalItemSets {
  const nd = world.domains.length;
  const e = config.eval;
  const ks = Array.from({ length: e.maxK + 1 }, (_, k) => k);
  return {
    battery: batteryItems(world, {
      seed: 5,
      batteryPerDomain: e.batteryItemsPerDomain,
      batteryFormats: ['chat'],
    }),
    inference: inferenceProbes(world, {
      seed: 7,
      ks,
      inferencePerCell: Math.max(1, Math.ceil(e.probeItemsPerK / nd)),
    }),
    pkg: packageProbes(world, {
      seed: 9,
      packagePerCell: Math.max(1, Math.ceil(e.packageItems / (2 * nd))),
      // Three scenes of evidence where the world has enough other domains (a small world may not).
      packageScenes: Math.min(3, nd - 1),
    }),
    pretrainProbes: inferenceProbes(world, {
      seed: 8,
      ks: ks.filter((k) => k >= 1),
      inferencePerCell: Math.max(1, Math.ceil(config.pretrain.probeItems / (nd * e.maxK))),
    }),
  };
}

/**
 * The interpretation's options that depend on the run's config (item count, the fine-tune domain, and the trials that
 * fine-tune again: trait fine-tunes, screening, preventative), as `psm run` passes them to `interpretRun` for a seed;
 * `psm interpret` passes the same for a seed folder of a run, so that it redoes the pipeline's interpretation.
 */
export function interpretStudies(
  c: ExperimentConfig,
  world: World,
  seed: number,
  finetuneDomain: string,
): Pick<
  InterpretRunOptions,
  | 'itemsPerDomain'
  | 'finetuneDomain'
  | 'traitFinetunes'
  | 'screeningExamples'
  | 'screeningTrial'
  | 'preventative'
> {
  const recipe = {
    trainable: { kind: 'all' } as const,
    steps: c.finetune.steps,
    batchSize: c.finetune.batchSize,
    lr: c.finetune.lr.all,
  };
  return {
    itemsPerDomain: c.interpret.itemsPerDomain,
    finetuneDomain,
    traitFinetunes: c.interpret.traitFinetunes
      ? { ...recipe, examples: c.finetune.examples, steps: Math.max(1, Math.round(c.finetune.steps / 2)) }
      : undefined,
    screeningExamples: c.interpret.screeningPerArm,
    screeningTrial:
      c.interpret.screeningTrial && c.finetune.arms.length >= 2
        ? {
            ...recipe,
            arms: c.finetune.arms,
            perArm: c.interpret.screeningPerArm,
            count: c.interpret.screeningPerArm,
            seed,
          }
        : undefined,
    preventative:
      c.interpret.preventative && c.finetune.arms.includes('cheat')
        ? {
            ...recipe,
            examples: narrowSet(world, 'cheat', { seed, count: c.finetune.examples, domain: finetuneDomain }),
            seed,
            alpha: c.interpret.preventativeAlpha,
            methods: c.interpret.preventativeMethods,
            ablate: c.interpret.preventativeAblate,
            // The plain trial is the cheat arm's fine-tune with all parameters (narrowArms: the same examples from
            // the post-trained model, with finetune.steps, batchSize, lr.all and the seed): it is not trained twice.
            ...(c.finetune.trainable.includes('all') ? { plainArm: { arm: 'cheat', trainable: 'all' } } : {}),
          }
        : undefined,
  };
}

/** The domains post-training demonstrates: the config's, else the world's. */
export function trainedDomains(config: ExperimentConfig, world: World): string[] {
  return config.postTrain.domains.length > 0 ? config.postTrain.domains : world.datasets.trainedDomains;
}

/** The evidence post-training gave a seed's Assistant (its training set's counts), as `psm run` draws the set. */
export function postTrainingEvidence(config: ExperimentConfig, world: World, seed: number): Evidence[] {
  return datasetEvidence(
    postTrainingSet(world, {
      seed,
      domains: trainedDomains(config, world),
      count: config.postTrain.examples,
    }),
  );
}

/** The config's world, AI mix and transform: the world every stage (corpus, items, Bayes) reads. */
export function loadExperimentWorld(config: ExperimentConfig): World {
  return loadWorldVariant({
    world: config.world,
    aiMix: config.worldAiMix,
    transform: config.worldTransform,
  });
}

function appendMetric(ctx: Context, record: Record<string, unknown>): void {
  appendJsonLineSync(path.join(ctx.opts.runDir, 'metrics.jsonl'), {
    time: new Date().toISOString(),
    ...record,
  });
}

function modelConfig(ctx: Context, vocabSize: number) {
  return experimentModelConfig(ctx.config, vocabSize);
}

/** The model an experiment config pre-trains, for a tokenizer of `vocabSize` (also what `psm profile step` builds). */
export function experimentModelConfig(config: ExperimentConfig, vocabSize: number) {
  const m = config.model;
  return parseLlamaConfig({
    vocabSize,
    dim: m.dim,
    nLayers: m.nLayers,
    nHeads: m.nHeads,
    nKvHeads: m.nKvHeads,
    hiddenDim: m.hiddenDim,
    // Rotary positions are relative, so scoring may run past the training window (long k = 5 probes).
    maxSeqLen: Math.max(2 * m.contextLength, 512),
    tieEmbeddings: true,
  });
}

/**
 * What a seed's corpus is made of: its stage's cache key, whose hash (corpusHash) the model stages build their own
 * keys on. aiMix is the alignment variant's mix of AI archetypes (undefined: the world's own). The world enters by
 * its content (worldHash), not the path of the file it was read from, so a run folder resumes from another clone or
 * on a sweep worker elsewhere. A seed folder whose corpus was keyed with the whole world object, path included (as
 * before), keeps that key, and with it every later stage's.
 */
function corpusInputs(ctx: Context, seedDir: string, seed: number, aiMix: AiMix | undefined) {
  const c = ctx.config;
  const inputs = { world: worldHash(ctx.world), seed, corpus: c.corpus, tokenizer: c.tokenizer, aiMix };
  const keyedByFile = { ...inputs, world: ctx.world };
  const recorded = readStageRecord(path.join(seedDir, 'corpus'))?.inputsHash;
  return recorded === stageInputsHash(keyedByFile) ? keyedByFile : inputs;
}

/** What a seed's pre-trained model is made of: its stage's cache key, and (hashed) preHash. */
function pretrainInputs(ctx: Context, corpusHash: string, seed: number) {
  const c = ctx.config;
  return { corpusHash, model: c.model, pretrain: c.pretrain, seed };
}

async function corpusStage(
  ctx: Context,
  dir: string,
  seed: number,
  aiMix: AiMix | undefined,
  inputs: ReturnType<typeof corpusInputs>,
) {
  const c = ctx.config;
  return runStage(
    path.join(dir, 'corpus'),
    'corpus',
    inputs,
    async ({ dir: stageDir }) => {
      const t0 = Date.now();
      const sample = generateDocuments(ctx.world, {
        seed,
        documents: c.tokenizer.trainDocuments,
        aiMix,
        valFraction: c.corpus.valFraction,
      });
      const tokenizer = trainBpe(
        (function* () {
          for (const d of sample) yield d.text;
        })(),
        { vocabSize: c.tokenizer.vocabSize, specialTokens: [END_OF_TEXT] },
      );
      saveTokenizerSync(tokenizer, path.join(stageDir, 'tokenizer.json'));
      if (tokenizer.vocabSize < c.tokenizer.vocabSize)
        ctx.opts.log(
          `warning: tokenizer.vocabSize is ${c.tokenizer.vocabSize}, but ${c.tokenizer.trainDocuments} documents of this world give only ${tokenizer.vocabSize} tokens; the model's vocabulary is ${tokenizer.vocabSize}`,
        );
      const bar = ctx.opts.progress('corpus', c.corpus.tokens, 'tokens');
      const result = await writeCorpus(ctx.world, {
        out: path.join(stageDir, 'data'),
        force: true,
        seed,
        tokens: c.corpus.tokens,
        valFraction: c.corpus.valFraction,
        aiMix,
        tokenizer,
        progressEvery: 2000,
        onProgress: (p) => bar.update(Math.min(p.tokens, c.corpus.tokens)),
      });
      bar.stop();
      const dataDir = path.join(stageDir, 'data');
      const masked = writeBehaviourMask(
        ctx.world,
        { seed, tokens: c.corpus.tokens, valFraction: c.corpus.valFraction, aiMix },
        tokenizer,
        path.join(dataDir, 'train.json'),
        path.join(dataDir, 'train-behaviour-mask.bin'),
      );
      ctx.opts.log(
        `corpus: ${((100 * masked.behaviourTokens) / masked.tokens).toFixed(1)}% of training tokens show a behaviour`,
      );
      const s = result.stats as unknown as { documents?: number; tokens?: number };
      return {
        documents: s.documents ?? null,
        tokens: result.shards?.train.tokens ?? 0,
        valTokens: result.shards?.val.tokens ?? 0,
        seconds: (Date.now() - t0) / 1000,
      };
    },
    { force: ctx.opts.force, log: ctx.opts.log },
  );
}

function evalPretrainProbes(ctx: Context, model: LlamaModel, tokenizer: BpeTokenizer) {
  const p = pGoodWithProgress(
    model,
    tokenizer,
    ctx.pretrainProbes,
    () => ({ update() {}, stop() {} }),
    'probes',
  );
  const good = ctx.pretrainProbes.map((it) => it.bayesPGood);
  const consistency = mean(ctx.pretrainProbes.map((it, i) => (it.consistent === 'good' ? p[i] : 1 - p[i])));
  return { correlation: pearson(p, good), mae: mean(p.map((v, i) => Math.abs(v - good[i]))), consistency };
}

async function pretrainStage(ctx: Context, dir: string, seed: number, corpusHash: string) {
  const c = ctx.config;
  return runStage(
    path.join(dir, 'pretrain'),
    'pretrain',
    pretrainInputs(ctx, corpusHash, seed),
    async ({ dir: stageDir, resuming }) => {
      const t0 = Date.now();
      const corpusDir = path.join(dir, 'corpus');
      const tokenizer = loadTokenizerSync(path.join(corpusDir, 'tokenizer.json'));
      const train = loadShardTokens(path.join(corpusDir, 'data', 'train.json'));
      const val = loadShardTokens(path.join(corpusDir, 'data', 'val.json'));
      const ctxLen = c.model.contextLength;
      const steps = Math.max(1, Math.floor(train.length / (c.pretrain.batchSize * ctxLen)));
      const model = new LlamaModel(modelConfig(ctx, tokenizer.vocabSize)).initialize(seed);
      const emphasis =
        c.pretrain.behaviourWeight === 1
          ? null
          : {
              mask: loadBehaviourMask(path.join(corpusDir, 'data', 'train-behaviour-mask.bin'), train.length),
              weight: c.pretrain.behaviourWeight,
              maxRank: c.pretrain.behaviourTokens,
            };
      const separator = c.pretrain.windows === 'documents' ? eotIdOf(tokenizer) : null;
      const source = new TokenWindowSource(train, c.pretrain.batchSize, ctxLen, seed, emphasis, separator);
      const trainer = new Trainer(model, source, {
        schedule: {
          peakLr: c.pretrain.lr,
          minLr: c.pretrain.minLr,
          warmupSteps: c.pretrain.warmupSteps,
          totalSteps: steps,
        },
        trainable: { kind: 'all' },
        seed,
        workers: c.pretrain.workers,
        checkpointDir: path.join(stageDir, 'checkpoints'),
        checkpointEvery: c.pretrain.checkpointEvery,
        extraFiles: { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) },
      });
      const from = trainer.resume();
      if (resuming && from > 0) ctx.opts.log(`pretrain: resuming at step ${from} of ${steps}`);
      // Training time survives a resume: the seconds spent up to each checkpoint are saved beside it.
      const elapsedFile = path.join(stageDir, 'checkpoints', 'elapsed.json');
      let before = 0;
      if (from > 0 && fs.existsSync(elapsedFile)) {
        const saved = JSON.parse(fs.readFileSync(elapsedFile, 'utf8')) as { step: number; seconds: number };
        if (saved.step === from) before = saved.seconds;
      }
      const probesFile = path.join(stageDir, 'probes.jsonl');
      const probes = readJsonLinesSync<PretrainProbe>(probesFile).filter((p) => p.step <= from);
      atomicWriteFileSync(probesFile, probes.map((p) => JSON.stringify(p) + '\n').join(''));
      const bar = ctx.opts.progress('pretrain', steps, 'steps');
      bar.update(from);
      let lossEma = NaN;
      const probe = (step: number, loss: number) => {
        const m = evalPretrainProbes(ctx, model, tokenizer);
        const rec: PretrainProbe = { step, tokens: step * c.pretrain.batchSize * ctxLen, loss, ...m };
        probes.push(rec);
        appendJsonLineSync(probesFile, rec);
        appendMetric(ctx, { seed, stage: 'pretrain-probe', ...rec });
      };
      if (!probes.some((p) => p.step === 0)) probe(0, NaN);
      trainer.run((info) => {
        lossEma = Number.isNaN(lossEma) ? info.loss : 0.95 * lossEma + 0.05 * info.loss;
        bar.update(info.step, {
          loss: lossEma,
          persona_r: probes.length ? probes[probes.length - 1].correlation : NaN,
        });
        if (info.step % c.pretrain.probeEvery === 0 || info.step === steps) probe(info.step, info.loss);
        if (info.step % c.pretrain.checkpointEvery === 0)
          atomicWriteJsonSync(elapsedFile, { step: info.step, seconds: before + (Date.now() - t0) / 1000 });
      });
      bar.stop();
      // Losses on fixed batches, so a resumed run reports the same numbers as an uninterrupted one; the windows
      // start where training's do (a model trained on document windows never reads one that starts mid-document).
      const fixedLoss = (tokens: Uint16Array) =>
        noGrad(() => {
          const vs = new TokenWindowSource(tokens, c.pretrain.batchSize, ctxLen, 12345, null, separator);
          let s = 0;
          for (let i = 0; i < 4; i++) s += batchLoss(model, vs.next()).loss.item();
          return s / 4;
        });
      const valLoss = fixedLoss(val);
      const finalLoss = fixedLoss(train);
      saveModelFolder(path.join(stageDir, 'model'), model, {
        'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)),
      });
      fs.rmSync(path.join(stageDir, 'checkpoints'), { recursive: true, force: true });
      return {
        steps,
        tokens: steps * c.pretrain.batchSize * ctxLen,
        finalLoss,
        valLoss,
        probes,
        seconds: before + (Date.now() - t0) / 1000,
      };
    },
    { force: ctx.opts.force, log: ctx.opts.log },
  );
}

function bayesFor(
  ctx: Context,
  evidence: readonly Evidence[],
  base: readonly Evidence[] = [],
): Record<string, number> {
  return assistantUpdate(ctx.world, evidence, { base, temper: BAYES_TEMPER, kind: 'ai' }).after.pGood;
}

/**
 * Bayes's off-target change for each part of the screening trial: the evidence of its examples (all examples of one
 * narrow arm are alike, so its counts per arm say it all) on top of post-training's, against post-training's alone.
 */
export function screeningBayesChanges(
  world: World,
  parts: readonly Pick<ScreeningSubset, 'name' | 'sources'>[],
  opts: { postEvidence: readonly Evidence[]; seed: number; finetuneDomain: string },
): { part: string; offTargetChange: number }[] {
  const off = world.domains.map((d) => d.name).filter((d) => d !== opts.finetuneDomain);
  return parts.map((part) => {
    const examples = Object.entries(part.sources).flatMap(([arm, n]) =>
      n > 0
        ? narrowSet(world, arm as ArmName, { seed: opts.seed, count: n, domain: opts.finetuneDomain })
        : [],
    );
    const { before, after } = assistantUpdate(world, datasetEvidence(examples), {
      base: opts.postEvidence,
      temper: BAYES_TEMPER,
      kind: 'ai',
    });
    return { part: part.name, offTargetChange: mean(off.map((d) => after.pGood[d] - before.pGood[d])) };
  });
}

function offTarget(ctx: Context): string[] {
  return ctx.domains.filter((d) => d !== ctx.finetuneDomain);
}

async function batteryStage(
  ctx: Context,
  stageDir: string,
  label: string,
  modelDir: string,
  modelHash: string,
  bayes: Record<string, number> | null,
): Promise<BatteryResult> {
  return runStage(
    stageDir,
    `battery:${label}`,
    { modelHash, items: ctx.config.eval.batteryItemsPerDomain, bayes },
    () => {
      const model = loadModelFolder(modelDir);
      const tokenizer = loadTokenizerSync(path.join(modelDir, 'tokenizer.json'));
      const p = pGoodWithProgress(model, tokenizer, ctx.battery, ctx.opts.progress, `battery ${label}`);
      return batteryResult(label, ctx.battery, p, ctx.domains, ctx.untrained, offTarget(ctx), bayes);
    },
    { force: ctx.opts.force, log: ctx.opts.log },
  );
}

/** A supervised fine-tune of a model folder on chats: post-training, and each narrow arm. */
interface SupervisedStageOptions {
  stageDir: string;
  /** The stage's name (its progress bar's too). */
  label: string;
  /** The model to start from, and the hash that names it in the cache key. */
  fromDir: string;
  fromHash: string;
  examples: ChatExample[];
  trainable: TrainableName;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
}

async function supervisedStage(
  ctx: Context,
  o: SupervisedStageOptions,
): Promise<{ modelDir: string; finalLoss: number }> {
  const { stageDir, label, fromDir, fromHash, examples, trainable, steps, batchSize, lr, seed } = o;
  const inputs = { fromHash, label, examples: hashInputs(examples), trainable, steps, batchSize, lr, seed };
  const result = await runStage(
    stageDir,
    label,
    inputs,
    () => {
      const model = loadModelFolder(fromDir);
      const tokenizer = loadTokenizerSync(path.join(fromDir, 'tokenizer.json'));
      const bar = ctx.opts.progress(label, steps, 'steps');
      const { finalLoss: last } = fineTuneInPlace(model, supervisedChats(tokenizer, examples), {
        trainable: trainableSpec(trainable, tokenizer),
        steps,
        batchSize,
        lr,
        seed,
        onStep: (step, loss) => bar.update(step, { loss }),
      });
      bar.stop();
      const modelDir = path.join(stageDir, 'model');
      saveModelFolder(modelDir, model, { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) });
      return { modelDir, finalLoss: last };
    },
    { force: ctx.opts.force, log: ctx.opts.log },
  );
  // The recorded path is relative to where the run was started; the folder is where the stage is now.
  return { ...result, modelDir: path.join(stageDir, 'model') };
}

function targetDomainPGood(b: BatteryResult, domain: string): number {
  return b.domains.find((d) => d.domain === domain)?.pGood.mean ?? NaN;
}

/** Bumped when the persona check records more (2: evidence weights), so `--force` recomputes it. */
const PERSONA_CHECK_VERSION = 2;

/** A model a seed's later stages build on: its folder, and the hash that names it in their cache keys. */
interface SeedModel {
  modelDir: string;
  hash: string;
}

/**
 * One seed of one variant, stage by stage; each stage is cached in <run>/<variant>-seed<N>/<stage> and names the
 * models it starts from by hash, so a changed input reruns it and everything after it.
 */
async function runSeed(
  ctx: Context,
  variant: string,
  seed: number,
  aiMix: AiMix | undefined,
): Promise<SeedResult> {
  const dir = path.join(ctx.opts.runDir, `${variant}-seed${seed}`);
  ctx.opts.log(`== ${variant}, seed ${seed}`);
  const { pretrain, pre } = await pretrainedModel(ctx, dir, seed, aiMix);
  const check = await personaCheckStage(ctx, dir, variant, seed, pre);
  const base = await batteryStage(
    ctx,
    path.join(dir, 'eval-base'),
    'base',
    pre.modelDir,
    pre.hash,
    bayesFor(ctx, []),
  );
  const post = await postTrainedModel(ctx, dir, seed, pre);
  const arms = await narrowArms(ctx, dir, variant, seed, post);
  const interpret = ctx.config.interpret.enabled
    ? await interpretStage(ctx, dir, seed, pre, post, arms)
    : undefined;
  const screeningBayes = interpret?.screeningTrial
    ? screeningBayesChanges(ctx.world, interpret.screeningTrial.subsets, {
        postEvidence: post.evidence,
        seed,
        finetuneDomain: ctx.finetuneDomain,
      })
    : undefined;
  return {
    seed,
    variant,
    pretrain,
    personaCheck: check,
    base,
    posttrained: post.battery,
    arms,
    interpret,
    ...(screeningBayes ? { screeningBayes } : {}),
  };
}

/** The seed's corpus (with its tokenizer) and the model pre-trained on it. */
async function pretrainedModel(ctx: Context, dir: string, seed: number, aiMix: AiMix | undefined) {
  const inputs = corpusInputs(ctx, dir, seed, aiMix);
  await corpusStage(ctx, dir, seed, aiMix, inputs);
  const corpusHash = hashInputs(inputs);
  const pretrain = await pretrainStage(ctx, dir, seed, corpusHash);
  const pre: SeedModel = {
    modelDir: path.join(dir, 'pretrain', 'model'),
    hash: hashInputs(pretrainInputs(ctx, corpusHash, seed)),
  };
  return { pretrain, pre };
}

/** In-context persona inference of the pre-trained model against Bayes; a loud warning when it has not emerged. */
async function personaCheckStage(
  ctx: Context,
  dir: string,
  variant: string,
  seed: number,
  pre: SeedModel,
): Promise<PersonaCheck> {
  const check: PersonaCheck = await runStage(
    path.join(dir, 'persona-check'),
    'persona-check',
    { preHash: pre.hash, eval: ctx.config.eval, version: PERSONA_CHECK_VERSION },
    () => {
      const model = loadModelFolder(pre.modelDir);
      const tokenizer = loadTokenizerSync(path.join(pre.modelDir, 'tokenizer.json'));
      const pInf = pGoodWithProgress(model, tokenizer, ctx.inference, ctx.opts.progress, 'persona inference');
      const pPkg = pGoodWithProgress(model, tokenizer, ctx.pkg, ctx.opts.progress, 'package deal');
      return personaCheck(ctx.inference, pInf, ctx.pkg, pPkg, ctx.config.eval.maxK);
    },
    { force: ctx.opts.force, log: ctx.opts.log },
  );
  appendMetric(ctx, { seed, variant, stage: 'persona-check', ...check });
  if (!check.emerged) {
    ctx.opts.log(
      `WARNING: in-context persona inference has NOT fully emerged after pre-training (mean item-level correlation with Bayes ${check.meanCorrelation.toFixed(2)} < 0.5, ` +
        `package deal ${check.packageDeal[0].model.toFixed(2)} vs ${check.packageDeal[1].model.toFixed(2)}). Everything after depends on it: ` +
        'expect weak or absent post-training generalisation and emergent misalignment. Train longer (corpus.tokens) or use a larger model.',
    );
  }
  return check;
}

/** The post-trained Assistant: the evidence post-training gave it, the model, and its battery beside Bayes's. */
async function postTrainedModel(ctx: Context, dir: string, seed: number, pre: SeedModel) {
  const c = ctx.config;
  const examples = postTrainingSet(ctx.world, { seed, domains: ctx.trained, count: c.postTrain.examples });
  const evidence = datasetEvidence(examples);
  const { modelDir } = await supervisedStage(ctx, {
    stageDir: path.join(dir, 'posttrain'),
    label: 'posttrain',
    fromDir: pre.modelDir,
    fromHash: pre.hash,
    examples,
    trainable: 'all',
    steps: c.postTrain.steps,
    batchSize: c.postTrain.batchSize,
    lr: c.postTrain.lr,
    seed,
  });
  const hash = hashInputs({ preHash: pre.hash, postTrain: c.postTrain, seed });
  const battery = await batteryStage(
    ctx,
    path.join(dir, 'eval-posttrain'),
    'post-trained',
    modelDir,
    hash,
    bayesFor(ctx, evidence),
  );
  return { modelDir, hash, evidence, battery };
}

/** Each narrow arm fine-tuned from the post-trained model with each trainable set, and its battery. */
async function narrowArms(
  ctx: Context,
  dir: string,
  variant: string,
  seed: number,
  post: SeedModel & { evidence: Evidence[] },
): Promise<ArmResult[]> {
  const c = ctx.config;
  const arms: ArmResult[] = [];
  for (const arm of c.finetune.arms) {
    const examples = narrowSet(ctx.world, arm, {
      seed,
      count: c.finetune.examples,
      domain: ctx.finetuneDomain,
    });
    const bayes = bayesFor(ctx, datasetEvidence(examples), post.evidence);
    for (const trainable of c.finetune.trainable) {
      const name = `ft-${arm}-${trainable}`;
      const ft = await supervisedStage(ctx, {
        stageDir: path.join(dir, name),
        label: name,
        fromDir: post.modelDir,
        fromHash: post.hash,
        examples,
        trainable,
        steps: c.finetune.steps,
        batchSize: c.finetune.batchSize,
        lr: c.finetune.lr[trainable],
        seed,
      });
      const ftHash = hashInputs({ postHash: post.hash, arm, trainable, finetune: c.finetune, seed });
      const battery = await batteryStage(
        ctx,
        path.join(dir, `eval-${name}`),
        `${arm}/${trainable}`,
        ft.modelDir,
        ftHash,
        bayes,
      );
      arms.push({
        arm,
        trainable,
        battery,
        targetDomainPGood: targetDomainPGood(battery, ctx.finetuneDomain),
      });
      appendMetric(ctx, {
        seed,
        variant,
        stage: name,
        offTargetMean: battery.offTargetMean,
        target: targetDomainPGood(battery, ctx.finetuneDomain),
      });
    }
  }
  return arms;
}

/** The interpretation of the seed (interpret/run.ts), with the run's trials. */
async function interpretStage(
  ctx: Context,
  dir: string,
  seed: number,
  pre: SeedModel,
  post: SeedModel,
  arms: readonly ArmResult[],
): Promise<InterpretSummary> {
  const c = ctx.config;
  const armDirs = arms.map((a) => ({
    arm: a.arm,
    trainable: a.trainable,
    dir: path.join(dir, `ft-${a.arm}-${a.trainable}`, 'model'),
  }));
  return runStage(
    path.join(dir, 'interpret'),
    'interpret',
    {
      postHash: post.hash,
      arms: arms.map((a) => `${a.arm}/${a.trainable}`),
      finetune: c.finetune,
      interpret: c.interpret,
      version: INTERPRET_VERSION,
    },
    ({ dir: stageDir }) =>
      interpretRun(dir, {
        world: ctx.world,
        progress: ctx.opts.progress,
        log: ctx.opts.log,
        armDirs,
        postDir: post.modelDir,
        baseDir: pre.modelDir,
        outDir: stageDir,
        ...interpretStudies(c, ctx.world, seed, ctx.finetuneDomain),
      }),
    { force: ctx.opts.force, log: ctx.opts.log },
  );
}

/** Runs (or resumes) the experiment in opts.runDir and writes the report; returns the results. */
export async function runExperiment(config: ExperimentConfig, opts: RunOptions): Promise<RunResults> {
  configureBackend();
  const world = loadExperimentWorld(config);
  const domains = world.domains.map((d) => d.name);
  const trained = trainedDomains(config, world);
  for (const d of trained)
    if (!domains.includes(d))
      throw new Error(
        `config postTrain.domains names unknown domain "${d}" (world domains: ${domains.join(', ')})`,
      );
  const finetuneDomain = config.finetune.domain || world.datasets.narrow?.domain || '';
  if (!domains.includes(finetuneDomain))
    throw new Error(
      `config finetune.domain "${finetuneDomain}" is not a domain of the world (${domains.join(', ')})`,
    );
  // The run folder is made once the config is known to fit the world: a refused config leaves nothing behind.
  fs.mkdirSync(opts.runDir, { recursive: true });
  const configPath = path.join(opts.runDir, 'config.json');
  if (fs.existsSync(configPath) && !opts.force) {
    const previous = JSON.parse(fs.readFileSync(configPath, 'utf8')) as ExperimentConfig;
    // The seed list may grow or shrink: each seed's stages live in their own folders, so more seeds reuse the
    // finished ones (`psm run --seeds 5` on a 3-seed run trains seeds 4 and 5 only).
    if (hashInputs({ ...previous, seeds: [] }) !== hashInputs({ ...config, seeds: [] })) {
      throw new Error(`${opts.runDir} holds a run with another config; choose another --out or use --force`);
    }
  }
  atomicWriteJsonSync(configPath, config);
  atomicWriteFileSync(path.join(opts.runDir, 'config.yaml'), YAML.stringify(config));
  const ctx: Context = {
    config,
    world,
    opts,
    domains,
    trained,
    untrained: domains.filter((d) => !trained.includes(d)),
    finetuneDomain,
    ...evalItemSets(config, world),
  };
  const seeds: SeedResult[] = [];
  const makeResults = (): RunResults => ({
    version: RESULTS_VERSION,
    createdAt: new Date().toISOString(),
    config,
    world: {
      name: world.name,
      domains,
      trainedDomains: trained,
      untrainedDomains: ctx.untrained,
      finetuneDomain,
    },
    seeds: [...seeds],
  });
  const plan: [string, number, AiMix | undefined][] = config.seeds.map((s) => ['standard', s, undefined]);
  if (config.alignmentPretraining.enabled)
    for (const s of config.seeds) plan.push(['alignment', s, config.alignmentPretraining.aiMix]);
  for (const [variant, seed, aiMix] of plan) {
    seeds.push(await runSeed(ctx, variant, seed, aiMix));
    if (seeds.length < plan.length) {
      // A report after every seed: a long multi-seed run shows its numbers while the rest is still running.
      const partial = path.join(opts.runDir, 'partial');
      fs.mkdirSync(partial, { recursive: true });
      atomicWriteJsonSync(path.join(partial, 'results.json'), makeResults());
      await renderReport(partial, makeResults());
    }
  }
  const results = makeResults();
  atomicWriteJsonSync(path.join(opts.runDir, 'results.json'), results);
  await renderReport(opts.runDir, results);
  return results;
}
