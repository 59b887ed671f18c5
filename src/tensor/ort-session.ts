/**
 * ONNX Runtime sessions over the native binding of onnxruntime-node. The binding's synchronous `run` is used
 * directly: the engine is a synchronous compute loop, and the public async API would add a macrotask hop per
 * call. Each graph is tiny (one op, or one fused op such as attention forward) with symbolic dimensions, so
 * one session serves every shape; sessions are built once per process and cached by their key.
 */
import { createRequire } from 'node:module';
import { encodeOnnxModel, type OnnxInitializer, type OnnxNode, type OnnxValue } from './onnx-graph.ts';

interface OrtTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}
interface OrtTensorConstructor {
  new (type: 'float32', data: Float32Array, dims: readonly number[]): OrtTensor;
  new (type: 'int32', data: Int32Array, dims: readonly number[]): OrtTensor;
  new (type: 'int64', data: BigInt64Array, dims: readonly number[]): OrtTensor;
}
interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(
    feeds: Record<string, PreparedFeed>,
    fetches: Record<string, OrtTensor | null>,
    options?: object,
  ): Record<string, OrtTensor>;
  /** Stops ORT's profiler and returns the path of the JSON trace it wrote. */
  endProfiling(): string;
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
    const native = require('onnxruntime-node/dist/binding.js') as {
      binding: NativeBinding;
      initOrt: () => void;
    };
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

export interface GraphSpec {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  initializers?: OnnxInitializer[];
  /** Default-domain opset (17 unless given). */
  opset?: number;
  /**
   * ORT's graph optimisation level ('all' unless given). A graph of several ops that must compute exactly what
   * the same ops do one graph each takes 'disabled', so that no fusion changes how a sum is rounded.
   */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

/** A feed: data with its dims. */
export type Feed =
  [Float32Array, readonly number[]] | [Int32Array, readonly number[]] | [BigInt64Array, readonly number[]];

/**
 * A feed in the form the native binding reads ({@link OrtGraph.prepare}), for data fed to many runs (weights,
 * caches): it views the same memory, so later writes to the data are seen.
 */
export interface PreparedFeed {
  readonly data: Float32Array | Int32Array | BigInt64Array;
  readonly dims: readonly number[];
}

/**
 * A tensor as the native binding reads it (type, dims, data, location): a plain object rather than
 * onnxruntime-common's Tensor, whose getters and checks cost the binding about a microsecond per feed and run.
 */
function nativeFeed([data, dims]: Feed): PreparedFeed {
  const type = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'int64';
  return { type, dims, data, location: 'cpu' } as PreparedFeed;
}

/** One loaded graph. `run` takes feeds by input name and returns the requested outputs' data. */
export class OrtGraph {
  private readonly session: NativeSession;
  /** The graph's name, for diagnostics. */
  readonly name: string;
  private readonly fetchAll: Record<string, null>;

  /**
   * With `profilePrefix`, ORT's profiler records every node's time in every run (a Chrome-trace JSON file whose
   * path {@link endProfiling} returns): for `psm profile step`, never for work whose time matters.
   */
  constructor(spec: GraphSpec, threads: number, profilePrefix?: string) {
    this.name = spec.name;
    const ort = loadOrt();
    if (!ort) throw new Error('onnxruntime-node native addon could not be loaded; use the js backend');
    const bytes = encodeOnnxModel(spec);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    this.session = new ort.binding.InferenceSession();
    this.session.loadModel(buffer, 0, buffer.byteLength, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: spec.optimization ?? 'all',
      // Errors only: ORT's shape-inference notes on these symbolic graphs are noise.
      logSeverityLevel: 3,
      // Spinning pool threads steal the cores from the JS work between runs (and from each other: every
      // session has its own pool), so pool threads sleep when idle.
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
      ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
    });
    this.fetchAll = Object.fromEntries(spec.outputs.map((o) => [o.name, null]));
  }

  /** Ends a profiled session's recording; returns the trace file's path. */
  endProfiling(): string {
    return this.session.endProfiling();
  }

  /** The feed as the native binding reads it, to pass to {@link run} as often as needed. */
  prepare(feed: Feed): PreparedFeed {
    return nativeFeed(feed);
  }

  run(feeds: Record<string, Feed | PreparedFeed>, fetch?: readonly string[]): Record<string, Float32Array> {
    const tensors: Record<string, PreparedFeed> = {};
    for (const name in feeds) {
      const feed = feeds[name];
      tensors[name] = Array.isArray(feed) ? nativeFeed(feed as Feed) : (feed as PreparedFeed);
    }
    let fetches = this.fetchAll;
    if (fetch) {
      fetches = {};
      for (const f of fetch) fetches[f] = null;
    }
    const out = this.session.run(tensors, fetches);
    const result: Record<string, Float32Array> = {};
    for (const name in out) result[name] = out[name].data;
    return result;
  }
}

/** Graphs cached by key for one thread count. */
export class GraphCache {
  private readonly graphs = new Map<string, OrtGraph>();

  constructor(readonly threads: number) {}

  get(key: string, build: () => GraphSpec): OrtGraph {
    let g = this.graphs.get(key);
    if (!g) {
      g = new OrtGraph(build(), this.threads);
      this.graphs.set(key, g);
    }
    return g;
  }
}
