import { beforeAll, describe, expect, it } from 'vitest';
import {
  add,
  addVector,
  causalAttention,
  clampProjection,
  crossEntropy,
  embedding,
  linear,
  reshape,
  rmsNorm,
  rope,
  scale,
  swiglu,
} from '../src/autograd/ops.ts';
import { Tensor } from '../src/autograd/tensor.ts';
import { JsMatmulBackend, matmul, setMatmulBackend } from '../src/tensor/matmul.ts';
import { OrtMatmulBackend, ortAvailable } from '../src/tensor/ort-matmul.ts';
import { Rng } from '../src/tensor/random.ts';

const rng = new Rng(7);
function randTensor(shape: number[], s = 1): Tensor {
  const t = Tensor.zeros(shape, true);
  for (let i = 0; i < t.size; i++) t.data[i] = rng.gaussian() * s;
  return t;
}

/**
 * Checks analytic gradients of sum(f(inputs) * r) against central finite differences for a sample of
 * coordinates of every input. float32 forward passes limit the achievable precision, hence the tolerance.
 */
function gradCheck(f: () => Tensor, inputs: Tensor[], samples = 12, eps = 1e-2, tol = 2e-2): void {
  const out0 = f();
  const r = new Float32Array(out0.size).map(() => rng.gaussian());
  const objective = (t: Tensor): number => {
    let s = 0;
    for (let i = 0; i < t.size; i++) s += t.data[i] * r[i];
    return s;
  };
  for (const x of inputs) x.grad = null;
  const out = f();
  out.backward(r);
  for (const x of inputs) {
    const g = x.grad ?? new Float32Array(x.size);
    for (let s = 0; s < samples; s++) {
      const i = rng.scaledInt(x.size);
      const old = x.data[i];
      x.data[i] = old + eps;
      const up = objective(f());
      x.data[i] = old - eps;
      const down = objective(f());
      x.data[i] = old;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(numeric - g[i]) / Math.max(1, Math.abs(numeric));
      expect(err, `input ${x.name} index ${i}: analytic ${g[i]} vs numeric ${numeric}`).toBeLessThan(tol);
    }
  }
}

describe('matmul backends', () => {
  it('ONNX Runtime agrees with the JS reference in all layouts, batched and not', () => {
    if (!ortAvailable()) return expect(ortAvailable()).toBe(false);
    const js = new JsMatmulBackend();
    const ort = new OrtMatmulBackend(2);
    for (const batch of [1, 3]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const spec = { batch, m: 17, n: 23, k: 9, transA, transB };
          const a = new Float32Array(batch * 17 * 9).map(() => rng.gaussian());
          const b = new Float32Array(batch * 9 * 23).map(() => rng.gaussian());
          const x = js.matmul(a, b, spec);
          const y = ort.matmul(a, b, spec);
          let maxErr = 0;
          for (let i = 0; i < x.length; i++) maxErr = Math.max(maxErr, Math.abs(x[i] - y[i]));
          expect(maxErr).toBeLessThan(1e-4);
        }
      }
    }
  });

  it('rejects inputs whose sizes do not match the spec', () => {
    expect(() =>
      matmul(new Float32Array(5), new Float32Array(6), {
        batch: 1,
        m: 2,
        n: 3,
        k: 2,
        transA: false,
        transB: false,
      }),
    ).toThrow(/A has 5/);
  });
});

describe.each(['js', 'ort'])('gradients match finite differences (%s matmul)', (backend) => {
  if (backend === 'ort' && !ortAvailable()) return;
  beforeAll(() => setMatmulBackend(backend === 'js' ? new JsMatmulBackend() : new OrtMatmulBackend(2)));

  it('linear with bias', () => {
    const x = randTensor([2, 3, 5]);
    const w = randTensor([4, 5]);
    const b = randTensor([4]);
    gradCheck(() => linear(x, w, b), [x, w, b]);
  });

  it('add, scale, reshape', () => {
    const a = randTensor([3, 4]);
    const b = randTensor([3, 4]);
    gradCheck(() => reshape(scale(add(a, b), 1.7), [12]), [a, b]);
  });

  it('rmsNorm', () => {
    const x = randTensor([4, 8]);
    const w = randTensor([8]);
    gradCheck(() => rmsNorm(x, w, 1e-5), [x, w]);
  });

  it('rope', () => {
    const x = randTensor([2, 5, 3, 4]);
    gradCheck(() => rope(x, Int32Array.from([0, 1, 2, 3, 4]), 10000), [x]);
  });

  it('causal attention with grouped-query heads', () => {
    const q = randTensor([2, 5, 4, 4]);
    const k = randTensor([2, 5, 2, 4]);
    const v = randTensor([2, 5, 2, 4]);
    gradCheck(() => causalAttention(q, k, v), [q, k, v]);
  });

  it('swiglu', () => {
    const g = randTensor([3, 6]);
    const u = randTensor([3, 6]);
    gradCheck(() => swiglu(g, u), [g, u]);
  });

  it('embedding gather / scatter-add with repeated ids', () => {
    const w = randTensor([7, 3]);
    gradCheck(() => embedding(w, Int32Array.from([1, 3, 1, 6]), [2, 2]), [w]);
  });

  it('cross-entropy with per-token weights and masks', () => {
    const logits = randTensor([5, 7]);
    const targets = Int32Array.from([0, 3, 6, 2, 1]);
    const weights = Float32Array.from([1, 0, 2, 0.5, 1]);
    gradCheck(() => crossEntropy(logits, targets, weights), [logits]);
  });

  it('steering edits: add a vector, cap and ablate a projection (gradients flow through)', () => {
    const x = randTensor([4, 6]);
    const v = new Float32Array(6).map(() => rng.gaussian());
    const u = v.map((e) => e / Math.hypot(...v));
    const mask = Uint8Array.from([1, 0, 1, 1]);
    gradCheck(() => addVector(x, v, 0.5, mask), [x]);
    gradCheck(() => clampProjection(x, u, 0, 0, null), [x]);
    gradCheck(() => clampProjection(x, u, -0.2, 0.3, mask), [x]);
  });
});

describe('op semantics', () => {
  it('cross-entropy of uniform logits is log(vocab), masked rows do not count', () => {
    const logits = Tensor.zeros([3, 10]);
    const loss = crossEntropy(logits, Int32Array.from([1, 2, 3]), Float32Array.from([1, 0, 1]));
    expect(loss.item()).toBeCloseTo(Math.log(10), 5);
  });

  it('attention is causal: a later token does not change earlier outputs', () => {
    const q = randTensor([1, 4, 2, 4]);
    const k = randTensor([1, 4, 2, 4]);
    const v = randTensor([1, 4, 2, 4]);
    const a = causalAttention(q, k, v).data.slice(0, 3 * 8);
    k.data[3 * 8] += 5;
    v.data[3 * 8 + 1] += 5;
    const b = causalAttention(q, k, v).data.slice(0, 3 * 8);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('ablation leaves no component along the direction; capping bounds it', () => {
    const x = randTensor([5, 4]);
    const u = Float32Array.from([0.5, 0.5, 0.5, 0.5]);
    const ab = clampProjection(x, u, 0, 0);
    const capped = clampProjection(x, u, -Infinity, 0.1);
    for (let r = 0; r < 5; r++) {
      let c1 = 0;
      let c2 = 0;
      for (let i = 0; i < 4; i++) {
        c1 += ab.data[r * 4 + i] * u[i];
        c2 += capped.data[r * 4 + i] * u[i];
      }
      expect(Math.abs(c1)).toBeLessThan(1e-6);
      expect(c2).toBeLessThanOrEqual(0.1 + 1e-6);
    }
  });
});
