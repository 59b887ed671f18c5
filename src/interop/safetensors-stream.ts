/**
 * A streaming safetensors reader for importing open-weight checkpoints: it reads the header, validates it as
 * strictly as src/io/safetensors.ts does (known dtype, shape and offsets consistent, tensors tiling the data
 * section exactly), then reads one tensor at a time from the file descriptor. Shards of several GB (beyond
 * Node's 2 GiB readFileSync limit) therefore import, and peak memory is one decoded tensor, not the shard.
 */
import * as fs from 'node:fs';
import { endianness } from 'node:os';

const DTYPE_SIZES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};
const READABLE = ['F32', 'F16', 'BF16'];
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per read call; fs.readSync takes at most 2 GiB at once. */
const READ_CHUNK = 1 << 30;

export interface StreamedTensorInfo {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  begin: number;
  end: number;
}

let halfTable: Float32Array | undefined;

/** All 65536 IEEE half values as float32, built once. */
export function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    t[h] =
      exp === 0
        ? sign * frac * 2 ** -24
        : exp === 31
          ? frac
            ? NaN
            : sign * Infinity
          : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

/** Widens little-endian F32 / F16 / BF16 bytes to a fresh Float32Array. */
export function decodeFloats(bytes: Uint8Array, dtype: 'F32' | 'F16' | 'BF16', count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === 'F32') {
    new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * count));
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F16') {
    const table = halfToFloatTable();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(2 * i, true)];
    return out;
  }
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  return out;
}

function readExactly(fd: number, buf: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, Math.min(READ_CHUNK, buf.byteLength - done), position + done);
    if (n === 0)
      throw new Error(
        `${file}: unexpected end of file at byte ${position + done} (file truncated while reading?)`,
      );
    done += n;
  }
}

function isDim(d: unknown): d is number {
  return typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
}

/** Reads and validates the header; returns the tensors in data order and where the data section starts. */
export function readSafetensorsHeader(
  fd: number,
  size: number,
  file: string,
): { tensors: StreamedTensorInfo[]; dataStart: number } {
  if (endianness() !== 'LE') throw new Error('safetensors I/O requires a little-endian host');
  if (size < 8)
    throw new Error(
      `${file}: truncated safetensors file: ${size} bytes, need at least 8 for the header length`,
    );
  const lenBuf = new Uint8Array(8);
  readExactly(fd, lenBuf, 0, file);
  const headerLen = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(size - 8))
    throw new Error(
      `${file}: header length ${headerLen} exceeds the ${size - 8} bytes after the length prefix (truncated or not a safetensors file)`,
    );
  if (headerLen > BigInt(MAX_HEADER_BYTES))
    throw new Error(`${file}: header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  const headerBuf = new Uint8Array(n);
  readExactly(fd, headerBuf, 8, file);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
  } catch (e) {
    throw new Error(`${file}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    throw new Error(`${file}: header must be a JSON object`);
  const dataStart = 8 + n;
  const dataLength = size - dataStart;
  const tensors: StreamedTensorInfo[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const where = `${file}: tensor '${name}'`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new Error(`${where}: header entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || DTYPE_SIZES[dtype] === undefined)
      throw new Error(
        `${where}: unknown dtype ${JSON.stringify(dtype)} (supported for reading: ${READABLE.join(', ')})`,
      );
    if (!READABLE.includes(dtype))
      throw new Error(
        `${where}: dtype ${dtype} is not supported for reading (supported: ${READABLE.join(', ')}); quantized checkpoints must be dequantized first`,
      );
    if (!Array.isArray(shape) || !shape.every(isDim))
      throw new Error(
        `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
      );
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim))
      throw new Error(`${where}: data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`);
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before begin`);
    if (end > dataLength)
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] exceed the ${dataLength}-byte data section (file truncated?)`,
      );
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * DTYPE_SIZES[dtype])
      throw new Error(
        `${where}: data_offsets span ${end - begin} bytes but shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${count * DTYPE_SIZES[dtype]}`,
      );
    tensors.push({
      name,
      dtype: dtype as StreamedTensorInfo['dtype'],
      shape: [...(shape as number[])],
      begin,
      end,
    });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: StreamedTensorInfo | undefined;
  for (const t of tensors) {
    if (t.begin < cursor)
      throw new Error(
        `${file}: tensor '${t.name}' data_offsets [${t.begin}, ${t.end}] overlap tensor '${prev?.name}' ending at ${cursor}`,
      );
    if (t.begin > cursor)
      throw new Error(`${file}: tensor '${t.name}' starts at ${t.begin}, leaving a gap after byte ${cursor}`);
    cursor = t.end;
    prev = t;
  }
  if (cursor !== dataLength)
    throw new Error(
      `${file}: data section is ${dataLength} bytes but the tensors cover ${cursor} (trailing bytes or a lying header)`,
    );
  return { tensors, dataStart };
}

/**
 * Calls `onTensor` for each tensor of a safetensors file in data order, decoding one at a time. Returns the
 * dtypes met. The header is fully validated before any tensor is delivered.
 */
export function streamSafetensors(
  file: string,
  onTensor: (name: string, data: Float32Array, shape: number[]) => void,
): Set<string> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot read safetensors file: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const { tensors, dataStart } = readSafetensorsHeader(fd, size, file);
    const dtypes = new Set<string>();
    for (const t of tensors) {
      dtypes.add(t.dtype);
      const raw = new Uint8Array(t.end - t.begin);
      readExactly(fd, raw, dataStart + t.begin, file);
      const count = t.shape.reduce((a, b) => a * b, 1);
      onTensor(t.name, decodeFloats(raw, t.dtype, count), t.shape);
    }
    return dtypes;
  } finally {
    fs.closeSync(fd);
  }
}
