/**
 * A model's parameters in one WebAssembly memory, so that the one-row matmul of src/tensor/matvec.wat reads the
 * weights where they are. Decoding one sequence streams every weight once per token; that kernel streams them about
 * twice as fast as ONNX Runtime's one-row kernel, with the same sums to the bit (the order is in matvec.wat).
 *
 * The parameters are ordinary Float32Array views of the memory, written in place by loading and training like any
 * other; the memory is made at its full size and never grows, because growing would detach every view.
 */
import { MATVEC_WASM_BASE64 } from './matvec-wasm.ts';

/** WebAssembly pages are 64 KiB; a memory holds at most 65,536 of them (4 GiB). */
const PAGE_BYTES = 65536;
const MAX_PAGES = 65536;
/** Each tensor starts on a cache line and is followed by at least 32 bytes the kernel may read past a row. */
const ALIGN_BYTES = 64;
const TAIL_BYTES = 32;

type MatvecFn = (x: number, w: number, y: number, k: number, rows: number) => void;

/** The part of the WebAssembly API used here (the project's TypeScript libraries leave the global undeclared). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory;
  Instance: new (module: object, imports: object) => WasmInstance;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object | null | undefined;

/** The compiled kernel, or null where this runtime lacks WebAssembly SIMD. */
function matvecModule(): object | null {
  if (compiled === undefined) {
    try {
      compiled = new wasm.Module(Buffer.from(MATVEC_WASM_BASE64, 'base64'));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** Every live memory by its buffer, so a matmul finds the memory its weights are in. */
const byBuffer = new WeakMap<ArrayBuffer, WeightMemory>();

/** The memory `data` is a view of, or null for an ordinary array. */
export function weightMemoryOf(data: Float32Array): WeightMemory | null {
  return byBuffer.get(data.buffer as ArrayBuffer) ?? null;
}

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** Bytes of the scratch input row: up to `cols` floats, zero-padded to a multiple of 8, and the kernel's tail. */
const inputRowBytes = (cols: number): number => roundUp(4 * roundUp(cols, 8) + TAIL_BYTES, ALIGN_BYTES);

export class WeightMemory {
  private readonly matvecFn: MatvecFn;
  private readonly floats: Float32Array;
  /** Byte offsets of the input row (zero-padded to a multiple of 8 floats) and the output row. */
  private readonly xAt: number;
  private readonly yAt: number;

  private constructor(
    private readonly memory: WasmMemory,
    instance: WasmInstance,
    /** The parameters' views, in the order of the shapes given. */
    readonly views: Float32Array[],
    xAt: number,
    /** The longest input row and output row the scratch space holds. */
    private readonly maxCols: number,
    private readonly maxRows: number,
  ) {
    this.matvecFn = instance.exports.matvec as MatvecFn;
    this.floats = new Float32Array(memory.buffer);
    this.xAt = xAt;
    this.yAt = xAt + inputRowBytes(maxCols);
  }

  /**
   * A memory holding zeroed tensors of these shapes (each [rows, cols] or [size]), or null when the runtime cannot
   * make one (no WebAssembly SIMD, more than 4 GiB, or the address space refused): the caller then keeps its
   * parameters in plain arrays.
   */
  static create(shapes: readonly (readonly number[])[]): WeightMemory | null {
    const module = matvecModule();
    if (!module) return null;
    const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1));
    let at = 0;
    const offsets = sizes.map((size) => {
      const start = at;
      at = roundUp(at + 4 * size + TAIL_BYTES, ALIGN_BYTES);
      return start;
    });
    const maxCols = Math.max(1, ...shapes.map((s) => s[s.length - 1]));
    const maxRows = Math.max(1, ...shapes.map((s) => (s.length > 1 ? s[0] : 1)));
    const scratch = inputRowBytes(maxCols) + 4 * maxRows;
    const pages = Math.ceil((at + scratch) / PAGE_BYTES);
    if (pages > MAX_PAGES) return null;
    let memory: WasmMemory;
    let instance: WasmInstance;
    try {
      memory = new wasm.Memory({ initial: pages, maximum: pages });
      instance = new wasm.Instance(module, { env: { memory } });
    } catch {
      return null;
    }
    const views = sizes.map((size, i) => new Float32Array(memory.buffer, offsets[i], size));
    const made = new WeightMemory(memory, instance, views, at, maxCols, maxRows);
    byBuffer.set(memory.buffer, made);
    return made;
  }

  /** True when `data` is a view of this memory (a parameter that has not been replaced by another array). */
  holds(data: Float32Array): boolean {
    return data.buffer === this.memory.buffer;
  }

  /** True when the scratch space takes an input row of `cols` and an output row of `rows`. */
  fits(rows: number, cols: number): boolean {
    return cols <= this.maxCols && rows <= this.maxRows;
  }

  /**
   * y = x W^T for one row x [cols] and weights W [rows, cols] held here, as ONNX Runtime's Gemm (transB, no C)
   * computes it for one row, to the bit.
   */
  matvec(weight: Float32Array, rows: number, cols: number, x: Float32Array, y: Float32Array): void {
    if (!this.holds(weight)) throw new Error('matvec: the weights are not in this memory');
    if (weight.length !== rows * cols || x.length !== cols || y.length !== rows)
      throw new Error(
        `matvec: weights of ${weight.length} floats, input of ${x.length} and output of ${y.length} do not make [${rows}, ${cols}]`,
      );
    if (!this.fits(rows, cols))
      throw new Error(`matvec: [${rows}, ${cols}] exceeds the largest tensor this memory was made for`);
    const xf = this.xAt / 4;
    this.floats.set(x, xf);
    // The kernel reads x in blocks of 8: the lanes past cols must be zero.
    this.floats.fill(0, xf + cols, xf + roundUp(cols, 8));
    this.matvecFn(this.xAt, weight.byteOffset, this.yAt, cols, rows);
    y.set(this.floats.subarray(this.yAt / 4, this.yAt / 4 + rows));
  }
}
