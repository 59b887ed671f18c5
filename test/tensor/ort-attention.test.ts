/**
 * The JS attention of one decoding step (src/tensor/ort-attention.ts) equals the graphs it replaces to the bit:
 * the new key and value, the scores and the attended row, at every cache length up to past the matmuls' blocks,
 * with q/k/v biases and q/k norms; and the decoding step takes it exactly where it covers the layer shape.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { configureBackend } from '../../src/tensor/backend.ts';
import { attendedLikeOrt, attentionShapeSupported, scoresLikeOrt } from '../../src/tensor/ort-attention.ts';
import type { DecodeLayerShape } from '../../src/tensor/ort-decode.ts';
import { matvecDecodeGraphs, type ScoresWeights } from '../../src/tensor/ort-decode-matvec.ts';
import { ortAvailable } from '../../src/tensor/ort-session.ts';
import { Rng } from '../../src/tensor/random.ts';
import { WeightMemory } from '../../src/tensor/weight-memory.ts';

const shape = (heads: number, kvHeads: number, headDim: number, extra: Partial<DecodeLayerShape> = {}) => ({
  dim: heads * headDim,
  heads,
  kvHeads,
  headDim,
  hidden: 64,
  eps: 1e-6,
  qkvBias: false,
  qkNorm: false,
  ...extra,
});

const COVERED: [string, DecodeLayerShape][] = [
  ['4 heads of 32 (the reference layout)', shape(4, 4, 32)],
  ['2 heads of 64 with q/k/v biases', shape(2, 2, 64, { qkvBias: true })],
  ['3 heads of 48 with q/k norms', shape(3, 3, 48, { qkNorm: true })],
];

function expectSameBits(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const x = new Uint32Array(a.slice().buffer);
  const y = new Uint32Array(b.slice().buffer);
  const i = x.findIndex((v, j) => v !== y[j]);
  expect(i, `${what}: first difference at ${i} (${a[i]} vs ${b[i]})`).toBe(-1);
}

describe.skipIf(!ortAvailable())('attention of a decoding step in JS', () => {
  beforeAll(() => configureBackend({ threads: 1 }));

  for (const [label, s] of COVERED)
    it(`equals the graphs to the bit: ${label}`, () => {
      const graphs = matvecDecodeGraphs()!;
      const { heads: h, kvHeads: hkv, headDim: hd } = s;
      const capacity = 40;
      const memory = WeightMemory.create([], { rows: capacity, cols: hd })!;
      const rng = new Rng(3);
      const random = (n: number, scale = 1): Float32Array =>
        Float32Array.from({ length: n }, () => rng.gaussian() * scale);
      const w: ScoresWeights = {
        bias: s.qkvBias ? { q: random(h * hd), k: random(hkv * hd), v: random(hkv * hd) } : undefined,
        qkNorm: s.qkNorm
          ? { q: random(hd).map((v) => 1 + v / 4), k: random(hd).map((v) => 1 + v / 4) }
          : undefined,
      };
      for (let past = 0; past < capacity; past++) {
        const qkv = { q: random(h * hd, 3), k: random(hkv * hd, 3), v: random(hkv * hd) };
        const angles = random(hd / 2, 10);
        const rope = { cos: angles.map(Math.cos), sin: angles.map(Math.sin) };
        const keys = random(hkv * capacity * hd);
        const want = graphs.scores(s, qkv, w, rope, { keys: keys.slice(), capacity }, past);
        const got = scoresLikeOrt(memory, s, qkv, w, rope, { keys: keys.slice(), capacity }, past);
        expectSameBits(got.key, want.key, `past ${past}: key`);
        expectSameBits(got.value, want.value, `past ${past}: value`);
        expectSameBits(got.scores, want.scores, `past ${past}: scores`);
        const values = random(hkv * capacity * hd);
        const probs = random(h * (past + 1)).map(Math.abs);
        expectSameBits(
          attendedLikeOrt(memory, s, probs, { values, capacity }, past + 1),
          graphs.attended(s, probs, { values, capacity }, past + 1),
          `past ${past}: attended`,
        );
      }
    });

  it('is taken where it covers the shape and matches this machine, and not for grouped heads', () => {
    const graphs = matvecDecodeGraphs()!;
    const memory = WeightMemory.create([], { rows: 64, cols: 64 })!;
    for (const [, s] of COVERED) {
      expect(attentionShapeSupported(s)).toBe(true);
      // MLAS's kernels on x86 (the orders were read there); elsewhere the self-check decides.
      if (process.arch === 'x64') expect(graphs.attentionRunsInJs(s, memory, 10)).toBe(true);
      // More cached positions than the memory's operand holds stay on the graphs.
      expect(graphs.attentionRunsInJs(s, memory, 65)).toBe(false);
    }
    expect(attentionShapeSupported(shape(8, 4, 64))).toBe(false);
    // RoPE over a half narrower than a vector of 8.
    expect(attentionShapeSupported(shape(4, 4, 12))).toBe(false);
    expect(graphs.attentionRunsInJs(shape(4, 4, 32), undefined, 10)).toBe(false);
  });
});
