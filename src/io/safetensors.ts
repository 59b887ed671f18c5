/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 *   [u64 little-endian header length N][N bytes of JSON header][raw little-endian tensor data]
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
 * start of the data section) plus an optional "__metadata__" object of string -> string.
 *
 * We write F32 only and read F32, F16 and BF16 (widened to Float32Array). Reading is as strict as the
 * reference Rust implementation: tensors must tile the data section exactly, with no gaps or overlaps,
 * so a file it would reject is rejected here too, with the file and tensor named.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { endianness } from 'node:os';
import { atomicWriteFile, atomicWriteFileSync } from './atomic-write.ts';

export interface TensorData {
  data: Float32Array;
  shape: number[];
}

export interface SafetensorsFile {
  /** Tensors in header order. */
  tensors: Map<string, TensorData>;
  metadata: Record<string, string>;
}

export type TensorInput = Record<string, TensorData> | ReadonlyMap<string, TensorData>;

/** Bytes per element for every dtype the format defines; only some are readable (see READABLE). */
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
const READABLE = ['F32', 'F16', 'BF16'] as const;
type ReadableDtype = (typeof READABLE)[number];

/** The reference implementation refuses headers above 100 MB; a larger length means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

export function assertLittleEndianHost(): void {
  // Typed-array views use host byte order and the format is little-endian; big-endian hosts would need swaps.
  if (endianness() !== 'LE') throw new Error('safetensors I/O requires a little-endian host');
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isValidDim(d: unknown): d is number {
  return typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Builds the file as a list of chunks (header, then each tensor's bytes without copying them).
 * Tensors are written in sorted name order so the output does not depend on insertion order.
 */
export function serializeSafetensors(
  tensors: TensorInput,
  metadata: Record<string, string> = {},
  targetName = '<memory>',
): Uint8Array[] {
  assertLittleEndianHost();
  const entries: [string, TensorData][] =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, TensorData>);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') {
      throw new Error(`${targetName}: metadata value for '${key}' must be a string, got ${typeof value}`);
    }
  }
  if (Object.keys(metadata).length > 0) header[METADATA_KEY] = { ...metadata };

  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of entries) {
    if (name === METADATA_KEY)
      throw new Error(`${targetName}: '${METADATA_KEY}' is reserved, not a tensor name`);
    if (!(tensor.data instanceof Float32Array)) {
      throw new Error(`${targetName}: tensor '${name}' data must be a Float32Array`);
    }
    if (!Array.isArray(tensor.shape) || !tensor.shape.every(isValidDim)) {
      throw new Error(
        `${targetName}: tensor '${name}' has invalid shape ${JSON.stringify(tensor.shape)} (need non-negative integers)`,
      );
    }
    const n = elementCount(tensor.shape);
    if (n !== tensor.data.length) {
      throw new Error(
        `${targetName}: tensor '${name}' shape [${tensor.shape.join(', ')}] has ${n} elements but data has ${tensor.data.length}`,
      );
    }
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    header[name] = {
      dtype: 'F32',
      shape: [...tensor.shape],
      data_offsets: [offset, offset + bytes.byteLength],
    };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }

  const json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned, as HF does.
  const padded = Math.ceil(json.length / 8) * 8;
  const headerBytes = new Uint8Array(8 + padded);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(padded), true);
  headerBytes.set(json, 8);
  headerBytes.fill(0x20, 8 + json.length);
  return [headerBytes, ...chunks];
}

/** Atomically writes F32 tensors (and optional string metadata) to `path`. */
export async function writeSafetensors(
  path: string,
  tensors: TensorInput,
  metadata?: Record<string, string>,
): Promise<void> {
  await atomicWriteFile(path, serializeSafetensors(tensors, metadata, path));
}

export function writeSafetensorsSync(
  path: string,
  tensors: TensorInput,
  metadata?: Record<string, string>,
): void {
  atomicWriteFileSync(path, serializeSafetensors(tensors, metadata, path));
}

// ---------------------------------------------------------------------------------------------
// Reading

let halfTable: Float32Array | undefined;

/** All 65536 half-precision values, built once: a lookup is much faster than decoding bits per element. */
export function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  halfTable = table;
  return table;
}

/** Widens little-endian F32 / F16 / BF16 bytes to a fresh Float32Array of `count` elements. */
export function decodeFloats(bytes: Uint8Array, dtype: ReadableDtype, count: number): Float32Array {
  const out = new Float32Array(count);
  if (dtype === 'F32') {
    // Copy through a byte view: the source offset need not be 4-aligned.
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F16') {
    const table = halfToFloatTable();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(2 * i, true)];
    return out;
  }
  // BF16 is the top half of an F32, so shifting the bits up is an exact conversion.
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  return out;
}

/** One tensor of a validated header; begin and end are relative to the data section. */
export interface HeaderEntry {
  name: string;
  dtype: ReadableDtype;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(src: string, name: string, raw: unknown, dataLength: number): HeaderEntry {
  const where = `${src}: tensor '${name}'`;
  if (!isPlainObject(raw)) throw new Error(`${where}: header entry must be an object`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') throw new Error(`${where}: missing or non-string dtype`);
  const size = DTYPE_SIZES[dtype];
  if (size === undefined) {
    throw new Error(`${where}: unknown dtype '${dtype}' (supported for reading: ${READABLE.join(', ')})`);
  }
  if (!(READABLE as readonly string[]).includes(dtype)) {
    throw new Error(
      `${where}: dtype ${dtype} is not supported for reading (supported: ${READABLE.join(', ')}); quantized checkpoints must be dequantized first`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isValidDim)) {
    throw new Error(
      `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isValidDim)) {
    throw new Error(
      `${where}: data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new Error(`${where}: data_offsets [${begin}, ${end}] end before begin`);
  if (end > dataLength) {
    throw new Error(
      `${where}: data_offsets [${begin}, ${end}] exceed the ${dataLength}-byte data section (file truncated?)`,
    );
  }
  const expected = elementCount(shape) * size;
  if (end - begin !== expected) {
    throw new Error(
      `${where}: data_offsets span ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`,
    );
  }
  return { name, dtype: dtype as ReadableDtype, shape: [...shape], begin, end };
}

/**
 * Checks the u64 header length read from the first 8 bytes of a `fileSize`-byte file; returns it as a number.
 */
export function checkHeaderLength(src: string, headerLen: bigint, fileSize: number): number {
  const available = fileSize - 8;
  if (headerLen > BigInt(available)) {
    throw new Error(
      `${src}: header length ${headerLen} exceeds the ${available} bytes after the length prefix (truncated or not a safetensors file)`,
    );
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${src}: header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return Number(headerLen);
}

/** Decodes the header bytes: strict UTF-8, JSON, an object. */
export function parseHeaderJson(src: string, headerBytes: Uint8Array): Record<string, unknown> {
  let headerText: string;
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new Error(`${src}: header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    throw new Error(`${src}: header is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!isPlainObject(header)) throw new Error(`${src}: header must be a JSON object`);
  return header;
}

export interface ReadSafetensorsOptions {
  /**
   * The tensor names the caller needs (e.g. a model's parameters). When data bytes belong to no tensor, the
   * error names those of them the header lacks: a deleted header entry leaves exactly such a hole.
   */
  expectedNames?: Iterable<string>;
}

/** Why bytes [from, to) of the data section belong to no tensor, naming the expected tensors the header lacks. */
function unclaimedBytes(
  header: Record<string, unknown>,
  from: number,
  to: number,
  opts: ReadSafetensorsOptions,
): string {
  // The first few only: the expected names may come lazily from a config that lies about its size.
  const missing: string[] = [];
  for (const n of opts.expectedNames ?? []) {
    if (!Object.hasOwn(header, n)) missing.push(n);
    if (missing.length === 4) break;
  }
  const where = `bytes ${from}..${to} of the data section belong to no tensor`;
  if (missing.length === 0)
    return `${where}: a tensor's entry is missing from the header, or the offsets lie`;
  const more =
    missing.length > 1 ? ` (also ${missing.slice(1).join(', ')}${missing.length === 4 ? ', ...' : ''})` : '';
  return `tensor "${missing[0]}" is missing from the header${more}; ${where}`;
}

/**
 * Validates every tensor entry of a parsed header against a `dataLength`-byte data section and checks that the
 * tensors tile it exactly (a hole or overlap means the header lies about the data). Returns the entries in
 * header order.
 */
export function parseHeaderEntries(
  src: string,
  header: Record<string, unknown>,
  dataLength: number,
  opts: ReadSafetensorsOptions = {},
): HeaderEntry[] {
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    entries.push(parseEntry(src, name, raw, dataLength));
  }
  let cursor = 0;
  let previous: HeaderEntry | undefined;
  for (const e of [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    if (e.begin < cursor) {
      throw new Error(
        `${src}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap tensor '${previous?.name}' ending at ${cursor}`,
      );
    }
    if (e.begin > cursor) {
      throw new Error(
        `${src}: tensor '${e.name}' starts at ${e.begin}, leaving a gap after byte ${cursor}: ${unclaimedBytes(header, cursor, e.begin, opts)}`,
      );
    }
    cursor = e.end;
    previous = e;
  }
  if (cursor !== dataLength) {
    throw new Error(
      `${src}: data section is ${dataLength} bytes but the tensors cover ${cursor} (trailing bytes or a lying header): ${unclaimedBytes(header, cursor, dataLength, opts)}`,
    );
  }
  return entries;
}

/**
 * Parses a whole safetensors file held in memory. `sourceName` (usually the path) prefixes every error.
 * Returned arrays are fresh copies; they do not alias `bytes`.
 */
export function parseSafetensors(
  bytes: Uint8Array,
  sourceName: string,
  opts: ReadSafetensorsOptions = {},
): SafetensorsFile {
  assertLittleEndianHost();
  const src = sourceName;
  if (bytes.byteLength < 8) {
    throw new Error(
      `${src}: truncated safetensors file: ${bytes.byteLength} bytes, need at least 8 for the header length`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = checkHeaderLength(src, view.getBigUint64(0, true), bytes.byteLength);
  const header = parseHeaderJson(src, bytes.subarray(8, 8 + hlen));

  const metadata: Record<string, string> = {};
  const rawMeta = header[METADATA_KEY];
  if (rawMeta !== undefined) {
    if (!isPlainObject(rawMeta)) throw new Error(`${src}: ${METADATA_KEY} must be an object of strings`);
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') throw new Error(`${src}: ${METADATA_KEY} value for '${k}' must be a string`);
      metadata[k] = v;
    }
  }

  const data = bytes.subarray(8 + hlen);
  const entries = parseHeaderEntries(src, header, data.byteLength, opts);
  const tensors = new Map<string, TensorData>();
  for (const e of entries) {
    const count = elementCount(e.shape);
    tensors.set(e.name, {
      data: decodeFloats(data.subarray(e.begin, e.end), e.dtype, count),
      shape: e.shape,
    });
  }
  return { tensors, metadata };
}

export async function readSafetensors(
  path: string,
  opts: ReadSafetensorsOptions = {},
): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(path);
  } catch (err) {
    throw new Error(
      `${path}: cannot read safetensors file: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
  return parseSafetensors(bytes, path, opts);
}

export function readSafetensorsSync(path: string, opts: ReadSafetensorsOptions = {}): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path);
  } catch (err) {
    throw new Error(
      `${path}: cannot read safetensors file: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
  return parseSafetensors(bytes, path, opts);
}
