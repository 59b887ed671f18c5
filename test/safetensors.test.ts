import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  atomicWriteFile,
  atomicWriteFileSync,
  atomicWriteJson,
  writeFolderAtomicallySync,
} from '../src/io/atomic-write.ts';
import {
  parseSafetensors,
  readSafetensors,
  readSafetensorsSync,
  serializeSafetensors,
  writeSafetensors,
  writeSafetensorsSync,
  type TensorData,
} from '../src/io/safetensors.ts';

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-safetensors-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/** Builds a safetensors file by hand from a header object and raw data bytes (no padding). */
function rawFile(header: unknown, data: Uint8Array | number[] = []): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(2 * i, v, true));
  return out;
}

function tmpFiles(): string[] {
  return fs.readdirSync(tmpDir).filter((f) => f.includes('.tmp-'));
}

describe('safetensors round trip', () => {
  const tensors: Record<string, TensorData> = {
    'model.embed.weight': { data: Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 3), shape: [3, 4] },
    'layers.0.norm': { data: new Float32Array([1, -0, Infinity, -Infinity, 1e-40, 3.4e38]), shape: [6] },
    scalar: { data: new Float32Array([42]), shape: [] },
    empty: { data: new Float32Array(0), shape: [0, 5] },
  };
  const metadata = { format: 'pt', step: '1200' };

  it('writes and reads back tensors, shapes and metadata exactly', async () => {
    const file = path.join(tmpDir, 'model.safetensors');
    await writeSafetensors(file, tensors, metadata);
    const read = await readSafetensors(file);
    expect(read.metadata).toEqual(metadata);
    expect([...read.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const got = read.tensors.get(name)!;
      expect(got.shape).toEqual(t.shape);
      expect(Array.from(got.data)).toEqual(Array.from(t.data));
    }
    // NaN survives too (bit-exact F32 storage).
    writeSafetensorsSync(file, { n: { data: new Float32Array([NaN]), shape: [1] } });
    expect(readSafetensorsSync(file).tensors.get('n')!.data[0]).toBeNaN();
    expect(tmpFiles()).toEqual([]);
  });

  it('pads the header with spaces to 8 bytes and uses the HF header layout', () => {
    const bytes = concat(
      serializeSafetensors({ b: { data: new Float32Array([1, 2]), shape: [2] } }, { k: 'v' }),
    );
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLen));
    expect(header.trimEnd()).toBe(
      '{"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    );
    expect(header.slice(header.trimEnd().length)).toMatch(/^ *$/);
    expect(bytes.byteLength).toBe(8 + headerLen + 8);
  });

  it('is deterministic regardless of insertion order and accepts Maps', () => {
    const reversed = Object.fromEntries(Object.entries(tensors).reverse());
    const a = concat(serializeSafetensors(tensors, metadata));
    const b = concat(serializeSafetensors(reversed, metadata));
    const c = concat(serializeSafetensors(new Map(Object.entries(tensors)), metadata));
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    expect(Buffer.from(c).equals(Buffer.from(a))).toBe(true);
  });

  it('reads tensors from subarray views and unaligned offsets', () => {
    const big = new Float32Array([9, 9, 1, 2, 3, 9]);
    const view = big.subarray(2, 5);
    const bytes = concat(serializeSafetensors({ v: { data: view, shape: [3] } }));
    // Shift the whole file by one byte so the F32 data is not 4-aligned in the backing buffer.
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    const parsed = parseSafetensors(shifted.subarray(1), 'shifted');
    expect(Array.from(parsed.tensors.get('v')!.data)).toEqual([1, 2, 3]);
  });

  it('rejects invalid tensors when writing, naming the tensor', () => {
    expect(() =>
      serializeSafetensors({ w: { data: new Float32Array(5), shape: [2, 3] } }, {}, 'out.st'),
    ).toThrow("out.st: tensor 'w' shape [2, 3] has 6 elements but data has 5");
    expect(() =>
      serializeSafetensors({ w: { data: new Float32Array(1), shape: [-1] } }, {}, 'out.st'),
    ).toThrow(/tensor 'w' has invalid shape/);
    expect(() => serializeSafetensors({ __metadata__: { data: new Float32Array(1), shape: [1] } })).toThrow(
      /reserved/,
    );
  });
});

describe('reading F16 and BF16', () => {
  it('widens F16 exactly, including subnormals, infinities and NaN', () => {
    const halves = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555];
    const data = u16le(halves);
    const file = rawFile({ h: { dtype: 'F16', shape: [2, 5], data_offsets: [0, data.length] } }, data);
    const t = parseSafetensors(file, 'half.safetensors').tensors.get('h')!;
    expect(t.shape).toEqual([2, 5]);
    const v = Array.from(t.data);
    expect(v.slice(0, 8)).toEqual([1, -2, 0.5, 65504, 2 ** -24, -0, Infinity, -Infinity]);
    expect(v[8]).toBeNaN();
    expect(v[9]).toBeCloseTo(1 / 3, 3); // 0x3555 is the F16 nearest 1/3
  });

  it('widens BF16 exactly', () => {
    const data = u16le([0x3f80, 0xc020, 0x4049, 0x0000, 0x7f80]);
    const file = rawFile(
      {
        __metadata__: { source: 'hand-made' },
        f: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'BF16', shape: [5], data_offsets: [4, 14] },
      },
      [...new Uint8Array(new Float32Array([7.25]).buffer), ...data],
    );
    const parsed = parseSafetensors(file, 'bf16.safetensors');
    expect(parsed.metadata).toEqual({ source: 'hand-made' });
    expect(Array.from(parsed.tensors.get('f')!.data)).toEqual([7.25]);
    expect(Array.from(parsed.tensors.get('b')!.data)).toEqual([1, -2.5, 3.140625, 0, Infinity]);
  });
});

describe('safetensors validation errors name the file and tensor', () => {
  const f32 = (n: number): number[] => [...new Uint8Array(new Float32Array(n).buffer)];
  const cases: [string, Uint8Array, string | RegExp][] = [
    [
      'too short for the length prefix',
      new Uint8Array([1, 2, 3]),
      'bad.st: truncated safetensors file: 3 bytes',
    ],
    [
      'header length beyond the file',
      (() => {
        const f = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1));
        new DataView(f.buffer).setBigUint64(0, 10_000n, true);
        return f;
      })(),
      /bad.st: header length 10000 exceeds the \d+ bytes after the length prefix/,
    ],
    ['header is not JSON', rawFile('{"a": {"dtype": '), /bad.st: header is not valid JSON/],
    ['header is an array', rawFile('[1,2]'), 'bad.st: header must be a JSON object'],
    [
      'unknown dtype',
      rawFile({ w: { dtype: 'F13', shape: [1], data_offsets: [0, 4] } }, f32(1)),
      "bad.st: tensor 'w': unknown dtype 'F13'",
    ],
    [
      'unsupported dtype',
      rawFile({ w: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, f32(2)),
      "bad.st: tensor 'w': dtype I64 is not supported for reading (supported: F32, F16, BF16)",
    ],
    [
      'offsets past the data (truncated data)',
      rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(2)),
      "bad.st: tensor 'w': data_offsets [0, 16] exceed the 8-byte data section",
    ],
    [
      'offsets not matching the shape',
      rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(2)),
      "bad.st: tensor 'w': data_offsets span 8 bytes but shape [3] of F32 needs 12",
    ],
    [
      'overlapping tensors',
      rawFile(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        f32(3),
      ),
      "bad.st: tensor 'b' data_offsets [4, 12] overlap tensor 'a' ending at 8",
    ],
    [
      'gap between tensors',
      rawFile(
        {
          a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
        },
        f32(3),
      ),
      "bad.st: tensor 'b' starts at 8, leaving a gap after byte 4",
    ],
    [
      'trailing bytes not covered by any tensor',
      rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2)),
      'bad.st: data section is 8 bytes but the tensors cover 4',
    ],
    [
      'end before begin',
      rawFile({ a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, f32(1)),
      "bad.st: tensor 'a': data_offsets [4, 0] end before begin",
    ],
    [
      'bad shape',
      rawFile({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32(1)),
      "bad.st: tensor 'a': shape must be an array of non-negative integers",
    ],
    [
      'non-string metadata',
      rawFile({ __metadata__: { step: 3 } }),
      "bad.st: __metadata__ value for 'step' must be a string",
    ],
  ];
  for (const [name, bytes, expected] of cases) {
    it(name, () => {
      expect(() => parseSafetensors(bytes, 'bad.st')).toThrow(expected);
    });
  }

  it('a truncated file on disk names its path', async () => {
    const file = path.join(tmpDir, 'truncated.safetensors');
    await writeSafetensors(file, { w: { data: new Float32Array(16), shape: [4, 4] } });
    const full = fs.readFileSync(file);
    fs.writeFileSync(file, full.subarray(0, full.length - 10));
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: tensor 'w': data_offsets [0, 64] exceed`);
    fs.writeFileSync(file, full.subarray(0, 20));
    expect(() => readSafetensorsSync(file)).toThrow(`${file}: header length`);
  });

  it('a missing file names its path', async () => {
    const file = path.join(tmpDir, 'nope.safetensors');
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: cannot read safetensors file`);
  });
});

describe('atomic writes', () => {
  it('replaces the file and leaves no temp files', async () => {
    const file = path.join(tmpDir, 'state.json');
    await atomicWriteJson(file, { step: 1 });
    await atomicWriteJson(file, { step: 2 });
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ step: 2 });
    atomicWriteFileSync(file, 'plain text');
    expect(fs.readFileSync(file, 'utf8')).toBe('plain text');
    expect(tmpFiles()).toEqual([]);
  });

  it('leaves the old file intact when a write fails midway', async () => {
    const file = path.join(tmpDir, 'weights.safetensors');
    await writeSafetensors(file, { w: { data: new Float32Array([1, 2, 3]), shape: [3] } });
    const before = fs.readFileSync(file);
    // The second chunk is not bytes, so the write throws after the temp file already holds data.
    const badChunks = [new Uint8Array(1000), 'not bytes' as unknown as Uint8Array];
    await expect(atomicWriteFile(file, badChunks)).rejects.toThrow(`atomic write of ${file} failed`);
    expect(() => atomicWriteFileSync(file, badChunks)).toThrow(`atomic write of ${file} failed`);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(tmpFiles()).toEqual([]);
  });

  it('cleans up when the final rename fails', async () => {
    const dirTarget = path.join(tmpDir, 'is-a-directory');
    fs.mkdirSync(path.join(dirTarget, 'child'), { recursive: true });
    await expect(atomicWriteFile(dirTarget, 'x')).rejects.toThrow(`atomic write of ${dirTarget} failed`);
    expect(fs.statSync(dirTarget).isDirectory()).toBe(true);
    expect(tmpFiles()).toEqual([]);
  });

  it('writes a whole folder atomically: a failed write leaves the old folder, replacing needs asking', () => {
    const target = path.join(tmpDir, 'model');
    writeFolderAtomicallySync(target, (d) => fs.writeFileSync(path.join(d, 'a.txt'), 'one'));
    expect(fs.readFileSync(path.join(target, 'a.txt'), 'utf8')).toBe('one');
    expect(() => writeFolderAtomicallySync(target, () => {})).toThrow(/model already exists/);
    expect(() =>
      writeFolderAtomicallySync(
        target,
        (d) => {
          fs.writeFileSync(path.join(d, 'a.txt'), 'half');
          throw new Error('killed mid-write');
        },
        { replace: true },
      ),
    ).toThrow('killed mid-write');
    expect(fs.readdirSync(target)).toEqual(['a.txt']);
    expect(fs.readFileSync(path.join(target, 'a.txt'), 'utf8')).toBe('one');
    writeFolderAtomicallySync(target, (d) => fs.writeFileSync(path.join(d, 'b.txt'), 'two'), {
      replace: true,
    });
    expect(fs.readdirSync(target)).toEqual(['b.txt']);
    expect(tmpFiles()).toEqual([]);
  });

  it('refuses values JSON cannot represent', async () => {
    await expect(atomicWriteJson(path.join(tmpDir, 'u.json'), undefined)).rejects.toThrow(
      /not JSON-serializable/,
    );
  });
});
