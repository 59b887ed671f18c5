/**
 * A streaming safetensors reader for model weights: it reads the header, validates it as strictly as
 * src/io/safetensors.ts does (known dtype, shape and offsets consistent, tensors tiling the data section
 * exactly), then reads one tensor at a time from the file descriptor. Files of several GB (beyond Node's 2 GiB
 * readFileSync limit) therefore load, and peak memory is the model plus at most one tensor, not the file.
 */
import * as fs from 'node:fs';
import {
  assertLittleEndianHost,
  checkHeaderLength,
  decodeFloats,
  parseHeaderEntries,
  parseHeaderJson,
  type HeaderEntry,
  type ReadSafetensorsOptions,
} from './safetensors.ts';

/** Bytes per read call; fs.readSync takes at most 2 GiB at once. */
const READ_CHUNK = 1 << 30;

export type StreamedTensorInfo = HeaderEntry;

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

/** Reads and validates the header; returns the tensors in data order and where the data section starts. */
export function readSafetensorsHeader(
  fd: number,
  size: number,
  file: string,
  opts: ReadSafetensorsOptions = {},
): { tensors: StreamedTensorInfo[]; dataStart: number } {
  assertLittleEndianHost();
  if (size < 8)
    throw new Error(
      `${file}: truncated safetensors file: ${size} bytes, need at least 8 for the header length`,
    );
  const lenBuf = new Uint8Array(8);
  readExactly(fd, lenBuf, 0, file);
  const n = checkHeaderLength(file, new DataView(lenBuf.buffer).getBigUint64(0, true), size);
  const headerBuf = new Uint8Array(n);
  readExactly(fd, headerBuf, 8, file);
  const dataStart = 8 + n;
  const tensors = parseHeaderEntries(file, parseHeaderJson(file, headerBuf), size - dataStart, opts);
  tensors.sort((a, b) => a.begin - b.begin);
  return { tensors, dataStart };
}

/** Runs `use` on the open file (descriptor and size), closing it after; an unreadable file is named. */
function withSafetensorsFile<T>(file: string, use: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot read safetensors file: ${(e as Error).message}`);
  }
  try {
    return use(fd, fs.fstatSync(fd).size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Opens a safetensors file and reads and validates its header only (see readSafetensorsHeader). */
export function readSafetensorsFileHeader(
  file: string,
  opts: ReadSafetensorsOptions = {},
): StreamedTensorInfo[] {
  return withSafetensorsFile(file, (fd, size) => readSafetensorsHeader(fd, size, file, opts).tensors);
}

/**
 * Reads tensor `t`, into `target` when given (its element count) or a fresh array: F32 bytes are read straight into
 * the destination, F16 / BF16 are decoded (into a fresh array without a further copy).
 */
function readTensor(
  fd: number,
  t: StreamedTensorInfo,
  dataStart: number,
  file: string,
  target?: Float32Array,
): Float32Array {
  if (t.dtype === 'F32') {
    const out = target ?? new Float32Array(elementCount(t));
    readExactly(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), dataStart + t.begin, file);
    return out;
  }
  const raw = new Uint8Array(t.end - t.begin);
  readExactly(fd, raw, dataStart + t.begin, file);
  const decoded = decodeFloats(raw, t.dtype, elementCount(t));
  if (!target) return decoded;
  target.set(decoded);
  return target;
}

const elementCount = (t: StreamedTensorInfo): number => t.shape.reduce((a, b) => a * b, 1);

/**
 * Calls `onTensor` for each tensor of a safetensors file in data order, decoding one at a time. Returns the
 * dtypes met. The header is fully validated before any tensor is delivered.
 */
export function streamSafetensors(
  file: string,
  onTensor: (name: string, data: Float32Array, shape: number[]) => void,
): Set<string> {
  return withSafetensorsFile(file, (fd, size) => {
    const { tensors, dataStart } = readSafetensorsHeader(fd, size, file);
    const dtypes = new Set<string>();
    for (const t of tensors) {
      dtypes.add(t.dtype);
      onTensor(t.name, readTensor(fd, t, dataStart, file), t.shape);
    }
    return dtypes;
  });
}

/**
 * Reads a safetensors file into buffers the caller owns. The header is validated first; `place` then sees every
 * tensor (to check names and shapes, and allocate) and returns where each one goes, or undefined to skip it. F32
 * bytes are read straight into their target, so loading a model costs no second copy of it.
 */
export function readSafetensorsInto(
  file: string,
  place: (tensors: readonly StreamedTensorInfo[]) => (t: StreamedTensorInfo) => Float32Array | undefined,
  opts: ReadSafetensorsOptions = {},
): void {
  withSafetensorsFile(file, (fd, size) => {
    const { tensors, dataStart } = readSafetensorsHeader(fd, size, file, opts);
    const targetOf = place(tensors);
    for (const t of tensors) {
      const target = targetOf(t);
      if (!target) continue;
      const count = elementCount(t);
      if (target.length !== count)
        throw new Error(
          `${file}: tensor '${t.name}' has ${count} elements, its destination ${target.length}`,
        );
      readTensor(fd, t, dataStart, file, target);
    }
  });
}
