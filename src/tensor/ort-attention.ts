/**
 * The attention of one decoding step of one sequence in JS and WebAssembly, with the bits of the graphs it replaces
 * (src/tensor/ort-decode-matvec.ts's scores and attended): a step of a small model is mostly the overhead of its
 * graph runs, and these two are half of them. The orders, found by matching ONNX Runtime 1.30's ops on random data:
 *
 *   RoPE (RotaryEmbedding, halves rotated)  x' = fma(x, cos, -(y * sin)), y' = fma(x, sin, y * cos), each product
 *                                           rounded to float before it enters the fused multiply-add
 *   scores (MatMul of q by the cached keys, transposed)   ONNX Runtime's one-row kernel for a transposed B, which
 *                                           the WebAssembly matvec already sums as (src/tensor/matvec.wat)
 *   attended (MatMul of the probabilities by the cached values)   its one-row kernel for an untransposed B
 *                                           (matvec.wat's vecmat)
 *
 * Both matmuls take those kernels only with one query row per kv head, so this covers models whose every head has
 * its own keys and values; others keep the graphs. MLAS picks its kernels by CPU, so the first use on each layer
 * shape checks itself against the graphs (OrtMatvecDecodeGraphs.attentionRunsInJs) and keeps the graphs where any bit
 * differs.
 */
import type { DecodeLayerShape } from './ort-decode.ts';
import type { ScoresWeights } from './ort-decode-matvec.ts';
import { fmaFloat, rmsNormLikeOrt, rmsNormMatchesOrt, rmsNormWidthSupported } from './ort-rmsnorm.ts';
import { rowFor, type RowBuffers } from './row-buffers.ts';
import type { WeightMemory } from './weight-memory.ts';

const f = Math.fround;

/** True when the layer shape is one this replica covers (the self-check still decides whether it is used). */
export function attentionShapeSupported(s: DecodeLayerShape): boolean {
  const half = s.headDim / 2;
  // Rotations of whole vectors of 8 (narrower tails may round otherwise), and q/k norms the JS norm covers.
  const ropeOk = half >= 8 && half % 8 === 0;
  const normOk = !s.qkNorm || (rmsNormWidthSupported(s.headDim) && rmsNormMatchesOrt());
  return s.heads === s.kvHeads && ropeOk && normOk;
}

/** Rotates each head of x [heads x hd] by the position's cos and sin [hd / 2], halves as pairs. */
export function ropeLikeOrt(
  x: Float32Array,
  hd: number,
  cos: Float32Array,
  sin: Float32Array,
  out: Float32Array = new Float32Array(x.length),
): Float32Array {
  const half = hd / 2;
  for (let h = 0; h < x.length; h += hd) {
    for (let i = 0; i < half; i++) {
      const a = x[h + i];
      const b = x[h + i + half];
      out[h + i] = fmaFloat(a, cos[i], -f(b * sin[i]));
      out[h + i + half] = fmaFloat(a, sin[i], f(b * cos[i]));
    }
  }
  return out;
}

/** y + bias (into `out`), or y when there is no bias. */
function withBias(y: Float32Array, bias: Float32Array | undefined, out: Float32Array): Float32Array {
  if (!bias) return y;
  for (let i = 0; i < y.length; i++) out[i] = y[i] + bias[i];
  return out;
}

/**
 * What the scores graph computes: the new key after its bias, norm and RoPE and the value after its bias ([heads x
 * hd] each), and the scores [heads, past + 1] of the query against the cache's `past` keys and the new one. The new
 * key is written into the cache at `past` on the way (as the caller writes it after the graph). With `buffers`, the
 * rows returned are theirs.
 */
export function scoresLikeOrt(
  memory: WeightMemory,
  s: DecodeLayerShape,
  qkv: { q: Float32Array; k: Float32Array; v: Float32Array },
  w: ScoresWeights,
  rope: { cos: Float32Array; sin: Float32Array },
  cache: { keys: Float32Array; capacity: number },
  past: number,
  buffers?: RowBuffers,
): { key: Float32Array; value: Float32Array; scores: Float32Array } {
  const { heads: h, headDim: hd } = s;
  const tail = (
    p: 'q' | 'k',
    y: Float32Array,
    bias: Float32Array | undefined,
    normW: Float32Array | undefined,
  ) => {
    const row = (role: string) => rowFor(buffers, `${p}${role}`, y.length);
    const biased = withBias(y, bias, row('Biased'));
    const normed = normW ? rmsNormLikeOrt(biased, normW, s.eps, row('Normed')) : biased;
    return ropeLikeOrt(normed, hd, rope.cos, rope.sin, row('Rotated'));
  };
  const q = tail('q', qkv.q, w.bias?.q, w.qkNorm?.q);
  const key = tail('k', qkv.k, w.bias?.k, w.qkNorm?.k);
  const value = withBias(qkv.v, w.bias?.v, rowFor(buffers, 'vBiased', qkv.v.length));
  const total = past + 1;
  const scores = rowFor(buffers, 'scores', h * total);
  for (let g = 0; g < h; g++) {
    const start = g * cache.capacity * hd;
    cache.keys.set(key.subarray(g * hd, (g + 1) * hd), start + past * hd);
    memory.matvecRows(
      cache.keys.subarray(start, start + total * hd),
      total,
      hd,
      q.subarray(g * hd, (g + 1) * hd),
      scores.subarray(g * total, (g + 1) * total),
    );
  }
  return { key, value, scores };
}

/**
 * What the attended graph computes: the probabilities [heads, total] times each head's first `total` values (with
 * `buffers`, into their row).
 */
export function attendedLikeOrt(
  memory: WeightMemory,
  s: DecodeLayerShape,
  probs: Float32Array,
  cache: { values: Float32Array; capacity: number },
  total: number,
  buffers?: RowBuffers,
): Float32Array {
  const { heads: h, headDim: hd } = s;
  const out = rowFor(buffers, 'attended', h * hd);
  for (let g = 0; g < h; g++) {
    const start = g * cache.capacity * hd;
    memory.vecmat(
      probs.subarray(g * total, (g + 1) * total),
      cache.values.subarray(start, start + total * hd),
      total,
      hd,
      out.subarray(g * hd, (g + 1) * hd),
    );
  }
  return out;
}
