/**
 * Test-size models of today's small open-weight architectures: each keeps its real config's shape features
 * (grouped-query ratio, a head size that is not dim / heads, tied head, RoPE base and scaling, Gemma 3's
 * sliding-window pattern, its norms and attention scale) at a size that runs in milliseconds. Weights are
 * random with a spread that gives peaked next-token distributions (near-uniform ones would hide mistakes),
 * and every norm's weight is perturbed, so a norm read wrongly (1 + w against w) shows.
 */
import { parseLlamaConfig, type LlamaConfig, type LlamaConfigInput } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { Rng } from '../src/tensor/random.ts';

/** Gemma 3's layer pattern: five sliding-window layers, then a global one. */
const gemmaLayers = (n: number): LlamaConfigInput['layerTypes'] =>
  Array.from({ length: n }, (_, i) => ((i + 1) % 6 === 0 ? 'full_attention' : 'sliding_attention'));

/** Per architecture, the real model it stands for and its test-size config (vocabulary filled in by the caller). */
export const ARCHITECTURE_CASES: Record<
  string,
  { real: string; config: Omit<LlamaConfigInput, 'vocabSize'> }
> = {
  // Llama 3.2 1B: 32 heads over 8 KV heads, tied head, base 500000, llama3 scaling (factor 32, 1, 4, 8192).
  llama3: {
    real: 'Llama 3.2 1B',
    config: {
      dim: 64,
      nLayers: 2,
      nHeads: 8,
      nKvHeads: 2,
      hiddenDim: 96,
      normEps: 1e-5,
      ropeTheta: 500000,
      tieEmbeddings: true,
      maxSeqLen: 128,
      ropeScaling: {
        type: 'llama3',
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
    },
  },
  // SmolLM2 135M: Llama layout, 9 heads over 3 KV heads, tied, base 100000.
  smollm2: {
    real: 'SmolLM2 135M',
    config: {
      dim: 48,
      nLayers: 2,
      nHeads: 6,
      nKvHeads: 2,
      hiddenDim: 128,
      normEps: 1e-5,
      ropeTheta: 100000,
      tieEmbeddings: true,
      maxSeqLen: 128,
    },
  },
  // Qwen2.5 0.5B: q/k/v biases, 14 heads over 2 KV heads, tied, base 1e6.
  qwen25: {
    real: 'Qwen2.5 0.5B',
    config: {
      dim: 56,
      nLayers: 2,
      nHeads: 7,
      nKvHeads: 1,
      hiddenDim: 96,
      normEps: 1e-6,
      ropeTheta: 1000000,
      tieEmbeddings: true,
      qkvBias: true,
      maxSeqLen: 128,
    },
  },
  // Qwen3 0.6B: q/k RMSNorm per head, head size 128 with 16 heads over hidden 1024 (heads * head > hidden), tied.
  qwen3: {
    real: 'Qwen3 0.6B',
    config: {
      arch: 'qwen3',
      dim: 32,
      nLayers: 2,
      nHeads: 4,
      nKvHeads: 2,
      headDim: 16,
      hiddenDim: 96,
      normEps: 1e-6,
      ropeTheta: 1000000,
      tieEmbeddings: true,
      maxSeqLen: 128,
    },
  },
  // Gemma 3 1B: 4 heads over 1 KV head of size 256 (hidden 1152), sliding window 512 on 5 of every 6 layers with
  // RoPE base 10000 there and 1e6 on the global ones, query_pre_attn_scalar = head size, tied, eps 1e-6.
  gemma3: {
    real: 'Gemma 3 1B',
    config: {
      arch: 'gemma3',
      dim: 24,
      nLayers: 6,
      nHeads: 4,
      nKvHeads: 1,
      headDim: 16,
      hiddenDim: 64,
      normEps: 1e-6,
      ropeTheta: 1000000,
      ropeLocalTheta: 10000,
      slidingWindow: 5,
      layerTypes: gemmaLayers(6),
      queryPreAttnScalar: 16,
      tieEmbeddings: true,
      maxSeqLen: 128,
    },
  },
  // Gemma 3 4B's text model: the same, with linear RoPE scaling (factor 8) on the global layers.
  gemma3Scaled: {
    real: 'Gemma 3 4B (text)',
    config: {
      arch: 'gemma3',
      dim: 24,
      nLayers: 6,
      nHeads: 4,
      nKvHeads: 2,
      headDim: 16,
      hiddenDim: 64,
      normEps: 1e-6,
      ropeTheta: 1000000,
      ropeLocalTheta: 10000,
      ropeScaling: { type: 'linear', factor: 8 },
      slidingWindow: 3,
      layerTypes: gemmaLayers(6),
      queryPreAttnScalar: 16,
      tieEmbeddings: true,
      maxSeqLen: 128,
    },
  },
};

export function caseConfig(name: string, vocabSize: number): LlamaConfig {
  return parseLlamaConfig({ ...ARCHITECTURE_CASES[name].config, vocabSize }, name);
}

/** A model of `config` with N(0, std) weights (std 0.25 on the embedding), norms 1 + N(0, 0.2) in effect. */
export function randomModel(config: LlamaConfig, seed: number, std = 0.15): LlamaModel {
  const model = new LlamaModel(config);
  const rng = new Rng(seed);
  const identity = 1 - model.normOffset;
  for (const [name, t] of model.params) {
    if (name.endsWith('norm.weight')) {
      for (let i = 0; i < t.size; i++) t.data[i] = identity + 0.2 * rng.gaussian();
    } else {
      const s = name === 'model.embed_tokens.weight' ? 0.25 : name.endsWith('.bias') ? 0.1 : std;
      for (let i = 0; i < t.size; i++) t.data[i] = s * rng.gaussian();
    }
  }
  for (const t of model.params.values()) t.requiresGrad = false;
  return model;
}
