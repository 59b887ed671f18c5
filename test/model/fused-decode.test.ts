/**
 * The fused decoding step (ONNX Runtime graphs per layer boundary) gives the per-op path's numbers to the bit:
 * hidden rows, logits and the keys and values it caches, over several steps, for one sequence alone and for
 * several at once (one of them starting from an empty cache, as the batch-invariant pad row does), and for
 * prompts (the fused prefill), at 1 and 2 threads, on every architecture it runs; the rest fall back to the
 * per-op path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGrad, Tensor } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig, type LlamaConfig } from '../../src/model/config.ts';
import { fusedDecodeStep, fusedPrefill, setFusedDecoding } from '../../src/model/fused-decode.ts';
import { addVectorHook, HookSet } from '../../src/model/hooks.ts';
import {
  KvCache,
  setWeightMemoryMinParams,
  type DecodeSequence,
  type LlamaModel,
} from '../../src/model/llama.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { caseConfig, randomModel } from '../architecture-fixtures.ts';

const VOCAB = 96;

/** Qwen2's layout (q/k/v biases) with grouped-query heads over more than one kv head. */
const qwen2Grouped = (): LlamaConfig =>
  parseLlamaConfig({
    vocabSize: VOCAB,
    dim: 64,
    nLayers: 3,
    nHeads: 8,
    nKvHeads: 2,
    hiddenDim: 112,
    normEps: 1e-6,
    ropeTheta: 1000000,
    qkvBias: true,
    tieEmbeddings: false,
    maxSeqLen: 64,
  });

/** Wider than the fixtures: matmuls long enough for the kernels' blocking and thread split to matter. */
const wide = (): LlamaConfig =>
  parseLlamaConfig({
    vocabSize: 512,
    dim: 384,
    nLayers: 2,
    nHeads: 6,
    nKvHeads: 2,
    hiddenDim: 1152,
    maxSeqLen: 64,
  });

/** Every head its own kv head (the engine benchmark's reference layout): attention in JS on the one-row step. */
const ownKvHeads = (): LlamaConfig =>
  parseLlamaConfig({
    vocabSize: VOCAB,
    dim: 128,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 4,
    hiddenDim: 256,
    maxSeqLen: 64,
  });

/** Qwen3's q/k norms, every head its own kv head: the JS attention's projection tail. */
const ownKvHeadsNormed = (): LlamaConfig =>
  parseLlamaConfig({
    arch: 'qwen3',
    vocabSize: VOCAB,
    dim: 64,
    nLayers: 2,
    nHeads: 2,
    nKvHeads: 2,
    headDim: 48,
    hiddenDim: 96,
    maxSeqLen: 64,
  });

/** Qwen2's q/k/v biases, every head its own kv head of size 16. */
const ownKvHeadsBiased = (): LlamaConfig =>
  parseLlamaConfig({
    vocabSize: VOCAB,
    dim: 64,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 4,
    hiddenDim: 96,
    qkvBias: true,
    tieEmbeddings: false,
    maxSeqLen: 64,
  });

const CONFIGS: [string, () => LlamaConfig][] = [
  ['llama, 4 heads over 4', ownKvHeads],
  ['qwen3 (q/k norms, 2 heads over 2, head size 48)', ownKvHeadsNormed],
  ['qwen2 (biases, 4 heads over 4)', ownKvHeadsBiased],
  ['llama3 (scaled RoPE, 8 heads over 2)', () => caseConfig('llama3', VOCAB)],
  ['smollm2 (6 heads over 2)', () => caseConfig('smollm2', VOCAB)],
  ['qwen2.5 (biases, one kv head)', () => caseConfig('qwen25', VOCAB)],
  ['qwen2 (biases, 8 heads over 2, untied head)', qwen2Grouped],
  ['qwen3 (q/k norms, head size not dim / heads)', () => caseConfig('qwen3', VOCAB)],
  ['llama, dim 384 and MLP 1152', wide],
];

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function expectBitIdentical(a: Float32Array, b: Float32Array, what: string): void {
  const i = firstBitDifference(a, b);
  expect(i, `${what}: first difference at ${i} (${a[i]} vs ${b[i]})`).toBe(-1);
}

/** Prefilled one-sequence caches of `prompts` (an empty prompt leaves an empty cache, like the pad row). */
function prefilled(model: LlamaModel, prompts: number[][], steps: number): DecodeSequence[] {
  return prompts.map((p) => {
    const cache = new KvCache(model.config, 1, Math.max(1, p.length + steps));
    if (p.length > 0) model.forwardHidden(Int32Array.from(p), 1, { cache });
    return { cache };
  });
}

/**
 * Decodes `steps` greedy steps of the prompts together, the per-op path on one set of caches and the fused
 * step on another, and checks that hidden rows, logits and caches agree to the bit at every step.
 */
function compareSteps(model: LlamaModel, prompts: number[][], steps: number): void {
  noGrad(() => {
    const ref = prefilled(model, prompts, steps);
    const fused = prefilled(model, prompts, steps);
    let ids = Int32Array.from(prompts, (p, i) => (p.length ? p[p.length - 1] : i + 1));
    for (let step = 0; step < steps; step++) {
      const positions = Int32Array.from(fused, (s) => s.cache.length);
      setFusedDecoding(false);
      const refHidden = model.forwardStep(ids, ref);
      setFusedDecoding(true);
      const hidden = fusedDecodeStep(model, ids, fused, positions);
      expect(hidden, 'the fused step runs').not.toBeNull();
      for (const s of fused) s.cache.length += 1;
      expectBitIdentical(hidden!.data, refHidden.data, `step ${step}: hidden rows`);
      const refLogits = model.logits(refHidden).data;
      expectBitIdentical(model.logits(hidden!).data, refLogits, `step ${step}: logits`);
      // Feed back each row's greedy token (rows whose cache is full stop being fed: only `steps` fit).
      const vocab = model.config.vocabSize;
      ids = Int32Array.from(prompts, (_, r) => {
        let best = 0;
        for (let j = 1; j < vocab; j++) if (refLogits[r * vocab + j] > refLogits[r * vocab + best]) best = j;
        return best;
      });
    }
    fused.forEach((s, i) => {
      for (let l = 0; l < model.config.nLayers; l++) {
        expectBitIdentical(s.cache.keys[l], ref[i].cache.keys[l], `sequence ${i} layer ${l} keys`);
        expectBitIdentical(s.cache.values[l], ref[i].cache.values[l], `sequence ${i} layer ${l} values`);
      }
    });
  });
}

/**
 * Prompts through fusedPrefill and through the per-op forwardHidden on a cache, one after another on the same
 * caches (so the later ones continue cached positions): hidden rows and caches agree to the bit.
 */
function comparePrefill(model: LlamaModel, prompts: number[][]): void {
  noGrad(() => {
    const capacity = prompts.reduce((n, p) => n + p.length, 0);
    const ref = new KvCache(model.config, 1, capacity);
    const fused = new KvCache(model.config, 1, capacity);
    prompts.forEach((prompt, i) => {
      const ids = Int32Array.from(prompt);
      setFusedDecoding(false);
      const want = model.forwardHidden(ids, 1, { cache: ref });
      setFusedDecoding(true);
      const got = fusedPrefill(model, ids, fused);
      expect(got, 'the fused prefill runs').not.toBeNull();
      expect(fused.length).toBe(ref.length);
      expectBitIdentical(got!.data, want.data, `prompt ${i}: hidden rows`);
    });
    for (let l = 0; l < model.config.nLayers; l++) {
      expectBitIdentical(fused.keys[l], ref.keys[l], `layer ${l} keys`);
      expectBitIdentical(fused.values[l], ref.values[l], `layer ${l} values`);
    }
  });
}

for (const threads of [1, 2]) {
  describe(`fused decoding step at ${threads} thread(s): the per-op numbers to the bit`, () => {
    beforeAll(() => configureBackend({ threads }));
    afterAll(() => setFusedDecoding(true));

    for (const [label, config] of CONFIGS) {
      it(label, () => {
        const model = randomModel(config(), 11);
        // Alone (one row), then three together: different lengths, one an empty cache (the pad row's).
        compareSteps(model, [[3, 1, 4, 1, 5]], 6);
        compareSteps(model, [[2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4], [9], []], 1);
        compareSteps(model, [[2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4], [9], [5, 5]], 5);
        // Prompts: from an empty cache, then continuing it.
        comparePrefill(model, [
          [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9],
          [7, 9],
          [3, 2, 3, 8, 4],
        ]);
      });
    }
  });
}

/**
 * Greedy steps of one sequence on a model whose weights are in a WeightMemory (the one-row matmul step) and on the
 * same weights in plain arrays (ONNX Runtime's Gemms on the per-op path): hidden rows, logits and caches agree to
 * the bit.
 */
function compareMatvecSteps(config: LlamaConfig, prompt: number[], steps: number): void {
  setWeightMemoryMinParams(0);
  const inMemory = randomModel(config, 11);
  setWeightMemoryMinParams(Infinity);
  const plain = randomModel(config, 11);
  setWeightMemoryMinParams();
  expect(inMemory.weightMemory, 'the weights are in a WeightMemory').not.toBeNull();
  expect(plain.weightMemory).toBeNull();
  noGrad(() => {
    const [ref] = prefilled(plain, [prompt], steps);
    const [seq] = prefilled(inMemory, [prompt], steps);
    let id = prompt[prompt.length - 1];
    for (let step = 0; step < steps; step++) {
      setFusedDecoding(false);
      const refHidden = plain.forwardStep(Int32Array.of(id), [ref]);
      setFusedDecoding(true);
      const hidden = fusedDecodeStep(inMemory, Int32Array.of(id), [seq], Int32Array.of(seq.cache.length));
      expect(hidden, 'the fused step runs').not.toBeNull();
      seq.cache.length += 1;
      expectBitIdentical(hidden!.data, refHidden.data, `step ${step}: hidden row`);
      const refLogits = plain.logits(refHidden).data;
      expectBitIdentical(inMemory.logits(hidden!).data, refLogits, `step ${step}: logits`);
      id = refLogits.indexOf(Math.max(...refLogits));
    }
    for (let l = 0; l < config.nLayers; l++) {
      expectBitIdentical(seq.cache.keys[l], ref.cache.keys[l], `layer ${l} keys`);
      expectBitIdentical(seq.cache.values[l], ref.cache.values[l], `layer ${l} values`);
    }
  });
}

for (const threads of [1, 2]) {
  describe(`one sequence on the one-row matmul at ${threads} thread(s): ONNX Runtime's numbers to the bit`, () => {
    beforeAll(() => configureBackend({ threads }));

    for (const [label, config] of CONFIGS)
      it(label, () => {
        compareMatvecSteps(config(), [3, 1, 4, 1, 5], 6);
      });
  });
}

describe('fused decoding step: what stays on the per-op path', () => {
  beforeAll(() => configureBackend({ threads: 1 }));

  const step = (model: LlamaModel, seqs: DecodeSequence[]): Tensor | null =>
    noGrad(() => fusedDecodeStep(model, Int32Array.of(1), seqs, Int32Array.of(seqs[0].cache.length)));

  it('Gemma 3, gradients, hooks, LoRA adapters and the JS backend fall back', () => {
    const gemma = randomModel(caseConfig('gemma3', VOCAB), 3);
    expect(step(gemma, prefilled(gemma, [[1, 2]], 1))).toBeNull();

    const model = randomModel(caseConfig('llama3', VOCAB), 3);
    const hooks = new HookSet().add(
      'blocks.0.hook_resid_post',
      addVectorHook(new Float32Array(64).fill(1), 1),
    );
    const [seq] = prefilled(model, [[1, 2]], 1);
    expect(step(model, [{ cache: seq.cache, hooks }])).toBeNull();
    expect(step(model, [{ cache: seq.cache }])).not.toBeNull();
    const [other] = prefilled(model, [[1, 2]], 1);
    expect(fusedDecodeStep(model, Int32Array.of(1), [other], Int32Array.of(2))).toBeNull();

    // A prompt of one position, or one that does not fit its cache, is the per-op path's.
    expect(noGrad(() => fusedPrefill(model, Int32Array.of(1), new KvCache(model.config, 1, 4)))).toBeNull();
    expect(
      noGrad(() => fusedPrefill(model, Int32Array.of(1, 2, 3), new KvCache(model.config, 1, 2))),
    ).toBeNull();
    expect(
      noGrad(() => fusedPrefill(gemma, Int32Array.of(1, 2), new KvCache(gemma.config, 1, 2))),
    ).toBeNull();

    const adapted = randomModel(caseConfig('llama3', VOCAB), 3);
    adapted.addLora(2, ['q_proj'], 1);
    expect(step(adapted, prefilled(adapted, [[1, 2]], 1))).toBeNull();

    configureBackend({ backend: 'js' });
    try {
      expect(step(model, prefilled(model, [[1, 2]], 1))).toBeNull();
    } finally {
      configureBackend({ threads: 1 });
    }
  });
});
