/**
 * A model's parameters in one WebAssembly memory, so that the kernels of src/tensor/matvec.wat read the weights
 * where they are. Decoding one sequence streams every weight once per token; the one-row matmul does it with the
 * same sums as ONNX Runtime's one-row kernel, to the bit (the order is in matvec.wat), faster where the weights stay
 * in the CPU's caches and, past them, faster or slower by CPU (matvecPaysOff in ort-matmul.ts times the two).
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
type VecmatFn = (x: number, b: number, y: number, k: number, n: number) => void;
type SwigluFn = (g: number, u: number, y: number, n: number) => void;

/**
 * The largest operand not held in the memory that {@link WeightMemory.matvecRows} and {@link WeightMemory.vecmat}
 * take (a head's cached keys or values: [positions, head dimension]).
 */
export interface OperandSize {
  rows: number;
  cols: number;
}

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
  private readonly vecmatFn: VecmatFn;
  private readonly swigluFn: SwigluFn;
  private readonly floats: Float32Array;

  private constructor(
    private readonly memory: WasmMemory,
    instance: WasmInstance,
    /** The parameters' views, in the order of the shapes given. */
    readonly views: Float32Array[],
    /** The shapes the memory was made for, in the same order. */
    readonly shapes: readonly (readonly number[])[],
    /**
     * Byte offsets of the scratch input row (zero-padded to a multiple of 8 floats), a second input row, the output
     * row and the operand.
     */
    private readonly scratch: { xAt: number; uAt: number; yAt: number; operandAt: number },
    /** The longest input row and output row the scratch space holds. */
    private readonly maxCols: number,
    private readonly maxRows: number,
    private readonly operand: OperandSize,
  ) {
    this.matvecFn = instance.exports.matvec as MatvecFn;
    this.vecmatFn = instance.exports.vecmat as VecmatFn;
    this.swigluFn = instance.exports.swiglu as SwigluFn;
    this.floats = new Float32Array(memory.buffer);
  }

  /**
   * A memory holding zeroed tensors of these shapes (each [rows, cols] or [size]), or null when the runtime cannot
   * make one (no WebAssembly SIMD, more than 4 GiB, or the address space refused): the caller then keeps its
   * parameters in plain arrays. Its scratch space also takes an operand of up to `operand` (none by default).
   */
  static create(
    shapes: readonly (readonly number[])[],
    operand: OperandSize = { rows: 0, cols: 0 },
  ): WeightMemory | null {
    const module = matvecModule();
    if (!module) return null;
    const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1));
    let at = 0;
    const offsets = sizes.map((size) => {
      const start = at;
      at = roundUp(at + 4 * size + TAIL_BYTES, ALIGN_BYTES);
      return start;
    });
    const maxCols = Math.max(1, operand.rows, operand.cols, ...shapes.map((s) => s[s.length - 1]));
    const maxRows = Math.max(
      1,
      operand.rows,
      roundUp(operand.cols, 4),
      ...shapes.map((s) => (s.length > 1 ? s[0] : 1)),
    );
    const xAt = at;
    const uAt = xAt + inputRowBytes(maxCols);
    const yAt = uAt + inputRowBytes(maxCols);
    const operandAt = roundUp(yAt + 4 * maxRows, ALIGN_BYTES);
    const end = operandAt + 4 * operand.rows * operand.cols + TAIL_BYTES;
    const pages = Math.ceil(end / PAGE_BYTES);
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
    const made = new WeightMemory(
      memory,
      instance,
      views,
      shapes,
      { xAt, uAt, yAt, operandAt },
      maxCols,
      maxRows,
      operand,
    );
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
    this.run(this.matvecFn, x, weight.byteOffset, y, cols, rows);
  }

  /** True when the scratch operand takes `rows` x `cols` floats. */
  fitsOperand(rows: number, cols: number): boolean {
    return rows <= this.operand.rows && cols <= this.operand.cols;
  }

  /**
   * {@link matvec} over rows [rows, cols] held anywhere (a head's cached keys), copied into the scratch operand
   * first: y = x R^T as ONNX Runtime's one-row Gemm or MatMul with a transposed B sums it.
   */
  matvecRows(r: Float32Array, rows: number, cols: number, x: Float32Array, y: Float32Array): void {
    if (r.length !== rows * cols || x.length !== cols || y.length !== rows)
      throw new Error(
        `matvecRows: rows of ${r.length} floats, input of ${x.length} and output of ${y.length} do not make [${rows}, ${cols}]`,
      );
    this.copyOperand(r, rows, cols, 'matvecRows');
    this.run(this.matvecFn, x, this.scratch.operandAt, y, cols, rows);
  }

  /**
   * y = x B for one row x [k] and B [k, n] held anywhere (a head's cached values), copied into the scratch operand
   * first, as ONNX Runtime's one-row MatMul with an untransposed B sums it (see matvec.wat).
   */
  vecmat(x: Float32Array, b: Float32Array, k: number, n: number, y: Float32Array): void {
    if (b.length !== k * n || x.length !== k || y.length !== n)
      throw new Error(
        `vecmat: B of ${b.length} floats, input of ${x.length} and output of ${y.length} do not make [${k}] x [${k}, ${n}]`,
      );
    this.copyOperand(b, k, n, 'vecmat');
    this.run(this.vecmatFn, x, this.scratch.operandAt, y, k, n);
  }

  /** True when {@link swiglu} takes rows of `n` floats. */
  fitsRow(n: number): boolean {
    return n <= this.maxCols && n <= this.maxRows;
  }

  /**
   * QuickGelu(gate) * up, elementwise into `out`, as ONNX Runtime's QuickGelu (alpha 1) then Mul compute it on x86
   * (see matvec.wat).
   */
  swiglu(gate: Float32Array, up: Float32Array, out: Float32Array): void {
    const n = gate.length;
    if (up.length !== n || out.length !== n)
      throw new Error(`swiglu: gate of ${n} floats, up of ${up.length} and output of ${out.length} differ`);
    if (!this.fitsRow(n)) throw new Error(`swiglu: ${n} floats exceed the rows this memory was made for`);
    const { xAt, uAt, yAt } = this.scratch;
    this.floats.set(gate, xAt / 4);
    this.floats.set(up, uAt / 4);
    this.swigluFn(xAt, uAt, yAt, n);
    out.set(this.floats.subarray(yAt / 4, yAt / 4 + n));
  }

  private copyOperand(data: Float32Array, rows: number, cols: number, what: string): void {
    if (!this.fitsOperand(rows, cols))
      throw new Error(`${what}: [${rows}, ${cols}] exceeds the operand this memory was made for`);
    this.floats.set(data, this.scratch.operandAt / 4);
  }

  /** Runs a kernel on x (copied in, zero-padded to a multiple of 8) and `at`; copies its `y.length` outputs out. */
  private run(
    kernel: MatvecFn | VecmatFn,
    x: Float32Array,
    at: number,
    y: Float32Array,
    a: number,
    b: number,
  ): void {
    const { xAt, yAt } = this.scratch;
    const xf = xAt / 4;
    this.floats.set(x, xf);
    // The matvec kernel reads x in blocks of 8: the lanes past its length must be zero.
    this.floats.fill(0, xf + x.length, xf + roundUp(x.length, 8));
    kernel(xAt, at, yAt, a, b);
    y.set(this.floats.subarray(yAt / 4, yAt / 4 + y.length));
  }
}
