/**
 * Persona vectors by the reference recipe (Chen et al. 2025) for any instruct model the engine runs:
 *
 *   extraction  replies to the trait's questions under each positive and negative system prompt, judged 0-100; the
 *               pairs whose positive reply scores above the threshold and negative reply below it are kept, and the
 *               vector at every layer is the mean difference of their reply-token activations (extract.ts)
 *   monitoring  the last prompt token's projection on the vector against the judged trait score of the reply, over
 *               the held-out questions under every system prompt, per layer
 *   steering    the vector added at the chosen layer at a few strengths: the judged trait score and coherence
 *   prevention  a fine-tune on trait-expressing replies, plainly and with preventative steering (prevent.ts)
 *
 * Every reply and score is kept in the output folder as it comes (journal.ts), so a killed run resumes where it
 * stopped and reaches the same vectors. Writes vectors.safetensors (a persona-vector file, as `psm vectors` writes),
 * serve-vectors.safetensors (named vectors for `psm serve --vectors`), summary.json and summary.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  activationsAt,
  checkLayer,
  layerHook,
  loadModelHandle,
  unitVector,
  DEFAULT_HOOK_KIND,
} from '../interpret/activations.ts';
import { addSteering } from '../interpret/steer.ts';
import { saveVectorBundle, type VectorBundle } from '../interpret/vectors.ts';
import { steeringVector } from '../interpret/steer.ts';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { writeSafetensorsSync, type TensorData } from '../io/safetensors.ts';
import { pearson } from '../measurement/stats.ts';
import { silentProgress, type ProgressFactory } from '../measurement/progress.ts';
import { importModel } from '../interop/index.ts';
import { HookSet } from '../model/hooks.ts';
import { LocalProvider } from '../providers/local.ts';
import type { CreateProviderOptions } from '../providers/spec.ts';
import { loadDefaultWorld, loadWorld } from '../world/schema.ts';
import {
  DEFAULT_THRESHOLDS,
  filterPairs,
  meanDifferenceVectors,
  type ScoredPair,
  type Thresholds,
} from './extract.ts';
import { chatOf, engineFor } from './generate.ts';
import { judgeOfProviderSpec, providerJudge, type JudgeSpec, type ReplyJudge } from './judge.ts';
import { hashOf, RecipeJournal, RESPONSES_FILE, SCORES_FILE, type ResponseRecord } from './journal.ts';
import { DEFAULT_PREVENTION, tunedModel, type PreventionSettings, type TuneChat } from './prevent.ts';
import { renderSummaryMarkdown, SUMMARY_FORMAT, type PromptKind, type RecipeSummary } from './report.ts';
import type { TraitDefinition } from './trait.ts';
import {
  ensureReplies,
  ensureScores,
  meanScore,
  scoreOf,
  type Answerer,
  type Ask,
  type RecipeWork,
  type Sampling,
} from './work.ts';
import { worldJudge } from './world-judge.ts';

/** Steering strengths of the dose-response (units of 0.1 x the layer's residual norm, as `psm steer`'s). */
export const DEFAULT_RECIPE_ALPHAS = [-8, -4, 0, 4, 8];
export const DEFAULT_SAMPLING: Sampling = { maxTokens: 128, temperature: 1, topP: 1, seed: 1 };

export const FOLDER_RECORD = 'recipe.json';
export const VECTORS_FILE = 'vectors.safetensors';
export const SERVE_VECTORS_FILE = 'serve-vectors.safetensors';

export interface RecipeOptions {
  /** A model folder (a GGUF file is imported into one first: see modelFolderFor). */
  modelDir: string;
  /** "psm" or a template file instead of the folder's own chat template. */
  chatTemplate?: string;
  trait: TraitDefinition;
  /** A --judge spec, or a judge object (tests). */
  judge: JudgeSpec | ReplyJudge;
  /** Provider options for a provider judge (API key, answer cache, HTTP settings). */
  judgeProvider?: CreateProviderOptions;
  outDir: string;
  /** Use the first N system-prompt pairs / extraction questions / held-out questions (default: all). */
  instructions?: number;
  questions?: number;
  evalQuestions?: number;
  /** Replies per system prompt and question (default 1). */
  samples?: number;
  sampling?: Partial<Sampling>;
  thresholds?: Thresholds;
  /** Layers the chosen layer may be (default: every layer but the first, which llama.cpp cannot steer). */
  layers?: number[];
  /** The chosen layer, fixed. */
  layer?: number;
  /** Monitoring (default true). */
  monitor?: boolean;
  /** Steering strengths; [] skips steering (default DEFAULT_RECIPE_ALPHAS). */
  alphas?: number[];
  /** Preventative steering (default off): settings, and the chats (default: the kept positive replies). */
  prevent?: (Partial<PreventionSettings> & { chats?: TuneChat[]; data?: string }) | null;
  judgeConcurrency?: number;
  progress?: ProgressFactory;
  log?: (line: string) => void;
}

export interface RecipeResult {
  summary: RecipeSummary;
  bundle: VectorBundle;
}

/**
 * The model folder of --model: a folder as it is; a GGUF file imported into <out>/model (once: a later run reuses the
 * import when the file is the same, by path, size and time).
 */
export function modelFolderFor(
  model: string,
  outDir: string,
  log: (line: string) => void = () => {},
): string {
  if (!fs.statSync(model).isFile()) return model;
  if (!model.toLowerCase().endsWith('.gguf'))
    throw new Error(`--model ${model}: a model folder or a .gguf file is expected`);
  const dir = path.join(outDir, 'model');
  const st = fs.statSync(model);
  const source = { file: path.resolve(model), size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
  const record = path.join(dir, IMPORT_RECORD);
  if (fs.existsSync(record) && hashOf(JSON.parse(fs.readFileSync(record, 'utf8'))) === hashOf(source))
    return dir;
  log(`importing ${model} into ${dir}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const summary = importModel(model, dir);
  for (const w of summary.warnings) log(`warning: ${w}`);
  atomicWriteJsonSync(record, source);
  return dir;
}

const IMPORT_RECORD = 'recipe-import.json';

function checkCount(name: string, n: number | undefined, available: number): number {
  if (n === undefined) return available;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be an integer >= 1, got ${n}`);
  if (n > available) throw new Error(`${name} ${n}: the trait has only ${available}`);
  return n;
}

/** Refuses a folder that holds another trait's or another model's recipe; records this one's. */
function claimFolder(outDir: string, trait: TraitDefinition, modelDir: string, modelHash: string): void {
  const file = path.join(outDir, FOLDER_RECORD);
  if (fs.existsSync(file)) {
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as { trait?: string; modelHash?: string };
    if (rec.trait !== trait.name || rec.modelHash !== modelHash)
      throw new Error(
        `${outDir} holds the recipe of trait "${rec.trait}" on model ${String(rec.modelHash).slice(0, 12)}, not "${trait.name}" on ${modelHash.slice(0, 12)}: give another --out`,
      );
  }
  fs.mkdirSync(outDir, { recursive: true });
  atomicWriteJsonSync(file, {
    format: 'psm-persona-recipe-folder',
    version: 1,
    trait: trait.name,
    traitSource: trait.source,
    model: path.resolve(modelDir),
    modelHash,
  });
}

function resolveJudge(
  spec: JudgeSpec | ReplyJudge,
  trait: TraitDefinition,
  self: Answerer,
  providerOptions: CreateProviderOptions = {},
): ReplyJudge {
  if (!('kind' in spec)) return spec;
  if (spec.kind === 'self')
    return providerJudge(new LocalProvider(self.engine), trait, {
      label: `self:${self.hash.slice(0, 16)}:${self.engine.chat.id}`,
    });
  if (spec.kind === 'world') {
    const world = spec.file ? loadWorld(spec.file) : loadDefaultWorld();
    if (!trait.worldDomain)
      throw new Error(
        `--judge world scores the persona world's traits (${world.domains.map((d) => d.name).join(', ')}); trait "${trait.name}" has no world_domain: give an LLM judge (--judge self, local:, gguf: or openai:)`,
      );
    return worldJudge(world, trait.worldDomain);
  }
  return judgeOfProviderSpec(spec.spec, trait, providerOptions);
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** Index of the largest finite value among the allowed indices, -1 if none. */
function argmaxOf(values: readonly number[], allowed: readonly number[]): number {
  let best = -1;
  for (const l of allowed) if (Number.isFinite(values[l]) && (best < 0 || values[l] > values[best])) best = l;
  return best;
}

/** Runs the recipe (the parts `opts` asks for), writing and returning its summary and vectors. */
export async function runRecipe(opts: RecipeOptions): Promise<RecipeResult> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  const progress = opts.progress ?? silentProgress;
  const { trait, outDir } = opts;
  const handle = loadModelHandle(opts.modelDir, { chatTemplate: opts.chatTemplate });
  const engine = engineFor(handle);
  // A model without a chat template is refused now, naming the fix, not after a first reply.
  engine.encodeChat(chatOf('system', 'question'));
  const base: Answerer = { engine, hash: handle.hash };
  const nLayers = handle.model.config.nLayers;
  // By default not block 0's output: llama.cpp's control vectors cannot steer it, and it carries little persona.
  const candidates =
    opts.layers ?? Array.from({ length: Math.max(1, nLayers - 1) }, (_, l) => Math.min(l + 1, nLayers - 1));
  for (const l of candidates) checkLayer(handle.model, l);
  if (candidates.length === 0) throw new Error('--layers: no layers given');
  if (opts.layer !== undefined) checkLayer(handle.model, opts.layer);
  const nPairs = checkCount('--instructions', opts.instructions, trait.instructions.length);
  const nQuestions = checkCount('--questions', opts.questions, trait.questions.length);
  const nEval = checkCount('--eval-questions', opts.evalQuestions, trait.evalQuestions.length);
  const samples = opts.samples ?? 1;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`--samples must be an integer >= 1, got ${samples}`);
  const sampling: Sampling = { ...DEFAULT_SAMPLING, ...opts.sampling };
  const thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
  const alphas = opts.alphas ?? DEFAULT_RECIPE_ALPHAS;
  claimFolder(outDir, trait, opts.modelDir, handle.hash);
  const judge = resolveJudge(opts.judge, trait, base, opts.judgeProvider);
  const work: RecipeWork = {
    journal: new RecipeJournal(outDir),
    judge,
    traitHash: trait.hash,
    sampling,
    progress,
    judgeConcurrency: opts.judgeConcurrency ?? 4,
  };
  const pairs = trait.instructions.slice(0, nPairs);
  const questions = trait.questions.slice(0, nQuestions);
  const evalQuestions = trait.evalQuestions.slice(0, nEval);
  const sampleIds = Array.from({ length: samples }, (_, s) => s);
  const onEach = <T>(
    systems: readonly (string | null)[],
    qs: readonly string[],
    f: (s: string | null, q: string, k: number) => T,
  ) => systems.flatMap((s) => qs.flatMap((q) => sampleIds.map((k) => f(s, q, k))));

  try {
    // Extraction.
    const pairAsks = pairs.flatMap((p, i) =>
      questions.flatMap((q) =>
        sampleIds.map((k) => ({
          i,
          q,
          k,
          pos: { system: p.positive, question: q, sample: k },
          neg: { system: p.negative, question: q, sample: k },
        })),
      ),
    );
    const asks: Ask[] = pairAsks.flatMap((a) => [a.pos, a.neg]);
    const replies = await ensureReplies(work, base, 'extract', asks);
    await ensureScores(work, 'extract', replies, ['trait']);
    const scored: ScoredPair[] = pairAsks.map((a, j) => {
      const positive = replies[2 * j];
      const negative = replies[2 * j + 1];
      return {
        instruction: a.i,
        question: a.q,
        sample: a.k,
        positive,
        negative,
        positiveScore: scoreOf(work, positive, 'trait'),
        negativeScore: scoreOf(work, negative, 'trait'),
      };
    });
    const { kept, dropped } = filterPairs(scored, thresholds);
    const scoresOf = (ps: readonly ScoredPair[], side: 'positiveScore' | 'negativeScore') =>
      ps.map((p) => p[side]).filter((x): x is number => x !== null);
    if (kept.length === 0)
      throw new Error(
        `no pair passed the filter (positive reply > ${thresholds.positive}, negative reply < ${thresholds.negative}): the positive replies scored ${mean(scoresOf(scored, 'positiveScore')).toFixed(1)} on average, the negative ${mean(scoresOf(scored, 'negativeScore')).toFixed(1)} (dropped: ${JSON.stringify(dropped)}); the model may not follow the system prompts, or the judge may not read the trait: try more --samples, other thresholds, or another judge`,
      );
    log(`kept ${kept.length} of ${scored.length} pairs`);
    const { byLayer, stats } = meanDifferenceVectors(handle, engine, kept, trait.name);

    // Monitoring: every system prompt (none, the pairs' two ends, the extra ones) on the held-out questions.
    let monitoring: RecipeSummary['monitoring'] = null;
    let monitorR: number[] = [];
    let monitorPrompts: { kind: PromptKind; index: number; system: string | null }[] = [];
    let promptProjections: number[][] = []; // [prompt][layer] mean projection
    if (opts.monitor ?? true) {
      monitorPrompts = [
        { kind: 'none', index: 0, system: null },
        ...pairs.map((p, i) => ({ kind: 'positive' as const, index: i, system: p.positive })),
        ...pairs.map((p, i) => ({ kind: 'negative' as const, index: i, system: p.negative })),
        ...trait.monitorPrompts.map((s, i) => ({ kind: 'extra' as const, index: i, system: s })),
      ];
      const monAsks = onEach(
        monitorPrompts.map((p) => p.system),
        evalQuestions,
        (system, question, sample): Ask => ({ system, question, sample }),
      );
      const monReplies = await ensureReplies(work, base, 'monitor', monAsks);
      await ensureScores(work, 'monitor', monReplies, ['trait']);
      // The last prompt token of each (system prompt, question), at every layer.
      const prompts = monitorPrompts.flatMap((p) =>
        evalQuestions.map((q) => engine.encodeChat(chatOf(p.system, q))),
      );
      const hooks = byLayer.map((v) => v.hook);
      const acts = activationsAt(
        handle.model,
        prompts,
        prompts.map(() => [-1]),
        hooks,
      );
      const dim = handle.model.config.dim;
      const units = byLayer.map((v) => (v.vector.some((x) => x !== 0) ? unitVector(v.vector) : null));
      const projection = (row: number, layer: number) => {
        const u = units[layer];
        if (!u) return NaN;
        const a = acts.get(hooks[layer])!;
        let s = 0;
        for (let j = 0; j < dim; j++) s += u[j] * a[row * dim + j];
        return s;
      };
      const perReply = monReplies.map((r, i) => ({
        row: Math.floor(i / samples),
        score: scoreOf(work, r, 'trait'),
      }));
      const scoredReplies = perReply.filter((x): x is { row: number; score: number } => x.score !== null);
      promptProjections = monitorPrompts.map((_, p) =>
        byLayer.map((_v, l) =>
          mean(evalQuestions.map((_q, qi) => projection(p * evalQuestions.length + qi, l))),
        ),
      );
      const promptScores = monitorPrompts.map((_, p) => {
        const xs = scoredReplies
          .filter((x) => Math.floor(x.row / evalQuestions.length) === p)
          .map((x) => x.score);
        return { mean: mean(xs), n: xs.length };
      });
      const withScores = promptScores.map((s, p) => (s.n > 0 ? p : -1)).filter((p) => p >= 0);
      const perLayer = byLayer.map((_v, l) => ({
        layer: l,
        rReplies: pearson(
          scoredReplies.map((x) => projection(x.row, l)),
          scoredReplies.map((x) => x.score),
        ),
        rPrompts:
          withScores.length >= 3
            ? pearson(
                withScores.map((p) => promptProjections[p][l]),
                withScores.map((p) => promptScores[p].mean),
              )
            : NaN,
        n: scoredReplies.length,
      }));
      monitorR = perLayer.map((x) => x.rReplies);
      // Each prompt's projection is filled in at the chosen layer once it is known.
      monitoring = {
        prompts: monitorPrompts.map((p, i) => ({
          ...p,
          meanScore: promptScores[i].mean,
          n: promptScores[i].n,
          projection: NaN,
        })),
        perLayer,
      };
    }

    // The chosen layer.
    let chosen = opts.layer ?? -1;
    let rule: RecipeSummary['layer']['rule'] = 'given';
    if (chosen < 0 && monitoring) {
      chosen = argmaxOf(monitorR, candidates);
      rule = 'monitoring';
    }
    if (chosen < 0) {
      chosen = argmaxOf(
        stats.map((s) => s.separation),
        candidates,
      );
      rule = 'separation';
    }
    if (chosen < 0) chosen = candidates[candidates.length - 1];
    if (monitoring)
      monitoring.prompts = monitoring.prompts.map((p, i) => ({
        ...p,
        projection: promptProjections[i][chosen],
      }));

    const bundle: VectorBundle = {
      format: 'psm-persona-vectors',
      version: 1,
      modelHash: handle.hash,
      model: opts.modelDir,
      dim: handle.model.config.dim,
      nLayers,
      hookKind: DEFAULT_HOOK_KIND,
      method: 'recipe',
      span: 'response',
      date: new Date().toISOString(),
      itemsPerTrait: kept.length,
      selection: null,
      traits: [
        {
          trait: trait.name,
          method: 'recipe',
          byLayer,
          bestLayer: chosen,
          steeringEffect: [],
          steeringMonotone: [],
        },
      ],
    };
    const vectorsFile = path.join(outDir, VECTORS_FILE);
    saveVectorBundle(vectorsFile, bundle);
    writeServeVectors(path.join(outDir, SERVE_VECTORS_FILE), bundle, trait.name);
    const vector = byLayer[chosen];
    const vectorHash = hashOf(Array.from(vector.vector));

    // Steering: the dose-response at the chosen layer, no system prompt.
    const steerReplies = async (who: Answerer, phase: string, alpha: number) => {
      const steer =
        alpha === 0
          ? undefined
          : {
              setting: { layer: chosen, alpha, vector: vectorHash },
              hooks: addSteering(new HookSet(), handle, vector, alpha),
            };
      const rs = await ensureReplies(
        work,
        who,
        phase,
        onEach([null], evalQuestions, (system, question, sample): Ask => ({
          system,
          question,
          sample,
          steer,
        })),
      );
      await ensureScores(work, phase, rs, ['trait', 'coherence']);
      return rs;
    };
    let steering: RecipeSummary['steering'] = null;
    if (alphas.length > 0) {
      const rows = [];
      for (const alpha of alphas) {
        const rs = await steerReplies(base, `steer ${alpha}`, alpha);
        const t = meanScore(work, rs, 'trait');
        const c = meanScore(work, rs, 'coherence');
        rows.push({ alpha, trait: t.mean, coherence: c.mean, n: t.n, unscored: t.unscored });
      }
      steering = { layer: chosen, rows };
    }

    // Preventative steering.
    let prevention: RecipeSummary['prevention'] = null;
    if (opts.prevent) {
      const settings: PreventionSettings = { ...DEFAULT_PREVENTION, ...opts.prevent };
      const chats: TuneChat[] =
        opts.prevent.chats ??
        kept.map((p) => ({ messages: chatOf(null, p.question), reply: p.positive.text }));
      if (chats.length === 0) throw new Error('preventative steering: no chats to fine-tune on');
      const arms: NonNullable<RecipeSummary['prevention']>['arms'] = [];
      const before = await steerReplies(base, 'prevent before', 0);
      const summarise = (rs: ResponseRecord[]) => ({
        trait: meanScore(work, rs, 'trait'),
        coherence: meanScore(work, rs, 'coherence'),
      });
      const b = summarise(before);
      arms.push({
        arm: 'before',
        model: handle.hash,
        finalLoss: null,
        trait: b.trait.mean,
        coherence: b.coherence.mean,
        n: b.trait.n,
      });
      for (const arm of ['plain', 'steered'] as const) {
        const bar = progress(`prevent ${arm}`, settings.steps, 'steps');
        const tuned = tunedModel({
          arm,
          modelDir: opts.modelDir,
          chatTemplate: opts.chatTemplate,
          outDir,
          chats,
          settings,
          bundle,
          trait: trait.name,
          layer: chosen,
          onStep: (step, loss) => bar.update(step, { loss }),
        });
        bar.stop();
        log(`${arm} fine-tune ${tuned.trained ? 'trained' : 'loaded'}: ${tuned.dir}`);
        const who: Answerer = { engine: engineFor(tuned.handle), hash: tuned.handle.hash };
        const rs = await ensureReplies(
          work,
          who,
          `prevent ${arm}`,
          onEach([null], evalQuestions, (system, question, sample): Ask => ({ system, question, sample })),
        );
        await ensureScores(work, `prevent ${arm}`, rs, ['trait', 'coherence']);
        const s = summarise(rs);
        arms.push({
          arm,
          model: tuned.handle.hash,
          finalLoss: tuned.finalLoss,
          trait: s.trait.mean,
          coherence: s.coherence.mean,
          n: s.trait.n,
        });
      }
      const [bt, pt, st] = arms.map((a) => a.trait);
      prevention = {
        examples: chats.length,
        data: opts.prevent.data ?? 'the kept positive replies, without their system prompt',
        layer: chosen,
        settings,
        arms,
        reduction: pt - bt !== 0 ? (pt - st) / (pt - bt) : NaN,
      };
    }

    const byInstruction = pairs.map((_p, i) => {
      const mine = scored.filter((p) => p.instruction === i);
      return {
        index: i,
        pairs: mine.length,
        kept: kept.filter((p) => p.instruction === i).length,
        positiveMean: mean(scoresOf(mine, 'positiveScore')),
        negativeMean: mean(scoresOf(mine, 'negativeScore')),
      };
    });
    const summary: RecipeSummary = {
      format: SUMMARY_FORMAT,
      version: 1,
      trait: { name: trait.name, description: trait.description, source: trait.source, hash: trait.hash },
      model: {
        dir: opts.modelDir,
        hash: handle.hash,
        chat: engine.chat.kind === 'psm' ? 'psm' : engine.chat.id,
        nLayers,
        dim: handle.model.config.dim,
      },
      judge: judge.id,
      settings: {
        instructions: nPairs,
        questions: nQuestions,
        evalQuestions: nEval,
        samples,
        sampling,
        thresholds,
        layers: candidates,
      },
      extraction: {
        pairs: scored.length,
        kept: kept.length,
        dropped,
        positiveMean: mean(scoresOf(scored, 'positiveScore')),
        negativeMean: mean(scoresOf(scored, 'negativeScore')),
        byInstruction,
        perLayer: stats,
      },
      layer: { chosen, rule, candidates },
      monitoring,
      steering,
      prevention,
      files: {
        vectors: VECTORS_FILE,
        serveVectors: SERVE_VECTORS_FILE,
        responses: RESPONSES_FILE,
        scores: SCORES_FILE,
      },
      seconds: (Date.now() - t0) / 1000,
    };
    atomicWriteJsonSync(path.join(outDir, 'summary.json'), summary);
    atomicWriteFileSync(path.join(outDir, 'summary.md'), renderSummaryMarkdown(summary));
    return { summary, bundle };
  } finally {
    await judge.close?.();
  }
}

/**
 * The vectors as named vectors for `psm serve --vectors` (1-D tensors with their hooks in the metadata): "<trait>.<L>"
 * at each layer and "<trait>" at the chosen one, each scaled as `psm steer` adds it at alpha 1, so a request's alpha
 * means what `psm steer --alpha` means.
 */
function writeServeVectors(file: string, bundle: VectorBundle, trait: string): void {
  const tv = bundle.traits[0];
  const tensors: Record<string, TensorData> = {};
  const metadata: Record<string, string> = { format: 'psm-named-vectors' };
  const add = (name: string, layer: number) => {
    const v = tv.byLayer[layer];
    if (!v.vector.some((x) => x !== 0)) return;
    tensors[name] = { data: steeringVector(v, 1), shape: [bundle.dim] };
    metadata[`hook.${name}`] = layerHook(layer);
  };
  tv.byLayer.forEach((_v, l) => add(`${trait}.${l}`, l));
  add(trait, tv.bestLayer);
  writeSafetensorsSync(file, tensors, metadata);
}
