/**
 * The WebAssembly one-row matmul (src/tensor/matvec.wat) over weights in a WeightMemory equals ONNX Runtime's
 * Gemm with transB for one row to the bit: every row count's remainder (the blocks of four, a pair, a single row),
 * inputs of every length modulo 8 and 32, at 1 and 2 threads (the threaded split of a wide matrix), with values
 * that are not finite in the rows around the one read. The compiled module in the repo is the WAT source's.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { swigluGraphSpec } from '../../src/tensor/ort-decode-matvec.ts';
import { matvecMatchesOrt, matvecPaysOff, OrtMatmulBackend } from '../../src/tensor/ort-matmul.ts';
import { ortAvailable, OrtGraph } from '../../src/tensor/ort-session.ts';
import { gemmGraph } from '../../src/tensor/kernel-graphs.ts';
import { Rng } from '../../src/tensor/random.ts';
import { WeightMemory } from '../../src/tensor/weight-memory.ts';

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((v, i) => v === y[i]);
}

const SHAPES: [number, number][] = [
  [1, 1],
  [2, 7],
  [3, 8],
  [5, 9],
  [6, 31],
  [7, 32],
  [4, 33],
  [13, 100],
  [64, 128],
  [255, 257],
  [1027, 96],
  // Wide enough that ONNX Runtime splits the rows over two threads.
  [4099, 520],
];

describe.skipIf(!ortAvailable())('WeightMemory.matvec', () => {
  for (const threads of [1, 2]) {
    it(`equals ONNX Runtime's one-row Gemm to the bit at ${threads} thread(s)`, () => {
      const gemm = new OrtGraph(gemmGraph(false, true), threads);
      const rng = new Rng(7);
      // Two shapes of each: the first is the one multiplied, the second sits after it in memory.
      const memory = WeightMemory.create(SHAPES.flatMap((s) => [s, s]))!;
      expect(memory).not.toBeNull();
      SHAPES.forEach(([rows, cols], i) => {
        const w = memory.views[2 * i];
        for (let j = 0; j < w.length; j++) w[j] = rng.gaussian() * (j % 97 === 0 ? 1e4 : 1);
        // Whatever the kernel reads past the end of the matrix must not leak into the sums.
        memory.views[2 * i + 1].fill(Number.NaN);
        const x = Float32Array.from({ length: cols }, () => rng.gaussian());
        const expected = gemm.run({ A: [x, [1, cols]], B: [w, [rows, cols]] }).Y;
        const y = new Float32Array(rows);
        memory.matvec(w, rows, cols, x, y);
        expect(sameBits(y, expected), `[${rows}, ${cols}]`).toBe(true);
      });
    });
  }

  it("takes operands held anywhere with ONNX Runtime's one-row bits: rows transposed (matvecRows) or not (vecmat)", () => {
    const memory = WeightMemory.create([], { rows: 300, cols: 130 })!;
    const transposed = new OrtGraph(gemmGraph(false, true), 1);
    const plain = new OrtGraph(gemmGraph(false, false), 1);
    const rng = new Rng(5);
    // Every remainder of the row blocks (4, 2, 1) and the column blocks of 4 and 8.
    for (const k of [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 31, 64, 255, 300])
      for (const n of [1, 3, 8, 16, 31, 32, 33, 64, 130]) {
        const b = Float32Array.from({ length: k * n }, () => rng.gaussian());
        const x = Float32Array.from({ length: k }, () => rng.gaussian());
        const y = new Float32Array(n);
        memory.vecmat(x, b, k, n, y);
        const want = plain.run({ A: [x, [1, k]], B: [b, [k, n]] }).Y;
        expect(sameBits(y, want), `vecmat [${k}] x [${k}, ${n}]`).toBe(true);
        // The same floats as rows [k, n] of a transposed product: y [k] = x' [n] R^T.
        const x2 = Float32Array.from({ length: n }, () => rng.gaussian());
        const y2 = new Float32Array(k);
        memory.matvecRows(b, k, n, x2, y2);
        const want2 = transposed.run({ A: [x2, [1, n]], B: [b, [k, n]] }).Y;
        expect(sameBits(y2, want2), `matvecRows [${k}, ${n}]`).toBe(true);
      }
    expect(() =>
      memory.vecmat(new Float32Array(301), new Float32Array(301), 301, 1, new Float32Array(1)),
    ).toThrow(/exceeds the operand/);
  });

  it("computes SwiGLU with ONNX Runtime's QuickGelu and Mul bits on x86", () => {
    // Odd: pairs of elements, then a last one alone.
    const n = (1 << 16) + 1;
    const memory = WeightMemory.create([
      [n, 1],
      [1, n],
    ])!;
    const rng = new Rng(9);
    // Every magnitude from 1e-6 to 1e3, across the logistic's clamps at +-18.
    const gate = Float32Array.from({ length: n }, (_, i) => rng.gaussian() * 10 ** ((i % 10) - 6));
    const up = Float32Array.from({ length: n }, () => rng.gaussian());
    const shape = {
      dim: 8,
      heads: 1,
      kvHeads: 1,
      headDim: 8,
      hidden: n,
      eps: 1e-6,
      qkvBias: false,
      qkNorm: false,
    };
    const graph = new OrtGraph(swigluGraphSpec(shape), 1);
    const want = graph.run({ G: [gate, [1, n]], U: [up, [1, n]] }).M;
    const got = new Float32Array(n);
    memory.swiglu(gate, up, got);
    if (process.arch === 'x64') expect(sameBits(got, want)).toBe(true);
  });

  it("is used only where it matches this machine's ONNX Runtime (MLAS's x86 kernel order)", () => {
    expect(matvecMatchesOrt()).toBe(process.arch === 'x64');
  });

  it('is chosen over ONNX Runtime by timing where the weights outgrow the caches; the bits are the same', () => {
    const small = WeightMemory.create([[64, 64]])!;
    expect(matvecPaysOff(small, 1)).toBe(matvecMatchesOrt());
    const large = WeightMemory.create([[2048, 1024], [1024, 2048], [8]])!;
    const rng = new Rng(4);
    for (const v of large.views) for (let j = 0; j < v.length; j++) v[j] = rng.gaussian();
    const choice = matvecPaysOff(large, 1);
    expect(typeof choice).toBe('boolean');
    // Timed once per memory.
    expect(matvecPaysOff(large, 1)).toBe(choice);
    const x = Float32Array.from({ length: 1024 }, () => rng.gaussian());
    const backend = new OrtMatmulBackend(1);
    const spec = { batch: 1, m: 1, n: 2048, k: 1024, transA: false, transB: true };
    const want = new OrtGraph(gemmGraph(false, true), 1).run({
      A: [x, [1, 1024]],
      B: [large.views[0], [2048, 1024]],
    }).Y;
    expect(sameBits(backend.matmul(x, large.views[0], spec), want)).toBe(true);
  });

  it('refuses weights outside the memory and shapes that do not fit', () => {
    const memory = WeightMemory.create([[4, 8]])!;
    expect(() => memory.matvec(new Float32Array(32), 4, 8, new Float32Array(8), new Float32Array(4))).toThrow(
      /not in this memory/,
    );
    expect(() => memory.matvec(memory.views[0], 8, 4, new Float32Array(8), new Float32Array(8))).toThrow(
      /do not make \[8, 4\]/,
    );
  });

  it('is the compiled form of matvec.wat', () => {
    const check = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'scripts/build-matvec-wasm.ts', '--check'],
      {
        encoding: 'utf8',
      },
    );
    expect(check.stdout).toContain('matches');
    expect(check.status).toBe(0);
  });
});
