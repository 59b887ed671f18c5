/**
 * `psm vectors recipe`: a persona vector by the reference recipe (Chen et al. 2025) for any instruct model: replies
 * under contrastive system prompts, judged, filtered, and the mean difference of their activations per layer; then
 * monitoring, a judged steering dose-response and (with --prevent) preventative steering during a fine-tune
 * (src/recipe/, docs/interpret.md). Resumable: rerunning the same command continues where a killed one stopped.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import type { RecipeResult } from '../recipe/run.ts';
import { alphasOption, CHAT_TEMPLATE_OPTION, f, intOption, listOption, numberOption } from './options.ts';

export interface RecipeCommandOptions {
  model: string;
  trait?: string;
  traitFile?: string;
  traitDescription?: string;
  judge: string;
  out: string;
  instructions?: number;
  questions?: number;
  evalQuestions?: number;
  samples: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  positiveThreshold: number;
  negativeThreshold: number;
  layers?: number[];
  layer?: number;
  monitor: boolean;
  alphas: number[];
  prevent?: boolean;
  preventData?: string;
  preventTrainable: string;
  preventSteps: number;
  preventBatch: number;
  preventLr: number;
  preventAlpha: number;
  chatTemplate?: string;
  judgeConcurrency: number;
  apiKeyEnv: string;
}

export function registerRecipeCommand(vectors: Command): void {
  vectors
    .command('recipe')
    .description(
      "A persona vector by the reference recipe (Chen et al. 2025) for any instruct model: replies under contrastive system prompts judged 0-100, the kept pairs' mean activation difference per layer, then monitoring, a judged steering dose-response and (--prevent) preventative steering in a fine-tune; resumable",
    )
    .requiredOption(
      '--model <dir|file.gguf>',
      'model folder, or a GGUF file (imported into <out>/model first)',
    )
    .option(
      '--trait <name>',
      "a bundled trait (evil, sycophancy, hallucination, or the persona world's honesty, kindness, coding, power, caution, helpfulness), or the name of a --trait-description trait",
    )
    .option('--trait-file <file>', 'a trait definition (YAML or JSON; see traits/*.yaml)')
    .option(
      '--trait-description <text>',
      'a trait given by a description alone (generic system prompts and questions)',
    )
    .requiredOption(
      '--judge <spec>',
      'who scores the replies: self (the model), world (the persona world, for its traits), local:<dir>, gguf:<file> or openai:<model>[@<base URL>]',
    )
    .requiredOption(
      '--out <dir>',
      'output folder (replies, scores, vectors, summary; a rerun resumes from it)',
    )
    .option('--instructions <n>', 'system-prompt pairs used (default: all)', intOption('--instructions'))
    .option('--questions <n>', 'extraction questions used (default: all)', intOption('--questions'))
    .option('--eval-questions <n>', 'held-out questions used (default: all)', intOption('--eval-questions'))
    .option('--samples <n>', 'replies per system prompt and question', intOption('--samples'), 1)
    .option('--max-tokens <n>', 'longest reply in tokens', intOption('--max-tokens'), 128)
    .option('--temperature <t>', 'sampling temperature', numberOption('--temperature', { min: 0 }), 1)
    .option('--top-p <p>', 'nucleus sampling', numberOption('--top-p', { above: 0, max: 1 }), 1)
    .option('--seed <n>', 'sampling seed', intOption('--seed', 0), 1)
    .option(
      '--positive-threshold <x>',
      'keep a pair only when its positive reply scores above this',
      numberOption('--positive-threshold', { min: 0, max: 100 }),
      50,
    )
    .option(
      '--negative-threshold <x>',
      'and its negative reply below this',
      numberOption('--negative-threshold', { min: 0, max: 100 }),
      50,
    )
    .option(
      '--layers <list>',
      "layers the chosen layer may be (default: all but the first, which llama.cpp's control vectors cannot steer)",
      listOption('--layers', 'int'),
    )
    .option(
      '--layer <n>',
      'the chosen layer (default: the highest monitoring r among --layers)',
      intOption('--layer', 0),
    )
    .option('--no-monitor', 'skip monitoring')
    .option(
      '--alphas <list>',
      "steering strengths at the chosen layer, in 0.1 x the layer's residual norm (none: no steering; use --alphas=-8,-4,0,4,8)",
      alphasOption,
      [-8, -4, 0, 4, 8],
    )
    .option('--prevent', 'also fine-tune on trait-expressing replies, plainly and with preventative steering')
    .option(
      '--prevent-data <file>',
      'fine-tune chats, JSON Lines ({"messages": [...]} or {"prompt", "response"}; default: the kept positive replies, under the default system prompt of the trait instead of theirs)',
    )
    .option('--prevent-trainable <set>', 'all, lora<rank> or embedding', 'lora8')
    .option('--prevent-steps <n>', 'fine-tune steps', intOption('--prevent-steps'), 40)
    .option('--prevent-batch <n>', 'chats per step', intOption('--prevent-batch'), 8)
    .option('--prevent-lr <x>', 'peak learning rate', numberOption('--prevent-lr', { above: 0 }), 2e-3)
    .option(
      '--prevent-alpha <x>',
      'strength of the vector added while training (steering units)',
      numberOption('--prevent-alpha'),
      4,
    )
    .option(...CHAT_TEMPLATE_OPTION)
    .option('--judge-concurrency <n>', 'judge calls in flight at once', intOption('--judge-concurrency'), 4)
    .option(
      '--api-key-env <name>',
      'environment variable with the API key of an openai: judge',
      'OPENAI_API_KEY',
    )
    .action(async (o: RecipeCommandOptions) => {
      await runRecipeCommand(o);
    });
}

/** Runs the recipe as the command line asks and prints what it found; returns the result (tests). */
export async function runRecipeCommand(o: RecipeCommandOptions): Promise<RecipeResult> {
  const [{ resolveTrait }, { parseJudgeSpec }, recipe, { configureBackend }, { terminalProgress }] =
    await Promise.all([
      import('../recipe/trait.ts'),
      import('../recipe/judge.ts'),
      import('../recipe/run.ts'),
      import('../tensor/backend.ts'),
      import('./progress.ts'),
    ]);
  // Everything that can be refused is refused before any work.
  const trait = resolveTrait(o);
  const judge = parseJudgeSpec(o.judge);
  const chats = o.preventData !== undefined ? await preventChats(o.preventData) : undefined;
  if (o.preventData !== undefined && !o.prevent) throw new Error('--prevent-data is for --prevent');
  configureBackend();
  const modelDir = recipe.modelFolderFor(o.model, o.out, (line) => process.stderr.write(`${line}\n`));
  const result = await recipe.runRecipe({
    modelDir,
    chatTemplate: o.chatTemplate,
    trait,
    judge,
    judgeProvider: { apiKey: process.env[o.apiKeyEnv], cacheDir: path.join(o.out, 'judge-cache') },
    outDir: o.out,
    instructions: o.instructions,
    questions: o.questions,
    evalQuestions: o.evalQuestions,
    samples: o.samples,
    sampling: { maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, seed: o.seed },
    thresholds: { positive: o.positiveThreshold, negative: o.negativeThreshold },
    layers: o.layers,
    layer: o.layer,
    monitor: o.monitor,
    alphas: o.alphas,
    prevent: o.prevent
      ? {
          trainable: o.preventTrainable,
          steps: o.preventSteps,
          batchSize: o.preventBatch,
          lr: o.preventLr,
          alpha: o.preventAlpha,
          seed: o.seed,
          ...(chats ? { chats, data: path.resolve(o.preventData!) } : {}),
        }
      : null,
    judgeConcurrency: o.judgeConcurrency,
    progress: terminalProgress,
    log: (line) => process.stderr.write(`psm vectors recipe: ${line}\n`),
  });
  const s = result.summary;
  const e = s.extraction;
  const w = (line: string) => process.stdout.write(`${line}\n`);
  w(
    `trait "${s.trait.name}" on ${s.model.dir} (judge ${s.judge}): kept ${e.kept} of ${e.pairs} pairs (positive mean ${f(e.positiveMean, 1)}, negative mean ${f(e.negativeMean, 1)})`,
  );
  w(`chosen layer ${s.layer.chosen} (${s.layer.rule})`);
  if (s.monitoring) {
    w('layer\tr(replies)\tr(prompt means)\tseparation');
    for (const l of s.monitoring.perLayer)
      w(`${l.layer}\t${f(l.rReplies)}\t${f(l.rPrompts)}\t${f(e.perLayer[l.layer].separation, 2)}`);
  }
  if (s.steering) {
    w(`steering at layer ${s.steering.layer}\nalpha\ttrait\tcoherence\tn`);
    for (const r of s.steering.rows) w(`${r.alpha}\t${f(r.trait, 1)}\t${f(r.coherence, 1)}\t${r.n}`);
  }
  if (s.prevention) {
    w('fine-tune\ttrait\tcoherence\tn');
    for (const a of s.prevention.arms) w(`${a.arm}\t${f(a.trait, 1)}\t${f(a.coherence, 1)}\t${a.n}`);
    w(`preventative steering kept ${f(100 * s.prevention.reduction, 0)}% of the rise away`);
  }
  w(
    `wrote ${path.join(o.out, s.files.vectors)}, ${path.join(o.out, s.files.serveVectors)}, ${path.join(o.out, 'summary.md')}\n` +
      `for llama.cpp: psm vectors export --vectors ${path.join(o.out, s.files.vectors)} --trait ${s.trait.name} --out ${s.trait.name}.gguf`,
  );
  return result;
}

/** Fine-tune chats from a JSON Lines file: each a single exchange (an optional system line, one question, the reply). */
async function preventChats(file: string) {
  const [{ readChatJsonl }, { chatFromPrompt }] = await Promise.all([
    import('../world/index.ts'),
    import('../interop/chat-template.ts'),
  ]);
  return readChatJsonl(file).map((c, i) => {
    const messages = chatFromPrompt(c.prompt);
    if (!messages)
      throw new Error(
        `${file}, chat ${i + 1}: --prevent-data takes single exchanges (an optional system message, one user message, the reply)`,
      );
    return { messages, reply: c.response.trim() };
  });
}
