/**
 * The JS RMSNorm of src/tensor/ort-rmsnorm.ts gives ONNX Runtime's SimplifiedLayerNormalization's bits (widths
 * of the models this project decodes, values over several magnitudes, two epsilons), and its fused multiply-add
 * rounds once, as the instruction does, where rounding the double sum would round twice.
 */
import { describe, expect, it } from 'vitest';
import { rmsNormForwardGraph } from '../../src/tensor/kernel-graphs.ts';
import { ortAvailable, OrtGraph } from '../../src/tensor/ort-session.ts';
import { fmaFloat, rmsNormLikeOrt, rmsNormMatchesOrt } from '../../src/tensor/ort-rmsnorm.ts';
import { Rng } from '../../src/tensor/random.ts';

describe('fmaFloat', () => {
  it('rounds a * b + c once: a double sum exactly halfway between two floats goes the way the true sum lies', () => {
    // a * b = 2^-24 - 2^-70 exactly; c = 1 + 2^-23. The double sum is 1 + 2^-23 + 2^-24, halfway between two
    // floats (rounding it to even gives 1 + 2^-22); the true sum lies just below the midpoint.
    const a = 2 ** -12 * (1 + 2 ** -23);
    const b = 2 ** -12 * (1 - 2 ** -23);
    const c = 1 + 2 ** -23;
    expect(Math.fround(a * b + c)).toBe(1 + 2 ** -22);
    expect(fmaFloat(a, b, c)).toBe(1 + 2 ** -23);
    // Just above the midpoint, and negative.
    expect(fmaFloat(a, a, 1)).toBe(1 + 2 ** -23);
    expect(fmaFloat(-a, b, -c)).toBe(-(1 + 2 ** -23));
    // Exact sums and sums that are floats already.
    expect(fmaFloat(3, 5, 7)).toBe(22);
    expect(fmaFloat(0.5, 0.5, -0.25)).toBe(0);
  });
});

describe.skipIf(!ortAvailable())(
  "rmsNormLikeOrt: ONNX Runtime's SimplifiedLayerNormalization to the bit",
  () => {
    it('is checked against this machine (x64: AVX2 with FMA)', () => {
      expect(rmsNormMatchesOrt()).toBe(process.arch === 'x64');
    });

    for (const eps of [1e-5, 1e-6])
      it.skipIf(process.arch !== 'x64')(`widths 16 to 4,864, epsilon ${eps}`, () => {
        const rng = new Rng(5);
        for (const d of [16, 24, 32, 40, 64, 128, 512, 576, 896, 4864]) {
          const graph = new OrtGraph(rmsNormForwardGraph(eps), 1);
          const rows = 60;
          const scales = [1e-4, 1, 40, 3e3];
          const x = Float32Array.from(
            { length: rows * d },
            (_, i) => rng.gaussian() * scales[Math.floor(i / d) % 4] * (i % 17 === 0 ? 25 : 1),
          );
          const w = Float32Array.from({ length: d }, () => rng.gaussian());
          const want = graph.run({ X: [x, [rows, d]], W: [w, [d]] }, ['Y']).Y;
          const got = rmsNormLikeOrt(x, w, eps);
          const first = got.findIndex((v, i) => !Object.is(v, want[i]));
          expect(first, `width ${d}: first difference at ${first}`).toBe(-1);
        }
      });
  },
);
