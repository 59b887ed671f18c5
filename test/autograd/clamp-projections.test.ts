// clampProjections: several directions clamped in one pass must give the numbers of a chain of clampProjection
// calls to the bit, forward and backward, because concept-ablation trials are results of the lab's runs.
import { describe, expect, it } from 'vitest';
import { add, clampProjection, clampProjections, type RowMask } from '../../src/autograd/ops.ts';
import { Tensor } from '../../src/autograd/tensor.ts';
import { ablateDirectionHook, ablateDirectionsHook, HookSet } from '../../src/model/hooks.ts';
import { Rng } from '../../src/tensor/random.ts';

const d = 16;
const shape = [3, 7, d];
const n = 3 * 7;

function gaussian(rng: Rng, len: number, scale = 1): Float32Array {
  return Float32Array.from({ length: len }, () => scale * rng.gaussian());
}

function units(rng: Rng, k: number): Float32Array[] {
  return Array.from({ length: k }, () => {
    const v = gaussian(rng, d);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

/** y and x's gradient for a seed gradient, through `clamp`; with `reuse`, x also feeds the output directly. */
function run(
  clamp: (x: Tensor) => Tensor,
  xData: Float32Array,
  seed: Float32Array,
  reuse: boolean,
): { y: Float32Array; grad: Float32Array } {
  const x = new Tensor(Float32Array.from(xData), shape, true, 'x');
  let y = clamp(x);
  const out = Float32Array.from(y.data);
  if (reuse) y = add(y, x);
  y.backward(seed);
  return { y: out, grad: Float32Array.from(x.grad!) };
}

const chain = (us: Float32Array[], min: number, max: number, rows: RowMask) => (x: Tensor) =>
  us.reduce((t, u) => clampProjection(t, u, min, max, rows), x);

describe('clampProjections', () => {
  const cases: { name: string; min: number; max: number; masked: boolean }[] = [
    { name: 'ablation (min = max = 0)', min: 0, max: 0, masked: false },
    { name: 'capping, some rows inactive', min: -0.4, max: 0.5, masked: false },
    { name: 'ablation on masked rows', min: 0, max: 0, masked: true },
  ];
  for (const c of cases) {
    for (const reuse of [false, true]) {
      it(`equals the chain of single clamps to the bit: ${c.name}${reuse ? ', input reused' : ''}`, () => {
        const rng = new Rng(7);
        const us = units(rng, 5);
        const x = gaussian(rng, n * d);
        const seed = gaussian(rng, n * d);
        const rows: RowMask = c.masked ? Uint8Array.from({ length: n }, (_, i) => i % 3) : null;
        const a = run(chain(us, c.min, c.max, rows), x, seed, reuse);
        const b = run((t) => clampProjections(t, us, c.min, c.max, rows), x, seed, reuse);
        expect(Buffer.from(b.y.buffer).equals(Buffer.from(a.y.buffer))).toBe(true);
        expect(Buffer.from(b.grad.buffer).equals(Buffer.from(a.grad.buffer))).toBe(true);
        // The clamp did something: the output is not the input.
        expect(Buffer.from(a.y.buffer).equals(Buffer.from(x.buffer))).toBe(false);
      });
    }
  }

  it('projects every direction out of an orthonormal basis', () => {
    const rng = new Rng(3);
    // Gram-Schmidt, so the basis directions are orthonormal and ablating all leaves no component along any.
    const basis: Float32Array[] = [];
    for (const v of units(rng, 4)) {
      const w = Float64Array.from(v);
      for (const b of basis) {
        const dot = b.reduce((s, x, i) => s + x * w[i], 0);
        for (let i = 0; i < d; i++) w[i] -= dot * b[i];
      }
      const norm = Math.hypot(...w);
      basis.push(Float32Array.from(w, (x) => x / norm));
    }
    const y = clampProjections(new Tensor(gaussian(rng, n * d), shape), basis, 0, 0);
    for (let r = 0; r < n; r++)
      for (const b of basis) {
        let c = 0;
        for (let i = 0; i < d; i++) c += y.data[r * d + i] * b[i];
        expect(Math.abs(c)).toBeLessThan(1e-5);
      }
  });

  it('refuses a direction of the wrong width', () => {
    const x = new Tensor(new Float32Array(n * d), shape);
    expect(() => clampProjections(x, [new Float32Array(d), new Float32Array(d + 1)], 0, 0)).toThrow(
      /direction has 17 elements, rows have 16/,
    );
  });
});

describe('ablateDirectionsHook', () => {
  it('gives the numbers of one ablateDirectionHook per direction', () => {
    const rng = new Rng(11);
    const dirs = Array.from({ length: 4 }, () => gaussian(rng, d, 3));
    const one = new HookSet();
    for (const v of dirs) one.add('blocks.0.hook_resid_post', ablateDirectionHook(v));
    const all = new HookSet().add('blocks.0.hook_resid_post', ablateDirectionsHook(dirs));
    const x = new Tensor(gaussian(rng, n * d), shape);
    const ctx = { batch: 3, seqLen: 7, positions: Int32Array.from({ length: 7 }, (_, i) => i) };
    const a = one.apply('blocks.0.hook_resid_post', x, ctx);
    const b = all.apply('blocks.0.hook_resid_post', x, ctx);
    expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
    expect(() => ablateDirectionsHook([])).toThrow(/no directions/);
  });
});
