/**
 * Fuzzing tokenizer.json readers: PSM Lab's byte-level BPE reader (tokenizerFromJson, loadTokenizerSync) and a
 * model folder's tokenizer (loadFolderTokenizer, which falls back to @huggingface/tokenizers). Structural edits
 * of a valid document (fields replaced by arbitrary JSON, entries added or deleted, ids and merges broken) and
 * byte edits of its text. A document that is read must also encode and decode; one that is not is answered by
 * an Error naming the file (fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadFolderTokenizer } from '../src/interop/hf-tokenizer.ts';
import { loadTokenizerSync, tokenizerFromJson, tokenizerToJson, trainBpe } from '../src/tokenizer/index.ts';
import {
  applyStructuralEdits,
  byteMutation,
  expectCleanOutcome,
  fuzzParams,
  mutate,
  structuralEdit,
} from './fuzz-support.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-fuzz-tok-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = tokenizerToJson(
  trainBpe(['User: hello there\nAssistant: hi, how can I help?', 'Mara lived by the river.'], {
    vocabSize: 290,
    specialTokens: ['<|endoftext|>'],
    minFrequency: 1,
  }),
);
const SOURCE = 'fuzz-tokenizer.json';
const SAMPLE = 'User: hello Mara<|endoftext|> ünïcödé';

/** Reading, and for a document that is read, encoding and decoding a sample. */
function readAndUse(read: () => { encode(t: string): number[]; decode(ids: number[]): string }): () => void {
  return () => {
    const tok = read();
    tok.decode(tok.encode(SAMPLE));
  };
}

describe('tokenizer.json readers under fuzzing', () => {
  it('the valid document reads and round-trips', () => {
    const tok = tokenizerFromJson(good, SOURCE);
    expect(tok.decode(tok.encode(SAMPLE))).toBe(SAMPLE);
  });

  it('structural edits, in memory', () => {
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const doc = applyStructuralEdits(good, edits);
        expectCleanOutcome(
          readAndUse(() => tokenizerFromJson(doc, SOURCE)),
          { source: SOURCE },
        );
      }),
      fuzzParams(400),
    );
  });

  it('byte edits of the file text, from disk', () => {
    const text = Buffer.from(JSON.stringify(good));
    const file = path.join(dir, SOURCE);
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (ms) => {
        fs.writeFileSync(file, mutate(text, ms));
        expectCleanOutcome(
          readAndUse(() => loadTokenizerSync(file)),
          { source: file },
        );
      }),
      fuzzParams(200),
    );
  });

  it("a model folder's tokenizer, with the @huggingface/tokenizers fallback", () => {
    const folder = path.join(dir, 'model');
    fs.mkdirSync(folder, { recursive: true });
    const file = path.join(folder, 'tokenizer.json');
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 2 }), (edits) => {
        fs.writeFileSync(file, JSON.stringify(applyStructuralEdits(good, edits)) ?? 'null');
        expectCleanOutcome(
          readAndUse(() => loadFolderTokenizer(folder).tokenizer),
          { source: file },
        );
      }),
      fuzzParams(200),
    );
  });
});
