/**
 * Differentiable ops that only some architectures use (Gemma 3): the GeGLU gate with the tanh-approximated
 * GELU, tanh soft-capping of logits, and a constant added to a tensor (Gemma's norms scale by 1 + weight).
 * Plain JS kernels: they sit off the PSM models' path, whose ops are in ops.ts.
 */
import { makeResult, type Tensor } from './tensor.ts';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_COEF = 0.044715;

/** GeGLU gate: gelu_tanh(gate) * up, where gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function geglu(gate: Tensor, up: Tensor): Tensor {
  if (gate.size !== up.size) throw new Error(`geglu: gate [${gate.shape}] and up [${up.shape}] differ`);
  const gd = gate.data;
  const ud = up.data;
  const n = gate.size;
  const y = new Float32Array(n);
  const act = new Float32Array(n);
  const th = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = gd[i];
    const t = Math.tanh(SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x));
    th[i] = t;
    act[i] = 0.5 * x * (1 + t);
    y[i] = act[i] * ud[i];
  }
  return makeResult(
    y,
    gate.shape,
    [gate, up],
    (out) => {
      const dy = out.grad!;
      if (up.requiresGrad) {
        const du = new Float32Array(n);
        for (let i = 0; i < n; i++) du[i] = dy[i] * act[i];
        up.accumulateGrad(du, true);
      }
      if (gate.requiresGrad) {
        const dg = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          const x = gd[i];
          const t = th[i];
          const dAct = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_COEF * x * x);
          dg[i] = dy[i] * ud[i] * dAct;
        }
        gate.accumulateGrad(dg, true);
      }
    },
    'geglu',
  );
}

/** cap * tanh(x / cap): logits squashed smoothly into (-cap, cap). */
export function softcap(x: Tensor, cap: number): Tensor {
  if (!(cap > 0)) throw new Error(`softcap: cap ${cap} must be positive`);
  const n = x.size;
  const th = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    th[i] = Math.tanh(x.data[i] / cap);
    y[i] = cap * th[i];
  }
  return makeResult(
    y,
    x.shape,
    [x],
    (out) => {
      const g = out.grad!;
      const gx = new Float32Array(n);
      for (let i = 0; i < n; i++) gx[i] = g[i] * (1 - th[i] * th[i]);
      x.accumulateGrad(gx, true);
    },
    'softcap',
  );
}

/** x + c for a constant c (gradients pass through unchanged). */
export function addConstant(x: Tensor, c: number): Tensor {
  const y = new Float32Array(x.size);
  for (let i = 0; i < y.length; i++) y[i] = x.data[i] + c;
  return makeResult(y, x.shape, [x], (out) => x.accumulateGrad(out.grad!, true), 'addConstant');
}
