// Context lengths above what the engine takes are cut to it, and said: from a Hugging Face config.json and from a GGUF.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ggufConfig, readGgufFile, writeGgufFile } from '../src/interop/gguf.ts';
import { MAX_POSITIONS, fromHfConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { makeTokenizer, tinyConfig } from './interop-fixtures.ts';

const warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);
process.on('warning', onWarning);
afterEach(() => {
  warnings.length = 0;
});

const hfConfig = (positions: number) => ({
  model_type: 'llama',
  vocab_size: 300,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  max_position_embeddings: positions,
});

/** process.emitWarning delivers on the next tick. */
const nextTick = () => new Promise((r) => process.nextTick(r));

describe('context lengths above the engine limit', () => {
  it('config.json: max_position_embeddings is cut to the limit with a warning naming file and field', async () => {
    expect(fromHfConfig(hfConfig(4096), 'a/config.json').maxSeqLen).toBe(4096);
    await nextTick();
    expect(warnings).toEqual([]);
    expect(fromHfConfig(hfConfig(131072), 'b/config.json').maxSeqLen).toBe(MAX_POSITIONS);
    await nextTick();
    expect(warnings.map((w) => w.message)).toEqual([
      `b/config.json: max_position_embeddings is 131072; the engine takes at most ${MAX_POSITIONS} positions, so longer sequences are refused`,
    ]);
  });

  it('GGUF: context_length is cut to the limit with a warning naming file and key', async () => {
    const tokenizer = makeTokenizer();
    const model = new LlamaModel(tinyConfig(tokenizer, { maxSeqLen: 65536 })).initialize(1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-hardening-model-'));
    try {
      const file = path.join(dir, 'long.gguf');
      writeGgufFile(file, model, tokenizer, { name: 'long' });
      expect(ggufConfig(readGgufFile(file)).maxSeqLen).toBe(MAX_POSITIONS);
      await nextTick();
      expect(warnings.map((w) => w.message)).toEqual([
        `${file}: llama.context_length is 65536; the engine takes at most ${MAX_POSITIONS} positions, so longer sequences are refused`,
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
