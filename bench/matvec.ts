/**
 * One-row matmul speed: ONNX Runtime's Gemm (transB, one row: MLAS's M = 1 kernel) against the WebAssembly kernel
 * of src/tensor/matvec.wat, over a model's projections as one decoding step streams them (each matrix once, more
 * weights than the CPU's caches hold), with the same bits checked on every product.
 *
 * Run: npx tsx bench/matvec.ts [--size large|ref|qwen] [--passes 10] [--rounds 5]
 * Sizes: large (dim 512, 8 layers, MLP 1536, vocabulary 8192: bench/gguf-generation.ts --size large), ref (the
 * reference model: dim 128, 4 layers, MLP 512, vocabulary 2048), qwen (one Qwen2.5-0.5B layer, dim 896, MLP 4864,
 * 14 / 2 heads, repeated 24 times). Prints GB/s per CPU-second for each kernel and round, then their medians.
 */
import { gemmGraph } from '../src/tensor/kernel-graphs.ts';
import { OrtGraph } from '../src/tensor/ort-session.ts';
import { Rng } from '../src/tensor/random.ts';
import { WeightMemory } from '../src/tensor/weight-memory.ts';
import { arg, intArg, median } from './generation-common.ts';

/** [rows, cols] of every projection one step reads, in order. */
function projections(size: string): [number, number][] {
  const layer = (dim: number, qRows: number, kvRows: number, hidden: number): [number, number][] => [
    [qRows, dim],
    [kvRows, dim],
    [kvRows, dim],
    [dim, qRows],
    [hidden, dim],
    [hidden, dim],
    [dim, hidden],
  ];
  if (size === 'large')
    return [...Array.from({ length: 8 }, () => layer(512, 512, 256, 1536)).flat(), [8192, 512]];
  if (size === 'ref')
    return [...Array.from({ length: 4 }, () => layer(128, 128, 128, 512)).flat(), [2048, 128]];
  if (size === 'qwen') return Array.from({ length: 24 }, () => layer(896, 896, 128, 4864)).flat();
  throw new Error('--size must be large, ref or qwen');
}

function main(): void {
  const shapes = projections(arg('size') ?? 'large');
  const passes = intArg('passes', 10);
  const rounds = intArg('rounds', 5);
  const memory = WeightMemory.create(shapes);
  if (!memory) throw new Error('this runtime cannot make a WeightMemory (WebAssembly SIMD)');
  const rng = new Rng(1);
  for (const w of memory.views) for (let i = 0; i < w.length; i++) w[i] = rng.gaussian() * 0.02;
  const inputs = shapes.map(([, cols]) => Float32Array.from({ length: cols }, () => rng.gaussian()));
  const bytes = 4 * shapes.reduce((sum, [r, c]) => sum + r * c, 0);
  const gemm = new OrtGraph(gemmGraph(false, true), 1);
  const feeds = shapes.map(([rows, cols], i) => gemm.prepare([memory.views[i], [rows, cols]]));

  const ort = (): Float32Array[] =>
    shapes.map(([, cols], i) => gemm.run({ A: [inputs[i], [1, cols]], B: feeds[i] }).Y);
  const wasm = (): Float32Array[] =>
    shapes.map(([rows, cols], i) => {
      const y = new Float32Array(rows);
      memory.matvec(memory.views[i], rows, cols, inputs[i], y);
      return y;
    });

  const a = ort();
  const b = wasm();
  const same = a.every((y, i) => y.every((v, j) => Object.is(v, b[i][j])));
  console.log(
    `${shapes.length} projections, ${(bytes / 1e6).toFixed(1)} MB of F32 weights per pass; ${passes} passes per round; same bits: ${same ? 'yes' : 'NO'}`,
  );
  if (!same) process.exit(1);
  const rates: Record<string, number[]> = { 'onnxruntime Gemm': [], 'wasm matvec': [] };
  for (let r = 0; r < rounds; r++) {
    for (const [name, pass] of [
      ['onnxruntime Gemm', ort],
      ['wasm matvec', wasm],
    ] as const) {
      const start = process.cpuUsage();
      for (let p = 0; p < passes; p++) pass();
      const used = process.cpuUsage(start);
      rates[name].push((passes * bytes) / ((used.user + used.system) / 1e6) / 1e9);
    }
  }
  for (const [name, list] of Object.entries(rates))
    console.log(
      `${name.padEnd(18)} ${list.map((x) => x.toFixed(1)).join(' ')} GB/s per CPU-second (median ${median(list).toFixed(1)})`,
    );
  console.log(
    `matvec_speedup=${(median(rates['wasm matvec']) / median(rates['onnxruntime Gemm'])).toFixed(2)}`,
  );
}

main();
