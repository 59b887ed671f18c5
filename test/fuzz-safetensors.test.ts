/**
 * Fuzzing the safetensors readers (in memory and streamed from disk): byte mutations of a valid file,
 * structural mutations of its JSON header, and lying length fields. Every malformed file is answered by an
 * Error naming the file, in bounded time and memory (see fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { streamSafetensors } from '../src/io/safetensors-stream.ts';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.ts';
import { byteMutation, expectCleanOutcome, fuzzParams, mutate } from './fuzz-support.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-fuzz-st-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = Buffer.concat(
  serializeSafetensors(
    {
      'model.embed_tokens.weight': {
        data: Float32Array.from({ length: 24 }, (_, i) => i / 7),
        shape: [6, 4],
      },
      'model.norm.weight': { data: new Float32Array([1, 2, 3, 4]), shape: [4] },
      empty: { data: new Float32Array(0), shape: [0, 3] },
    },
    { format: 'pt', note: 'fuzz' },
  ),
);
const headerLength = Number(good.readBigUInt64LE(0));
const header = JSON.parse(good.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
const data = good.subarray(8 + headerLength);

/** A file from a header object and data bytes (the length prefix made to match). */
function fileOf(h: unknown, body: Uint8Array = data): Buffer {
  const json = Buffer.from(JSON.stringify(h) ?? 'null');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, body]);
}

const SOURCE = 'fuzz.safetensors';

/** Values a header field might hold in a broken or hostile file. */
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom('F32', 'F16', 'BF16', 'I64', 'F64', 'Q4', '', '__proto__'),
  fc.array(
    fc.oneof(fc.integer({ min: -2, max: 64 }), fc.constantFrom(1e15, 2 ** 53, 2 ** 60, -0, 0.5, NaN)),
    {
      maxLength: 4,
    },
  ),
);

/** Structural edits of the header: replace a field of an entry, add or delete an entry, or replace it whole. */
const headerEdit = fc.oneof(
  fc.record({
    kind: fc.constant('field' as const),
    entry: fc.constantFrom(...Object.keys(header)),
    field: fc.constantFrom('dtype', 'shape', 'data_offsets', 'extra'),
    value: fieldValue,
  }),
  fc.record({ kind: fc.constant('delete' as const), entry: fc.constantFrom(...Object.keys(header)) }),
  fc.record({
    kind: fc.constant('add' as const),
    name: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__metadata__', '__proto__', 'constructor')),
    value: fc.oneof(
      fieldValue,
      fc.record({ dtype: fieldValue, shape: fieldValue, data_offsets: fieldValue }),
    ),
  }),
);

function applyEdits(edits: readonly fc.Arbitrary<never>[] | readonly unknown[]): Record<string, unknown> {
  const h = structuredClone(header);
  for (const e of edits as {
    kind: 'field' | 'delete' | 'add';
    entry?: string;
    field?: string;
    value?: unknown;
    name?: string;
  }[]) {
    if (e.kind === 'delete') delete h[e.entry!];
    else if (e.kind === 'add') h[e.name!] = e.value;
    else {
      const target = h[e.entry!];
      if (typeof target === 'object' && target !== null)
        (target as Record<string, unknown>)[e.field!] = e.value;
    }
  }
  return h;
}

describe('safetensors readers under fuzzing', () => {
  it('the valid file reads', () => {
    expect(parseSafetensors(good, SOURCE).tensors.size).toBe(3);
  });

  it('byte mutations of the header and data', () => {
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 4 }), fc.boolean(), (ms, inHeader) => {
        const bytes = mutate(good, ms, inHeader ? 8 + headerLength : good.length);
        expectCleanOutcome(() => parseSafetensors(bytes, SOURCE), { source: SOURCE });
      }),
      fuzzParams(600),
    );
  });

  it('byte mutations of the JSON text, its length prefix kept consistent', () => {
    const json = good.subarray(8, 8 + headerLength);
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (ms) => {
        const text = mutate(json, ms);
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(text.length));
        const bytes = Buffer.concat([len, text, data]);
        expectCleanOutcome(() => parseSafetensors(bytes, SOURCE), { source: SOURCE });
      }),
      fuzzParams(600),
    );
  });

  it('structural mutations of the JSON header', () => {
    fc.assert(
      fc.property(fc.array(headerEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const bytes = fileOf(applyEdits(edits));
        expectCleanOutcome(() => parseSafetensors(bytes, SOURCE), { source: SOURCE });
      }),
      fuzzParams(600),
    );
  });

  it('arbitrary bytes and arbitrary JSON headers', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.jsonValue({ maxDepth: 3 }).map((j) => new Uint8Array(fileOf(j, new Uint8Array(0)))),
        ),
        (bytes) => {
          expectCleanOutcome(() => parseSafetensors(bytes, SOURCE), { source: SOURCE });
        },
      ),
      fuzzParams(400),
    );
  });

  it('the streaming reader, from disk', () => {
    const file = path.join(dir, SOURCE);
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .array(byteMutation, { minLength: 1, maxLength: 3 })
            .map((ms) => mutate(good, ms, 8 + headerLength)),
          fc
            .array(headerEdit, { minLength: 1, maxLength: 2 })
            .map((e) => new Uint8Array(fileOf(applyEdits(e)))),
        ),
        (bytes) => {
          fs.writeFileSync(file, bytes);
          expectCleanOutcome(() => streamSafetensors(file, () => undefined), { source: file });
        },
      ),
      fuzzParams(200),
    );
  });

  it('lying lengths are refused before anything is allocated for them', () => {
    const lies: [string, Buffer][] = [
      ['a 2^60-byte header', Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x10]), good.subarray(8)])],
      ['a 1e15-element tensor', fileOf({ w: { dtype: 'F32', shape: [1e15], data_offsets: [0, 4e15] } })],
      [
        'a shape whose product overflows',
        fileOf({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 16] } }),
      ],
      [
        'an offset past 2^53',
        fileOf({ w: { dtype: 'F32', shape: [1], data_offsets: [2 ** 60, 2 ** 60 + 4] } }),
      ],
    ];
    const file = path.join(dir, 'lie.safetensors');
    for (const [what, bytes] of lies) {
      const e = expectCleanOutcome(() => parseSafetensors(bytes, SOURCE), {
        source: SOURCE,
        maxMs: 200,
        maxAllocation: 1 << 20,
      });
      expect(e, what).toBeDefined();
      fs.writeFileSync(file, bytes);
      expect(
        expectCleanOutcome(() => streamSafetensors(file, () => undefined), {
          source: file,
          maxMs: 200,
          maxAllocation: 1 << 20,
        }),
        what,
      ).toBeDefined();
    }
  });
});
