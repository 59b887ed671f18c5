/**
 * RMSNorm in JS with the bits of ONNX Runtime's SimplifiedLayerNormalization, for a decoding step that would
 * otherwise run a graph for each norm (src/tensor/ort-decode-matvec.ts): a graph run costs tens of microseconds,
 * the norm of one row a few.
 *
 * ONNX Runtime 1.30 on x86 with AVX2 and FMA sums the squares in eight lanes (lane i % 8, each a fused
 * multiply-add), reduces them as ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), then takes
 * rms = sqrt(sum / d + eps) and multiplies each element by the float 1 / rms and then by its weight. Other CPUs or
 * versions may sum otherwise, so {@link rmsNormMatchesOrt} checks this against the real op once per process.
 */
import { rmsNormForwardGraph } from './kernel-graphs.ts';
import { OrtGraph } from './ort-session.ts';
import { Rng } from './random.ts';
import { sameBits } from './same-bits.ts';

const f = Math.fround;
const bits = new Float32Array(1);
const word = new Int32Array(bits.buffer);

/** The float after r in the direction of t (r a nonzero float or zero, t !== r). */
function nextFloatToward(r: number, t: number): number {
  bits[0] = r;
  if (r === 0) {
    word[0] = 1;
    return t > 0 ? bits[0] : -bits[0];
  }
  word[0] += r > 0 === t > r ? 1 : -1;
  return bits[0];
}

/**
 * fma(a, b, c) for floats, rounded once as the hardware instruction rounds: a * b is exact in a double, and where
 * the double sum lands exactly halfway between two floats its exact error (TwoSum) says which way the true sum lies.
 */
export function fmaFloat(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  const r = f(s);
  if (err === 0 || r === s) return r;
  const other = nextFloatToward(r, s);
  if (s !== (r + other) / 2) return r;
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/**
 * Widths this replica covers: multiples of 8 (no partial block of lanes) from 16 (width 8 rounds otherwise in
 * ONNX Runtime).
 */
export function rmsNormWidthSupported(d: number): boolean {
  return d >= 16 && d % 8 === 0;
}

/** The eight lane sums of a row's squares, reused by every call. */
const normLanes = new Float64Array(8);

/** y = RMSNorm(x) * w over rows of w.length, as ONNX Runtime's SimplifiedLayerNormalization computes it. */
export function rmsNormLikeOrt(
  x: Float32Array,
  w: Float32Array,
  eps: number,
  y: Float32Array = new Float32Array(x.length),
): Float32Array {
  const d = w.length;
  if (!rmsNormWidthSupported(d) || x.length % d !== 0)
    throw new Error(
      `rmsNormLikeOrt: rows of ${d} (a multiple of 8 from 16) do not divide ${x.length} values`,
    );
  if (y.length !== x.length) throw new Error(`rmsNormLikeOrt: ${y.length} outputs for ${x.length} values`);
  const lanes = normLanes;
  const epsilon = f(eps);
  for (let row = 0; row < x.length; row += d) {
    lanes.fill(0);
    for (let i = 0; i < d; i++) {
      const v = x[row + i];
      lanes[i & 7] = fmaFloat(v, v, lanes[i & 7]);
    }
    const sum = f(
      f(f(lanes[0] + lanes[4]) + f(lanes[2] + lanes[6])) + f(f(lanes[1] + lanes[5]) + f(lanes[3] + lanes[7])),
    );
    const inv = f(1 / f(Math.sqrt(f(f(sum / d) + epsilon))));
    for (let i = 0; i < d; i++) y[row + i] = f(f(x[row + i] * inv) * w[i]);
  }
  return y;
}

let checked: boolean | undefined;

/**
 * True when {@link rmsNormLikeOrt} gives ONNX Runtime's SimplifiedLayerNormalization's bits on this machine
 * (checked once, on random rows of two widths with a tenth of the values 30 times larger).
 */
export function rmsNormMatchesOrt(): boolean {
  if (checked !== undefined) return checked;
  checked = false;
  const rng = new Rng(2);
  const eps = 1e-6;
  checked = [64, 520].every((d) => {
    // The per-op kernel's own graph (what every other path of the engine runs for a norm).
    const graph = new OrtGraph(rmsNormForwardGraph(eps), 1);
    const rows = 16;
    const x = Float32Array.from({ length: rows * d }, (_, i) => rng.gaussian() * (i % 10 === 3 ? 30 : 1));
    const w = Float32Array.from({ length: d }, () => rng.gaussian());
    const want = graph.run({ X: [x, [rows, d]], W: [w, [d]] }, ['Y']).Y;
    const got = rmsNormLikeOrt(x, w, eps);
    return sameBits(got, want);
  });
  return checked;
}
