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
import { checkLayer, DEFAULT_HOOK_KIND, layerHook, loadModelHandle } from '../interpret/activations.ts';
import { addSteering, steeringVector } from '../interpret/steer.ts';
import { saveVectorBundle, type VectorBundle } from '../interpret/vectors.ts';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { writeSafetensorsSync, type TensorData } from '../io/safetensors.ts';
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
  scoredPairs,
  type ScoredPair,
  type Thresholds,
} from './extract.ts';
import { chatOf, engineFor } from './generate.ts';
import { judgeOfProviderSpec, providerJudge, type JudgeSpec, type ReplyJudge } from './judge.ts';
import { hashOf, RecipeJournal, RESPONSES_FILE, SCORES_FILE } from './journal.ts';
import { monitorVectors } from './monitor.ts';
import { DEFAULT_PREVENTION, preventionTrial, type PreventionSettings, type TuneChat } from './prevent.ts';
import { renderSummaryMarkdown, SUMMARY_FORMAT, type RecipeSummary } from './report.ts';
import type { TraitDefinition } from './trait.ts';
import { heldOutScores, type Answerer, type RecipeWork, type Sampling, type Study } from './work.ts';
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
  if (!fs.existsSync(model)) throw new Error(`--model ${model}: not found`);
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
    let rec: { trait?: string; modelHash?: string };
    try {
      rec = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof rec;
    } catch (e) {
      throw new Error(`${file}: not a recipe folder's record (${(e as Error).message}); give another --out`);
    }
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

/** The judge a spec names (`self`: the model under study, as its own LocalProvider). */
export function resolveJudge(
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

/** The layer the vector is used at: given, else the best monitoring r, else the best separation, among `candidates`. */
function chooseLayer(
  given: number | undefined,
  candidates: readonly number[],
  monitorR: readonly number[] | null,
  separation: readonly number[],
): RecipeSummary['layer'] {
  if (given !== undefined) return { chosen: given, rule: 'given', candidates: [...candidates] };
  const byMonitor = monitorR ? argmaxOf(monitorR, candidates) : -1;
  if (byMonitor >= 0) return { chosen: byMonitor, rule: 'monitoring', candidates: [...candidates] };
  const bySeparation = argmaxOf(separation, candidates);
  return {
    chosen: bySeparation >= 0 ? bySeparation : candidates[candidates.length - 1],
    rule: 'separation',
    candidates: [...candidates],
  };
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
  const nLayers = handle.model.config.nLayers;
  // By default not block 0's output: llama.cpp's control vectors cannot steer it, and it carries little persona.
  const candidates =
    opts.layers ?? Array.from({ length: Math.max(1, nLayers - 1) }, (_, l) => Math.min(l + 1, nLayers - 1));
  if (candidates.length === 0) throw new Error('--layers: no layers given');
  for (const l of [...candidates, ...(opts.layer !== undefined ? [opts.layer] : [])])
    checkLayer(handle.model, l);
  const pairs = trait.instructions.slice(
    0,
    checkCount('--instructions', opts.instructions, trait.instructions.length),
  );
  const questions = trait.questions.slice(
    0,
    checkCount('--questions', opts.questions, trait.questions.length),
  );
  const evalQuestions = trait.evalQuestions.slice(
    0,
    checkCount('--eval-questions', opts.evalQuestions, trait.evalQuestions.length),
  );
  const samples = opts.samples ?? 1;
  if (!Number.isInteger(samples) || samples < 1)
    throw new Error(`--samples must be an integer >= 1, got ${samples}`);
  const sampling: Sampling = { ...DEFAULT_SAMPLING, ...opts.sampling };
  const thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
  const alphas = opts.alphas ?? DEFAULT_RECIPE_ALPHAS;
  claimFolder(outDir, trait, opts.modelDir, handle.hash);
  const base: Answerer = { engine, hash: handle.hash };
  const judge = resolveJudge(opts.judge, trait, base, opts.judgeProvider);
  const work: RecipeWork = {
    journal: new RecipeJournal(outDir),
    judge,
    traitHash: trait.hash,
    sampling,
    progress,
    judgeConcurrency: opts.judgeConcurrency ?? 4,
  };
  const study: Study = { work, handle, base, evalQuestions, samples, defaultSystem: trait.defaultSystem };

  try {
    // Extraction.
    const scored = await scoredPairs(study, pairs, questions);
    const { kept, dropped } = filterPairs(scored, thresholds);
    const scoresOf = (ps: readonly ScoredPair[], side: 'positiveScore' | 'negativeScore') =>
      ps.map((p) => p[side]).filter((x): x is number => x !== null);
    if (kept.length === 0)
      throw new Error(
        `no pair passed the filter (positive reply > ${thresholds.positive}, negative reply < ${thresholds.negative}): the positive replies scored ${mean(scoresOf(scored, 'positiveScore')).toFixed(1)} on average, the negative ${mean(scoresOf(scored, 'negativeScore')).toFixed(1)} (dropped: ${JSON.stringify(dropped)}); the model may not follow the system prompts, or the judge may not read the trait: try more --samples, other thresholds, or another judge`,
      );
    log(`kept ${kept.length} of ${scored.length} pairs`);
    const { byLayer, stats } = meanDifferenceVectors(handle, engine, kept, trait.name);

    // Monitoring, and the layer.
    const monitored =
      (opts.monitor ?? true)
        ? await monitorVectors(
            study,
            [
              { kind: 'default', index: 0, system: trait.defaultSystem },
              ...pairs.map((p, index) => ({ kind: 'positive' as const, index, system: p.positive })),
              ...pairs.map((p, index) => ({ kind: 'negative' as const, index, system: p.negative })),
              ...trait.monitorPrompts.map((system, index) => ({ kind: 'extra' as const, index, system })),
            ],
            byLayer,
          )
        : null;
    const layer = chooseLayer(
      opts.layer,
      candidates,
      monitored ? monitored.perLayer.map((x) => x.rReplies) : null,
      stats.map((x) => x.separation),
    );
    const chosen = layer.chosen;
    const monitoring: RecipeSummary['monitoring'] = monitored && {
      prompts: monitored.prompts.map((p, i) => ({ ...p, projection: monitored.projections[i][chosen] })),
      perLayer: monitored.perLayer,
    };

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
    saveVectorBundle(path.join(outDir, VECTORS_FILE), bundle);
    writeServeVectors(path.join(outDir, SERVE_VECTORS_FILE), bundle, trait.name);

    // Steering: the dose-response at the chosen layer, under the default system prompt (alpha 0: the plain model).
    let steering: RecipeSummary['steering'] = null;
    if (alphas.length > 0) {
      const vector = byLayer[chosen];
      const vectorHash = hashOf(Array.from(vector.vector));
      const rows = [];
      for (const alpha of alphas) {
        const steer =
          alpha === 0
            ? undefined
            : {
                setting: { layer: chosen, alpha, vector: vectorHash },
                hooks: addSteering(new HookSet(), handle, vector, alpha),
              };
        const s = await heldOutScores(study, base, `steer ${alpha}`, steer);
        rows.push({
          alpha,
          trait: s.trait.mean,
          coherence: s.coherence.mean,
          n: s.trait.n,
          unscored: s.trait.unscored,
        });
      }
      steering = { layer: chosen, rows };
    }

    // Preventative steering: a fine-tune on trait-expressing replies (by default the kept positive ones).
    const prevention = opts.prevent
      ? await preventionTrial(study, {
          modelDir: opts.modelDir,
          chatTemplate: opts.chatTemplate,
          outDir,
          chats:
            opts.prevent.chats ??
            kept.map((p) => ({ messages: chatOf(trait.defaultSystem, p.question), reply: p.positive.text })),
          data:
            opts.prevent.data ??
            `the kept positive replies, under ${trait.defaultSystem === null ? 'no system prompt' : 'the default system prompt'}`,
          settings: { ...DEFAULT_PREVENTION, ...opts.prevent },
          bundle,
          trait: trait.name,
          layer: chosen,
          progress,
          log,
        })
      : null;

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
        instructions: pairs.length,
        questions: questions.length,
        evalQuestions: evalQuestions.length,
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
        byInstruction: pairs.map((_p, i) => {
          const mine = scored.filter((p) => p.instruction === i);
          return {
            index: i,
            pairs: mine.length,
            kept: kept.filter((p) => p.instruction === i).length,
            positiveMean: mean(scoresOf(mine, 'positiveScore')),
            negativeMean: mean(scoresOf(mine, 'negativeScore')),
          };
        }),
        perLayer: stats,
      },
      layer,
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
