/**
 * GGUF model files are checked by PSM Lab's own reader before llama.cpp sees them: the header is read without
 * the tensor data (and grows past its first MiB when the metadata is large), every weight and block scale must
 * be finite, and `psm audit --provider gguf:FILE` on a corrupt file fails at once naming the file and the
 * problem, instead of llama.cpp's raw errors and a "re-run to resume" that cannot help.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registerServeCommands } from '../src/cli/serve-commands.ts';
import {
  checkGgufModelFile,
  f32ToF16Bits,
  ggufContents,
  parseGguf,
  readGgufHeader,
  serializeGguf,
  str,
} from '../src/interop/gguf.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { GgufProvider } from '../src/providers/gguf.ts';
import type { Provider } from '../src/providers/types.ts';
import { runCli } from './cli-run.ts';
import { makeTokenizer, tinyConfig } from './interop-fixtures.ts';

const tokenizer = makeTokenizer();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-gguf-check-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const model = new LlamaModel(tinyConfig(tokenizer)).initialize(3);
const contents = ggufContents(model, tokenizer);
const good = Buffer.concat(serializeGguf(contents.metadata, contents.tensors));
const goodF16 = Buffer.concat(
  serializeGguf(
    contents.metadata,
    contents.tensors.map((t) => ({ ...t, type: t.shape.length === 2 ? ('F16' as const) : t.type })),
  ),
);

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Absolute byte offset of a tensor's data in a serialized file. */
function dataAt(bytes: Buffer, tensor: string): number {
  const g = parseGguf(bytes, 'x');
  return g.dataOffset + g.tensors.find((t) => t.name === tensor)!.offset;
}

describe('readGgufHeader', () => {
  it('reads what parseGguf reads, without the tensor data, also when the metadata outgrows the first MiB', () => {
    const { readTensorBytes: _b, ...whole } = parseGguf(good, path.join(dir, 'good.gguf'));
    expect(readGgufHeader(write('good.gguf', good))).toEqual(whole);
    const meta = new Map(contents.metadata);
    meta.set('general.description', str('x'.repeat(3 << 20)));
    const big = Buffer.concat(serializeGguf(meta, contents.tensors));
    const file = write('big-meta.gguf', big);
    const { readTensorBytes: _c, ...bigWhole } = parseGguf(big, file);
    expect(readGgufHeader(file)).toEqual(bigWhole);
    // Cut inside the large string: a truncation, named, not a read past the end.
    const cut = write('cut-meta.gguf', big.subarray(0, 2 << 20));
    expect(() => readGgufHeader(cut)).toThrow(/cut-meta\.gguf: .*only \d+ bytes follow/);
  });
});

describe('checkGgufModelFile', () => {
  it('accepts the well-formed F32 and F16 files', () => {
    expect(checkGgufModelFile(write('ok.gguf', good)).tensors.length).toBe(contents.tensors.length);
    expect(checkGgufModelFile(write('ok16.gguf', goodF16)).tensors.length).toBe(contents.tensors.length);
  });

  it('names the tensor and element of a NaN or infinite weight (F32, F16)', () => {
    const nan = Buffer.from(good);
    nan.writeFloatLE(NaN, dataAt(good, 'blk.0.attn_q.weight') + 4 * 7);
    expect(() => checkGgufModelFile(write('nan.gguf', nan))).toThrow(
      /nan\.gguf: tensor "blk\.0\.attn_q\.weight" holds NaN at element 7: the weights are corrupt/,
    );
    const inf = Buffer.from(goodF16);
    inf.writeUInt16LE(f32ToF16Bits(-Infinity), dataAt(goodF16, 'blk.1.ffn_down.weight') + 2 * 3);
    expect(() => checkGgufModelFile(write('inf16.gguf', inf))).toThrow(
      /tensor "blk\.1\.ffn_down\.weight" holds -Infinity at element 3/,
    );
  });

  it('names a quantized tensor whose block scale is NaN', () => {
    // Relabel token_embd.weight as Q8_0 (32 values in 34 bytes: an f16 scale, then 32 int8) and poison block 2.
    const q = Buffer.from(good);
    const at = q.indexOf(Buffer.from('token_embd.weight')) + 'token_embd.weight'.length + 4 + 16;
    q.writeUInt32LE(8, at);
    // Zero blocks (scale 0): float32 bytes read as f16 scales could be anything.
    const start = dataAt(q, 'token_embd.weight');
    q.fill(0, start, start + parseGguf(q, 'q').tensors[0].byteSize);
    expect(checkGgufModelFile(write('q8.gguf', q)).tensors.length).toBe(contents.tensors.length);
    q.writeUInt16LE(0x7e00, dataAt(q, 'token_embd.weight') + 2 * 34);
    expect(() => checkGgufModelFile(write('q8nan.gguf', q))).toThrow(
      /tensor "token_embd\.weight" \(Q8_0\) has a scale of NaN in block 2/,
    );
  });

  it('refuses a file without an architecture or without tensors', () => {
    const meta = new Map(contents.metadata);
    meta.delete('general.architecture');
    expect(() =>
      checkGgufModelFile(write('noarch.gguf', Buffer.concat(serializeGguf(meta, contents.tensors)))),
    ).toThrow(/"general\.architecture" is missing/);
    expect(() =>
      checkGgufModelFile(write('empty.gguf', Buffer.concat(serializeGguf(contents.metadata, [])))),
    ).toThrow(/holds no tensors/);
  });
});

describe('a corrupt GGUF file given to a provider or to psm audit', () => {
  // The first metadata value's type field, overwritten with a number no GGUF type has.
  const badType = Buffer.from(good);
  const keyAt = badType.indexOf(Buffer.from('general.architecture'));
  badType.writeUInt32LE(2065946334, keyAt + 'general.architecture'.length);
  const nanWeights = Buffer.from(good);
  for (let i = 0; i < 64; i++) nanWeights.writeFloatLE(NaN, dataAt(good, 'blk.0.attn_q.weight') + 4 * i);
  const truncated = good.subarray(0, good.length - 1000);
  const cases: [string, Buffer, RegExp][] = [
    [
      'type.gguf',
      badType,
      /metadata "general\.architecture" at offset \d+ has unknown value type 2065946334/,
    ],
    ['nan.gguf', nanWeights, /tensor "blk\.0\.attn_q\.weight" holds NaN at element 0/],
    ['trunc.gguf', truncated, /tensor "[^"]+" needs bytes .*truncated file or lying header/],
  ];

  it("the GGUF provider refuses it with the reader's message before llama.cpp is loaded", async () => {
    for (const [name, bytes, why] of cases) {
      const file = write(`p-${name}`, bytes);
      const p = new GgufProvider({ modelPath: file });
      await expect(p.generate({ prompt: 'Mara', maxTokens: 2 }), name).rejects.toThrow(why);
      await expect(p.score('Mara', [' lived']), name).rejects.toThrow(file);
    }
  });

  it('psm audit fails at once, naming the file and the problem, with nothing to resume', async () => {
    const items = path.join(dir, 'items.json');
    fs.writeFileSync(
      items,
      JSON.stringify([{ domain: 'kind', prompt: 'User: hi\nAssistant:', good: [' yes'], bad: [' no'] }]),
    );
    for (const [name, bytes, why] of cases) {
      const file = write(name, bytes);
      const out = path.join(dir, `audit-${name}`);
      const run = runCli(
        registerServeCommands,
        'audit',
        '--provider',
        `gguf:${file}`,
        '--no-em',
        '--battery-items',
        items,
        '--out',
        out,
      );
      await expect(run, name).rejects.toThrow(why);
      await expect(run, name).rejects.toThrow(`gguf:${file}: not a usable GGUF model: ${file}:`);
      expect(fs.existsSync(path.join(out, 'journal.jsonl')), name).toBe(false);
    }
  });
});

describe('an audit given NaN scores', () => {
  it('reports the values it got, not a count that looks right', async () => {
    const { runAudit } = await import('../src/audit/index.ts');
    const nanScorer: Provider = {
      id: 'nan-scorer',
      capabilities: { chat: true, completion: true, logprobs: true, score: true },
      identity: () => ({ kind: 'local', location: 'memory:nan', model: 'nan' }),
      generate: () => Promise.reject(new Error('not used')),
      score: (_p, conts) => Promise.resolve(conts.map((_c, i) => (i === 0 ? NaN : -1))),
    };
    const report = await runAudit({
      provider: nanScorer,
      outDir: path.join(dir, 'nan-audit'),
      battery: {
        items: [{ id: 'k1', domain: 'kind', prompt: 'User: hi\nAssistant:', good: [' yes'], bad: [' no'] }],
      },
      em: null,
    });
    expect(report.failures[0]).toMatch(/nan-scorer: score returned \[NaN, -1\] for 2 continuations/);
  });
});
