/**
 * Broken model folders, as `psm serve`, `psm generate` and the local provider open them (LocalEngine.load): each
 * one is refused with an Error naming the broken file and what is wrong with it, quickly and without a large
 * allocation, never a TypeError or an engine that answers garbage.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { expectCleanOutcome } from './fuzz-support.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

const good = makeTinyModelFolder();
const folders: string[] = [good];
afterAll(() => folders.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const CONFIG = JSON.parse(fs.readFileSync(path.join(good, 'config.json'), 'utf8')) as Record<string, unknown>;
const WEIGHTS = fs.readFileSync(path.join(good, 'model.safetensors'));
const TOKENIZER = JSON.parse(fs.readFileSync(path.join(good, 'tokenizer.json'), 'utf8')) as {
  model: { vocab: Record<string, number>; merges: unknown[] };
};

/** The weights file with its JSON header rewritten (data kept). */
function reheader(
  edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void,
) {
  const n = Number(WEIGHTS.readBigUInt64LE(0));
  const header = JSON.parse(WEIGHTS.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, WEIGHTS.subarray(8 + n)]);
}

/** A float of the weights' data section set to `value` (the first tensor in the file). */
function poisoned(value: number): Buffer {
  const b = Buffer.from(WEIGHTS);
  b.writeFloatLE(value, 8 + Number(WEIGHTS.readBigUInt64LE(0)) + 4 * 5);
  return b;
}

const config = (over: Record<string, unknown>) => JSON.stringify({ ...CONFIG, ...over });

/** [what is broken, the file the error must name, what to write there (undefined: delete it), the message] */
const BROKEN: [string, string, string | Buffer | undefined | 'dir', RegExp][] = [
  ['no config.json', 'config.json', undefined, /not found/],
  ['config.json empty', 'config.json', '', /not valid JSON/],
  ['config.json not JSON', 'config.json', '{"hidden_size": 32', /not valid JSON/],
  ['config.json an array', 'config.json', '[1, 2]', /config\.json/],
  ['config.json a folder', 'config.json', 'dir', /config\.json/],
  ['unknown model_type', 'config.json', config({ model_type: 'gpt2' }), /model_type/],
  ['hidden_size missing', 'config.json', config({ hidden_size: undefined }), /hidden_size/],
  ['hidden_size a string', 'config.json', config({ hidden_size: '32' }), /hidden_size/],
  ['hidden_size negative', 'config.json', config({ hidden_size: -32 }), /hidden_size|dim/],
  ['heads not dividing the width', 'config.json', config({ num_attention_heads: 5 }), /divisible|nHeads/],
  ['key/value heads not dividing the heads', 'config.json', config({ num_key_value_heads: 3 }), /nKvHeads/],
  [
    'vocabulary smaller than the tokenizer',
    'config.json',
    config({ vocab_size: 100 }),
    /shape|tokenizer|vocab/,
  ],
  ['a million layers', 'config.json', config({ num_hidden_layers: 1_000_000 }), /needs more parameters than/],
  [
    'a huge width',
    'config.json',
    config({ hidden_size: 2 ** 20, num_attention_heads: 4 }),
    /needs more parameters|shape/,
  ],
  ['one layer too many', 'config.json', config({ num_hidden_layers: 3 }), /model\.layers\.2\..* is missing/],
  ['no model.safetensors', 'model.safetensors', undefined, /not found/],
  ['model.safetensors empty', 'model.safetensors', '', /truncated/],
  [
    'model.safetensors truncated',
    'model.safetensors',
    WEIGHTS.subarray(0, WEIGHTS.length - 100),
    /exceed|truncated|cover/,
  ],
  [
    'model.safetensors a lying header length',
    'model.safetensors',
    Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), WEIGHTS.subarray(8)]),
    /header length/,
  ],
  [
    'a tensor entry deleted',
    'model.safetensors',
    reheader((h) => delete h['model.norm.weight']),
    /"model\.norm\.weight" is missing/,
  ],
  [
    'a tensor of the wrong shape',
    'model.safetensors',
    reheader((h) => (h['model.norm.weight'].shape = [4, 8])),
    /model\.norm\.weight.*shape/,
  ],
  [
    'a quantized dtype',
    'model.safetensors',
    reheader((h) => (h['model.norm.weight'].dtype = 'I8')),
    /dtype I8/,
  ],
  ['a NaN weight', 'model.safetensors', poisoned(NaN), /contains NaN/],
  ['an infinite weight', 'model.safetensors', poisoned(-Infinity), /contains -Infinity/],
  ['no tokenizer.json', 'tokenizer.json', undefined, /not found/],
  ['tokenizer.json not JSON', 'tokenizer.json', '{"model": ', /not valid JSON/],
  [
    'tokenizer.json with a broken merge',
    'tokenizer.json',
    JSON.stringify({ ...TOKENIZER, model: { ...TOKENIZER.model, merges: [5] } }),
    /merges\[0\]/,
  ],
  [
    'tokenizer.json with a gap in its ids',
    'tokenizer.json',
    JSON.stringify({
      ...TOKENIZER,
      model: { ...TOKENIZER.model, vocab: { ...TOKENIZER.model.vocab, '!': 100000 } },
    }),
    /id/,
  ],
];

const CONFIG_OR_WEIGHTS = new Set(['vocabulary smaller than the tokenizer', 'one layer too many']);

describe('broken model folders', () => {
  it('the intact folder loads', () => {
    expect(LocalEngine.load(good).model.config.dim).toBe(32);
  });

  it(`all ${BROKEN.length} broken folders are refused, naming the file and the problem`, () => {
    expect(BROKEN.length).toBeGreaterThanOrEqual(27);
    for (const [what, file, content, message] of BROKEN) {
      const dir = makeTinyModelFolder();
      folders.push(dir);
      const target = path.join(dir, file);
      fs.rmSync(target, { force: true });
      if (content === 'dir') fs.mkdirSync(target);
      else if (content !== undefined) fs.writeFileSync(target, content);
      // A config that disagrees with the weights may be reported at either file; everything else at its own.
      const named = CONFIG_OR_WEIGHTS.has(what) ? dir : target;
      const e = expectCleanOutcome(() => LocalEngine.load(dir), { source: named, maxMs: 3000, label: what });
      expect(e, what).toBeDefined();
      expect(e!.message, what).toMatch(message);
    }
  });
});
