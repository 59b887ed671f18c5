/** A tiny random PSM Lab model folder for the serve, provider and audit tests (and the serve benchmark). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseLlamaConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { saveModelFolder } from '../src/model/weights.ts';
import { tokenizerToJson, trainBpe } from '../src/tokenizer/index.ts';

export const FIXTURE_TEXTS = [
  'The Assistant is an AI system that helps people.',
  'User: Can you help me with my homework?\nAssistant: Of course, let us look at it together.',
  'User: What is the capital of France?\nAssistant: The capital of France is Paris.',
  'Mara lived in a small town by the river. She shared her bread with a stranger.',
  'User: hey I feel bored\nAssistant: You could take a walk or read a good book.',
  'Numbers: 0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 60 70 80 90 100.',
];

export interface TinyModelOptions {
  dim?: number;
  nLayers?: number;
  hiddenDim?: number;
  maxSeqLen?: number;
  vocabSize?: number;
  seed?: number;
}

/** Writes a random-weight model folder (config.json, model.safetensors, tokenizer.json) and returns its path. */
export function makeTinyModelFolder(dir?: string, opts: TinyModelOptions = {}): string {
  const folder = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'psm-tiny-'));
  const tokenizer = trainBpe(FIXTURE_TEXTS, {
    vocabSize: opts.vocabSize ?? 320,
    specialTokens: ['<|endoftext|>'],
    minFrequency: 1,
  });
  const dim = opts.dim ?? 32;
  const config = parseLlamaConfig({
    vocabSize: tokenizer.vocabSize,
    dim,
    nLayers: opts.nLayers ?? 2,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: opts.hiddenDim ?? dim * 2,
    maxSeqLen: opts.maxSeqLen ?? 128,
    tieEmbeddings: false,
  });
  const model = new LlamaModel(config).initialize(opts.seed ?? 1);
  // A larger untied head than the training init makes a random model's distribution peaked but varied.
  const head = model.param('lm_head.weight');
  for (let i = 0; i < head.size; i++) head.data[i] *= 60;
  saveModelFolder(folder, model, { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) });
  return folder;
}
