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
import { weightMemoryOf } from './weight-memory.ts';
import { GraphCache, ortAvailable, type GraphSpec } from './ort-session.ts';

export { ortAvailable };

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
      if (memory?.fits(n, k)) {
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
