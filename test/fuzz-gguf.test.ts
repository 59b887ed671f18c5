/**
 * Fuzzing the GGUF reader: random byte edits anywhere in the header, edits aimed at its length, count, type,
 * dimension and offset fields (huge values, 2^60-byte strings, 1e15-element tensors), then everything built on a
 * file that still parses (config, model, tokenizer), in memory and from disk (header reader, value scan).
 * Every malformed file is answered by an Error naming the file, in bounded time and memory (fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  checkGgufModelFile,
  ggufConfig,
  ggufContents,
  ggufToModel,
  ggufTokenizer,
  parseGguf,
  serializeGguf,
} from '../src/interop/gguf.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { byteMutation, expectCleanOutcome, fraction, fuzzParams, mutate } from './fuzz-support.ts';
import { makeTokenizer, tinyConfig } from './interop-fixtures.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-fuzz-gguf-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const tokenizer = makeTokenizer();
const model = new LlamaModel(
  tinyConfig(tokenizer, { nLayers: 1, dim: 16, nHeads: 2, nKvHeads: 1, hiddenDim: 32 }),
).initialize(2);
const contents = ggufContents(model, tokenizer);
const good = Buffer.concat(serializeGguf(contents.metadata, contents.tensors));
const parsed = parseGguf(good, 'good.gguf');
const SOURCE = 'fuzz.gguf';

type FieldKind = 'header' | 'key' | 'type' | 'value' | 'array' | 'tensor';
interface Field {
  at: number;
  width: 4 | 8;
  kind: FieldKind;
}

/** Byte offsets of the header's integer fields (GGUF v3 layout), by kind, so that edits can aim at each kind. */
function fieldOffsets(bytes: Buffer): Field[] {
  const out: Field[] = [
    { at: 4, width: 4, kind: 'header' },
    { at: 8, width: 8, kind: 'header' },
    { at: 16, width: 8, kind: 'header' },
  ];
  let pos = 24;
  const str = (kind: FieldKind) => {
    out.push({ at: pos, width: 8, kind });
    pos += 8 + Number(bytes.readBigUInt64LE(pos));
  };
  const sizes: Record<number, number> = {
    0: 1,
    1: 1,
    2: 2,
    3: 2,
    4: 4,
    5: 4,
    6: 4,
    7: 1,
    10: 8,
    11: 8,
    12: 8,
  };
  const value = (type: number, inArray: boolean) => {
    if (type === 8) str(inArray ? 'array' : 'value');
    else if (type === 9) {
      out.push({ at: pos, width: 4, kind: 'type' }, { at: pos + 4, width: 8, kind: 'value' });
      const el = bytes.readUInt32LE(pos);
      const n = Number(bytes.readBigUInt64LE(pos + 4));
      pos += 12;
      for (let i = 0; i < n; i++) value(el, true);
    } else {
      if (!inArray && (type === 4 || type === 5)) out.push({ at: pos, width: 4, kind: 'value' });
      if (!inArray && (type === 10 || type === 11)) out.push({ at: pos, width: 8, kind: 'value' });
      pos += sizes[type];
    }
  };
  for (let i = 0; i < parsed.metadata.size; i++) {
    str('key');
    out.push({ at: pos, width: 4, kind: 'type' });
    const type = bytes.readUInt32LE(pos);
    pos += 4;
    value(type, false);
  }
  for (let i = 0; i < parsed.tensors.length; i++) {
    str('tensor');
    out.push({ at: pos, width: 4, kind: 'tensor' });
    const nDims = bytes.readUInt32LE(pos);
    pos += 4;
    for (let d = 0; d < nDims; d++, pos += 8) out.push({ at: pos, width: 8, kind: 'tensor' });
    out.push({ at: pos, width: 4, kind: 'tensor' }, { at: pos + 4, width: 8, kind: 'tensor' });
    pos += 12;
  }
  return out;
}

const fields = fieldOffsets(good);
const KINDS: FieldKind[] = ['header', 'key', 'type', 'value', 'array', 'tensor'];
const byKind = new Map(KINDS.map((k) => [k, fields.filter((f) => f.kind === k)]));

/** An edit: a kind of field (each kind equally likely), which one of that kind, and the value written. */
const fieldEdit = fc.record({
  kind: fc.constantFrom(...KINDS),
  which: fraction,
  value: fc.oneof(
    fc.constantFrom(
      0n,
      1n,
      2n,
      3n,
      8n,
      9n,
      13n,
      30n,
      2065946334n,
      10n ** 15n,
      1n << 60n,
      (1n << 64n) - 1n,
      0xffffffffn,
    ),
    fc.bigInt({ min: 0n, max: 1n << 20n }),
  ),
});

function applyFieldEdits(edits: readonly { kind: FieldKind; which: number; value: bigint }[]): Buffer {
  const b = Buffer.from(good);
  for (const { kind, which, value } of edits) {
    const list = byKind.get(kind)!;
    const f = list[Math.floor(which * list.length)];
    if (f.width === 4) b.writeUInt32LE(Number(value & 0xffffffffn), f.at);
    else b.writeBigUInt64LE(value & ((1n << 64n) - 1n), f.at);
  }
  return b;
}

/** Everything a user can do with a file in memory: parse, then config, model and tokenizer. */
function readAll(bytes: Uint8Array): void {
  const g = parseGguf(bytes, SOURCE);
  try {
    ggufConfig(g);
    ggufToModel(g);
  } finally {
    ggufTokenizer(g);
  }
}

describe('GGUF reader under fuzzing', () => {
  it('the valid file reads', () => {
    expect(() => readAll(good)).not.toThrow();
    for (const k of KINDS) expect(byKind.get(k)!.length, k).toBeGreaterThan(0);
  });

  it('random byte edits of the header', () => {
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 4 }), (ms) => {
        const bytes = mutate(good, ms, parsed.dataOffset);
        expectCleanOutcome(() => readAll(bytes), { source: SOURCE });
      }),
      fuzzParams(300),
    );
  });

  it('edits aimed at length, count, type, dimension and offset fields', () => {
    fc.assert(
      fc.property(fc.array(fieldEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const bytes = applyFieldEdits(edits);
        expectCleanOutcome(() => readAll(bytes), { source: SOURCE });
      }),
      fuzzParams(500),
    );
  });

  it('the header reader and value scan on disk', () => {
    const file = path.join(dir, SOURCE);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(fieldEdit, { minLength: 1, maxLength: 2 }).map(applyFieldEdits),
          fc.array(byteMutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(good, ms)),
        ),
        (bytes) => {
          fs.writeFileSync(file, bytes);
          expectCleanOutcome(() => checkGgufModelFile(file), { source: file });
        },
      ),
      fuzzParams(150),
    );
  });

  it('arbitrary bytes after a GGUF magic', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (tail) => {
        const bytes = Buffer.concat([Buffer.from('GGUF'), tail]);
        expectCleanOutcome(() => readAll(bytes), { source: SOURCE });
      }),
      fuzzParams(300),
    );
  });
});

describe('metadata that lies about the model size', () => {
  it('a million blocks over a small file is refused at the first missing tensor, before allocating', () => {
    const lie = Buffer.from(good);
    const at = lie.indexOf(Buffer.from('llama.block_count')) + 'llama.block_count'.length + 4;
    lie.writeUInt32LE(1 << 20, at);
    const e = expectCleanOutcome(() => ggufToModel(parseGguf(lie, SOURCE)), {
      source: SOURCE,
      maxMs: 500,
      maxAllocation: 4 << 20,
    });
    expect(e?.message).toMatch(/tensor "blk\.1\.attn_norm\.weight" is missing/);
  });
});
