/**
 * Matmul on ONNX Runtime's CPU kernels (MLAS), which reach 100-200 GFLOPS on two cores here against 15-20 for
 * WebAssembly SIMD. The native binding's synchronous `run` is used directly: the engine is a synchronous
 * compute loop, and the public async API would add a macrotask hop per call. Each (transA, transB, batched)
 * layout is one tiny graph with symbolic dimensions, built once per process.
 */
import { createRequire } from 'node:module';
import { encodeOnnxModel, type OnnxNode } from './onnx-graph.ts';
import type { MatmulBackend, MatmulSpec } from './matmul.ts';

interface OrtTensor {
  readonly data: Float32Array;
}
interface OrtTensorConstructor {
  new (type: 'float32', data: Float32Array, dims: readonly number[]): OrtTensor;
}
interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, null>, options: object): Record<string, OrtTensor>;
}
interface NativeBinding {
  InferenceSession: new () => NativeSession;
}

interface OrtModules {
  binding: NativeBinding;
  Tensor: OrtTensorConstructor;
}

let modules: OrtModules | null | undefined;

function loadOrt(): OrtModules | null {
  if (modules !== undefined) return modules;
  try {
    const require = createRequire(import.meta.url);
    const common = require('onnxruntime-common') as { Tensor: OrtTensorConstructor };
    const native = require('onnxruntime-node/dist/binding.js') as { binding: NativeBinding; initOrt: () => void };
    native.initOrt();
    modules = { binding: native.binding, Tensor: common.Tensor };
  } catch {
    modules = null;
  }
  return modules;
}

/** True when the onnxruntime-node native addon loads on this machine. */
export function ortAvailable(): boolean {
  return loadOrt() !== null;
}

function layoutGraph(transA: boolean, transB: boolean, batched: boolean): Uint8Array {
  const nodes: OnnxNode[] = [];
  if (!batched) {
    nodes.push({
      op: 'Gemm',
      inputs: ['A', 'B'],
      outputs: ['Y'],
      attributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 },
    });
    return encodeOnnxModel({
      name: 'gemm',
      nodes,
      inputs: [
        { name: 'A', shape: transA ? ['k', 'm'] : ['m', 'k'] },
        { name: 'B', shape: transB ? ['n', 'k'] : ['k', 'n'] },
      ],
      outputs: [{ name: 'Y', shape: ['m', 'n'] }],
    });
  }
  let aName = 'A';
  let bName = 'B';
  if (transA) {
    nodes.push({ op: 'Transpose', inputs: ['A'], outputs: ['At'], attributes: { perm: [0, 2, 1] } });
    aName = 'At';
  }
  if (transB) {
    nodes.push({ op: 'Transpose', inputs: ['B'], outputs: ['Bt'], attributes: { perm: [0, 2, 1] } });
    bName = 'Bt';
  }
  nodes.push({ op: 'MatMul', inputs: [aName, bName], outputs: ['Y'] });
  return encodeOnnxModel({
    name: 'batched_matmul',
    nodes,
    inputs: [
      { name: 'A', shape: transA ? ['b', 'k', 'm'] : ['b', 'm', 'k'] },
      { name: 'B', shape: transB ? ['b', 'n', 'k'] : ['b', 'k', 'n'] },
    ],
    outputs: [{ name: 'Y', shape: ['b', 'm', 'n'] }],
  });
}

export class OrtMatmulBackend implements MatmulBackend {
  readonly name = 'onnxruntime';
  private readonly sessions = new Map<string, NativeSession>();
  private readonly ort: OrtModules;

  constructor(readonly threads = 2) {
    const ort = loadOrt();
    if (!ort) throw new Error('onnxruntime-node native addon could not be loaded; use the js matmul backend');
    this.ort = ort;
  }

  private session(transA: boolean, transB: boolean, batched: boolean): NativeSession {
    const key = `${transA ? 1 : 0}${transB ? 1 : 0}${batched ? 1 : 0}`;
    let s = this.sessions.get(key);
    if (!s) {
      const bytes = layoutGraph(transA, transB, batched);
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      s = new this.ort.binding.InferenceSession();
      s.loadModel(buffer, 0, buffer.byteLength, {
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        // Spinning pool threads would steal the second core from the JS kernels that run between matmuls.
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
      this.sessions.set(key, s);
    }
    return s;
  }

  matmul(a: Float32Array, b: Float32Array, s: MatmulSpec): Float32Array {
    const { batch, m, n, k, transA, transB } = s;
    if (m === 0 || n === 0 || batch === 0) return new Float32Array(batch * m * n);
    if (k === 0) return new Float32Array(batch * m * n);
    const batched = batch > 1;
    const session = this.session(transA, transB, batched);
    const aDims = transA ? [k, m] : [m, k];
    const bDims = transB ? [n, k] : [k, n];
    const T = this.ort.Tensor;
    const feeds = {
      A: new T('float32', a, batched ? [batch, ...aDims] : aDims),
      B: new T('float32', b, batched ? [batch, ...bDims] : bDims),
    };
    const out = session.run(feeds, { Y: null }, {});
    return out.Y.data;
  }
}
