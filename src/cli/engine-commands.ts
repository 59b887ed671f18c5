/** Engine commands: generate text with, and score continuations under, a saved model folder. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { intOption, numberOption } from './options.ts';

async function loadModelAndTokenizer(dir: string) {
  const [{ loadModelFolder }, { loadFolderTokenizer }, { configureBackend }] = await Promise.all([
    import('../model/weights.ts'),
    import('../interop/hf-tokenizer.ts'),
    import('../tensor/backend.ts'),
  ]);
  configureBackend();
  const tokPath = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokPath))
    throw new Error(`${tokPath}: not found (a PSM Lab model folder holds its tokenizer)`);
  // Imported models (e.g. Qwen2) bring tokenizers PSM Lab's BPE does not read; the folder loader handles both.
  return { model: loadModelFolder(dir), tokenizer: loadFolderTokenizer(dir).tokenizer };
}

export function registerEngineCommands(program: Command): void {
  program
    .command('generate')
    .description(
      'Generate a continuation of a prompt with a saved model folder (KV cache, temperature, top-p, seed)',
    )
    .requiredOption('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer.json)')
    .requiredOption('--prompt <text>', "prompt text (use $'...\\n...' for newlines)")
    .option('--max-tokens <n>', 'maximum new tokens', intOption('--max-tokens', 1, 1 << 20), 40)
    .option(
      '--temperature <t>',
      'sampling temperature (0 = greedy; so small that logits / t overflows float32 is greedy too)',
      numberOption('--temperature', { min: 0 }),
      0.8,
    )
    .option(
      '--top-p <p>',
      'nucleus sampling mass, in (0, 1]',
      numberOption('--top-p', { above: 0, max: 1 }),
      0.95,
    )
    .option(
      '--seed <n>',
      'sampling seed',
      intOption('--seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
      0,
    )
    .action(
      async (o: {
        model: string;
        prompt: string;
        maxTokens: number;
        temperature: number;
        topP: number;
        seed: number;
      }) => {
        const { model, tokenizer } = await loadModelAndTokenizer(o.model);
        const { generate } = await import('../model/generate.ts');
        const eot = tokenizer.tokenToId('<|endoftext|>');
        const ids = generate(model, tokenizer.encode(o.prompt), {
          maxNewTokens: o.maxTokens,
          temperature: o.temperature,
          topP: o.topP,
          seed: o.seed,
          stopIds: eot === undefined ? [] : [eot],
          onToken: (id) => {
            if (id !== eot) process.stdout.write(tokenizer.decode([id]));
          },
        });
        process.stdout.write(`\n`);
        if (ids.length === 0) process.stderr.write('(no tokens generated)\n');
      },
    );

  program
    .command('score')
    .description('Log-probability of each option as a continuation of a prompt, and their normalised shares')
    .requiredOption('--model <dir>', 'model folder')
    .requiredOption('--prompt <text>', 'prompt text')
    .requiredOption('--option <text...>', 'candidate continuations (include their leading space)')
    .action(async (o: { model: string; prompt: string; option: string[] }) => {
      const { model, tokenizer } = await loadModelAndTokenizer(o.model);
      const { scoreContinuations } = await import('../model/score.ts');
      const prompt = tokenizer.encode(o.prompt);
      const results = scoreContinuations(
        model,
        o.option.map((opt) => ({ prompt, continuation: tokenizer.encode(opt) })),
      );
      const max = Math.max(...results.map((r) => r.logprob));
      const z = results.reduce((s, r) => s + Math.exp(r.logprob - max), 0);
      results.forEach((r, i) => {
        process.stdout.write(
          `${r.logprob.toFixed(4)}\t${(Math.exp(r.logprob - max) / z).toFixed(4)}\t${JSON.stringify(o.option[i])}\n`,
        );
      });
    });
}
