/**
 * readGgufFile reads the header, then each tensor's bytes from the file when asked: the same tensors as the
 * in-memory parser gives, clear errors for bad files, and no copy of the whole file held.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  f32ToF16Bits,
  ggufTensorData,
  ggufToModel,
  parseGguf,
  quantizeQ8_0,
  readGgufFile,
  serializeGguf,
  str,
  writeGgufFile,
  type GgufTensorInput,
} from '../src/interop/gguf.ts';
import { halfToFloatTable } from '../src/io/safetensors.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { makeTokenizer, tinyConfig } from './interop-fixtures.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-gguf-lazy-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Deterministic values with a spread of magnitudes and signs. */
function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.3 + i * 0.37) * (1 + (i % 5)));
}

const TENSORS: GgufTensorInput[] = [
  { name: 'a.f32', shape: [3, 64], data: values(192, 1), type: 'F32' },
  { name: 'b.f16', shape: [2, 96], data: values(192, 2), type: 'F16' },
  { name: 'c.q8_0', shape: [4, 64], data: values(256, 3), type: 'Q8_0' },
  { name: 'd.f32-vector', shape: [5], data: values(5, 4), type: 'F32' },
];
const META = new Map([['general.architecture', str('test')]]);
const BYTES = Buffer.concat(serializeGguf(META, TENSORS));

/** What each type stores, decoded independently of the reader. */
function expected(t: GgufTensorInput): Float32Array {
  const half = halfToFloatTable();
  if (t.type === 'F32') return t.data;
  if (t.type === 'F16') return t.data.map((x) => half[f32ToF16Bits(x)]);
  const q = quantizeQ8_0(t.data);
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
  return t.data.map(
    (_, i) => half[view.getUint16((i >> 5) * 34, true)] * view.getInt8((i >> 5) * 34 + 2 + (i & 31)),
  );
}

/** Absolute offset of the ggml type field of 2-D tensor `name` in a serialized file. */
function typeFieldAt(bytes: Buffer, name: string): number {
  return bytes.indexOf(Buffer.from(name)) + name.length + 4 + 16;
}

describe('readGgufFile (tensor bytes read on demand)', () => {
  it('gives the same F32, F16 and Q8_0 tensors as the in-memory parser, and the values written', () => {
    const file = write('mixed.gguf', BYTES);
    const lazy = readGgufFile(file);
    const whole = parseGguf(BYTES, file);
    expect(lazy.tensors).toEqual(whole.tensors);
    expect(lazy.dataOffset).toBe(whole.dataOffset);
    for (const t of TENSORS) {
      const got = ggufTensorData(lazy, t.name);
      expect(got, t.name).toEqual(ggufTensorData(whole, t.name));
      expect(got, t.name).toEqual(expected(t));
    }
    // Decoding into a caller's array (what ggufToModel does with each parameter) gives the same values.
    const into = new Float32Array(192);
    expect(ggufTensorData(lazy, 'b.f16', into)).toBe(into);
    expect(into).toEqual(expected(TENSORS[1]));
    expect(() => ggufTensorData(lazy, 'a.f32', new Float32Array(10))).toThrow(
      /mixed\.gguf: tensor "a\.f32" has 192 values, not the 10 asked for/,
    );
  });

  it('reads each tensor from the file when asked, not from a copy taken at open', () => {
    const file = write('live.gguf', BYTES);
    const g = readGgufFile(file);
    const t = g.tensors.find((x) => x.name === 'a.f32')!;
    const changed = Float32Array.from(TENSORS[0].data, (x) => x + 1);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, new Uint8Array(changed.buffer), 0, changed.byteLength, g.dataOffset + t.offset);
    fs.closeSync(fd);
    expect(ggufTensorData(g, 'a.f32')).toEqual(changed);
  });

  it('loads the same model as the in-memory parser (F32 with q/k unpermuted, F16, Q8_0)', () => {
    const tokenizer = makeTokenizer();
    const model = new LlamaModel(tinyConfig(tokenizer)).initialize(11);
    for (const dtype of ['F32', 'F16', 'Q8_0'] as const) {
      const file = path.join(dir, `model-${dtype}.gguf`);
      writeGgufFile(file, model, tokenizer, { dtype });
      const lazy = ggufToModel(readGgufFile(file));
      const whole = ggufToModel(parseGguf(fs.readFileSync(file), file));
      for (const [name, p] of whole.params) expect(lazy.param(name).data, `${dtype} ${name}`).toEqual(p.data);
      if (dtype === 'F32')
        for (const [name, p] of model.params) expect(lazy.param(name).data, name).toEqual(p.data);
    }
  });

  it('reads a tensor lying past 2 GiB of a file (sparse here), which a whole-file read could not hold', () => {
    const tail = values(8, 5);
    const [header] = serializeGguf(META, [
      { name: 'big', shape: [1], data: new Float32Array(1), type: 'F32' },
      { name: 'tail', shape: [8], data: tail, type: 'F32' },
    ]);
    const h = Buffer.from(header);
    const bigCount = 600_000_000; // 2.4 GB of F32 before the tail
    h.writeBigUInt64LE(BigInt(bigCount), h.indexOf('big') + 3 + 4);
    h.writeBigUInt64LE(BigInt(bigCount * 4), h.indexOf('tail') + 4 + 4 + 8 + 4);
    const file = path.join(dir, 'sparse.gguf');
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, h, 0, h.length, 0);
    fs.writeSync(fd, new Uint8Array(tail.buffer), 0, tail.byteLength, h.length + bigCount * 4);
    fs.closeSync(fd);
    const g = readGgufFile(file);
    expect(g.fileSize).toBeGreaterThan(2 ** 31);
    expect(ggufTensorData(g, 'tail')).toEqual(tail);
  });

  it('refuses a truncated file, naming the file and the problem', () => {
    const cutData = write('cut-data.gguf', BYTES.subarray(0, BYTES.length - 100));
    expect(() => readGgufFile(cutData)).toThrow(
      /cut-data\.gguf: tensor "[^"]+" .*(truncated file or lying header)/,
    );
    const cutHeader = write('cut-header.gguf', BYTES.subarray(0, 40));
    expect(() => readGgufFile(cutHeader)).toThrow(/cut-header\.gguf: .*(truncated|only \d+ bytes follow)/);
    expect(() => readGgufFile(write('empty.gguf', new Uint8Array(0)))).toThrow(
      /empty\.gguf: truncated GGUF file: 0 bytes/,
    );
  });

  it('refuses a file cut short after its header was read', () => {
    const file = write('shrinks.gguf', BYTES);
    const g = readGgufFile(file);
    fs.truncateSync(file, g.dataOffset + 8);
    expect(() => ggufTensorData(g, 'c.q8_0')).toThrow(
      /shrinks\.gguf: the file changed while being read \(\d+ bytes when its header was read, \d+ now\)/,
    );
  });

  it('refuses bad magic, a missing file and a tensor type it cannot decode, by name', () => {
    expect(() => readGgufFile(write('zip.gguf', Buffer.from('PK\x03\x04 not a gguf file at all')))).toThrow(
      /zip\.gguf: not a GGUF file \(magic "PK\\u0003\\u0004", expected "GGUF"\)/,
    );
    expect(() => readGgufFile(path.join(dir, 'absent.gguf'))).toThrow(/absent\.gguf: cannot read GGUF file/);
    // The F32 tensor relabelled Q4_0 (18 bytes a block of 32): listed, but not decoded.
    const q4 = Buffer.from(BYTES);
    q4.writeUInt32LE(2, typeFieldAt(q4, 'a.f32'));
    const g = readGgufFile(write('q4.gguf', q4));
    expect(g.tensors.find((t) => t.name === 'a.f32')!.byteSize).toBe(6 * 18);
    expect(() => ggufTensorData(g, 'a.f32')).toThrow(
      /q4\.gguf: tensor "a\.f32" is Q4_0; only F32, F16, BF16, Q8_0 tensors can be read/,
    );
  });
});
