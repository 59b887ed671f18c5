/**
 * Matmul on ONNX Runtime's CPU kernels (MLAS), which reach 60-110 GFLOPS per core here against 15-20 for
 * WebAssembly SIMD. Each (transA, transB, batched) layout is one tiny graph with symbolic dimensions, built
 * once per process; the backend also carries the fused ORT kernels (attention, SwiGLU, RMSNorm,
 * log-softmax) that the autograd ops use around the matmuls.
 */
import type { OnnxNode } from './onnx-graph.ts';
import type { MatmulBackend, MatmulSpec } from './matmul.ts';
import { gemmGraph } from './kernel-graphs.ts';
import { OrtFusedKernels } from './ort-kernels.ts';
import { Rng } from './random.ts';
import { sameBits } from './same-bits.ts';
import { WeightMemory, weightMemoryOf } from './weight-memory.ts';
import { GraphCache, OrtGraph, ortAvailable, type GraphSpec } from './ort-session.ts';

export { ortAvailable };

/** Shapes [rows, cols] that cover every row remainder modulo 4 and every column remainder modulo 8 and 32. */
const CHECK_SHAPES: [number, number][] = [
  [1, 1],
  [2, 7],
  [3, 9],
  [5, 31],
  [6, 33],
  [7, 40],
  [13, 100],
  [64, 135],
];

let matvecChecked: boolean | undefined;

/**
 * True when the WebAssembly one-row kernel (src/tensor/matvec.wat) gives ONNX Runtime's one-row Gemm's bits on
 * this machine, checked once per process on random weights of {@link CHECK_SHAPES}. The kernel follows MLAS's x86
 * AVX kernel; MLAS chooses its kernels by CPU (NEON on ARM, SSE without AVX), and where it sums in another order
 * the one-row products stay on ONNX Runtime.
 */
export function matvecMatchesOrt(): boolean {
  if (matvecChecked !== undefined) return matvecChecked;
  matvecChecked = false;
  const memory = WeightMemory.create(CHECK_SHAPES);
  if (!memory || !ortAvailable()) return false;
  const gemm = new OrtGraph(gemmGraph(false, true), 1);
  const rng = new Rng(1);
  matvecChecked = CHECK_SHAPES.every(([rows, cols], i) => {
    const w = memory.views[i];
    for (let j = 0; j < w.length; j++) w[j] = rng.gaussian();
    const x = Float32Array.from({ length: cols }, () => rng.gaussian());
    const want = gemm.run({ A: [x, [1, cols]], B: [w, [rows, cols]] }).Y;
    const got = new Float32Array(rows);
    memory.matvec(w, rows, cols, x, got);
    return sameBits(got, want);
  });
  return matvecChecked;
}

/** Weights (floats) below which the one-row kernel is used without timing it: they stay in the CPU's caches. */
const UNTIMED_FLOATS = 1 << 22;
/** The most weights (floats, 128 MB) timed: past any CPU's caches, and a short pause on a large model's first use. */
const TIMED_FLOATS = 1 << 25;

const streamsFaster = new WeakMap<WeightMemory, Map<number, boolean>>();

/**
 * True when one-row products against `memory`'s weights should run on the WebAssembly kernel rather than ONNX
 * Runtime's: always where its bits match and the weights are small enough to stay in the CPU's caches (there the
 * kernel is faster, and it lets a decoding step skip graph runs); for larger weights, where both kernels wait on
 * memory and which streams faster depends on the CPU (one sequential stream against MLAS's four rows at once), by
 * timing both in wall time over the memory's own matrices (the first 128 MB of them), ONNX Runtime on `threads`
 * threads, alternated three times, once per memory and thread count.
 * Either gives the same bits.
 */
export function matvecPaysOff(memory: WeightMemory, threads: number): boolean {
  let byThreads = streamsFaster.get(memory);
  if (!byThreads) streamsFaster.set(memory, (byThreads = new Map()));
  let faster = byThreads.get(threads);
  if (faster !== undefined) return faster;
  faster = matvecMatchesOrt();
  const matrices: { shape: readonly number[]; w: Float32Array }[] = [];
  let floats = 0;
  memory.shapes.forEach((shape, i) => {
    if (shape.length !== 2 || floats >= TIMED_FLOATS) return;
    matrices.push({ shape, w: memory.views[i] });
    floats += memory.views[i].length;
  });
  if (faster && floats >= UNTIMED_FLOATS) {
    // ONNX Runtime on the backend's threads (its graphs split the rows), against the one-threaded kernel.
    const gemm = new OrtGraph(gemmGraph(false, true), threads);
    const inputs = matrices.map(({ shape }) => new Float32Array(shape[1]).fill(1));
    const timed = (pass: () => void): number => {
      const start = performance.now();
      pass();
      return performance.now() - start;
    };
    const wasm: number[] = [];
    const ort: number[] = [];
    for (let round = 0; round < 3; round++) {
      wasm.push(
        timed(() =>
          matrices.forEach(({ shape: [rows, cols], w }, i) =>
            memory.matvec(w, rows, cols, inputs[i], new Float32Array(rows)),
          ),
        ),
      );
      ort.push(
        timed(() =>
          matrices.forEach(({ shape: [rows, cols], w }, i) =>
            gemm.run({ A: [inputs[i], [1, cols]], B: [w, [rows, cols]] }),
          ),
        ),
      );
    }
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[1];
    faster = median(wasm) <= median(ort);
  }
  byThreads.set(threads, faster);
  return faster;
}

function layoutGraph(transA: boolean, transB: boolean, batched: boolean): GraphSpec {
  if (!batched) return gemmGraph(transA, transB);
  const nodes: OnnxNode[] = [];
  // FusedMatMul reads transposed operands in place (no Transpose copies).
  nodes.push({
    op: 'FusedMatMul',
    domain: 'com.microsoft',
    inputs: ['A', 'B'],
    outputs: ['Y'],
    attributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0, alpha: { float: 1 } },
  });
  return {
    name: 'batched_matmul',
    nodes,
    inputs: [
      { name: 'A', shape: transA ? ['b', 'k', 'm'] : ['b', 'm', 'k'] },
      { name: 'B', shape: transB ? ['b', 'n', 'k'] : ['b', 'k', 'n'] },
    ],
    outputs: [{ name: 'Y', shape: ['b', 'm', 'n'] }],
  };
}

export class OrtMatmulBackend implements MatmulBackend {
  readonly name = 'onnxruntime';
  readonly fused: OrtFusedKernels;
  private readonly graphs: GraphCache;

  constructor(readonly threads = 2) {
    if (!ortAvailable())
      throw new Error('onnxruntime-node native addon could not be loaded; use the js matmul backend');
    this.graphs = new GraphCache(threads);
    this.fused = new OrtFusedKernels(threads);
  }

  matmul(a: Float32Array, b: Float32Array, s: MatmulSpec): Float32Array {
    const { batch, m, n, k, transA, transB } = s;
    if (m === 0 || n === 0 || batch === 0 || k === 0) return new Float32Array(batch * m * n);
    // One row against weights in a WeightMemory: the WebAssembly kernel, which sums as MLAS's one-row kernel does.
    if (m === 1 && batch === 1 && transB && !transA) {
      const memory = weightMemoryOf(b);
      if (memory?.fits(n, k) && matvecPaysOff(memory, this.threads)) {
        const y = new Float32Array(n);
        memory.matvec(b, n, k, a, y);
        return y;
      }
    }
    const batched = batch > 1;
    const graph = this.graphs.get(`mm${transA ? 1 : 0}${transB ? 1 : 0}${batched ? 1 : 0}`, () =>
      layoutGraph(transA, transB, batched),
    );
    const aDims = transA ? [k, m] : [m, k];
    const bDims = transB ? [n, k] : [k, n];
    return graph.run({
      A: [a, batched ? [batch, ...aDims] : aDims],
      B: [b, batched ? [batch, ...bDims] : bDims],
    }).Y;
  }
}
