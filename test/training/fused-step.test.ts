import { describe, expect, it } from 'vitest';
import { parseLlamaConfig, type LlamaConfig } from '../../src/model/config.ts';
import {
  ablateDirectionsHook,
  addVectorHook,
  capProjectionHook,
  HookSet,
  recordHook,
} from '../../src/model/hooks.ts';
import { LlamaModel, LORA_TARGETS } from '../../src/model/llama.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { ortAvailable } from '../../src/tensor/ort-matmul.ts';
import { TokenWindowSource, type Batch } from '../../src/training/data.ts';
import { fusedLossAndGradients, fusedStepUnsupported } from '../../src/training/fused-step.ts';
import { selectTrainable, type TrainableSpec } from '../../src/training/trainable.ts';
import { batchLoss, Trainer } from '../../src/training/trainer.ts';

const base = {
  vocabSize: 97,
  dim: 32,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 4,
  hiddenDim: 64,
  maxSeqLen: 24,
};

function tokens(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + (i >> 2) * 31) % vocab);
}

type Rows = 'plain' | 'weighted' | 'masked';

/** A batch of 3 windows of `seqLen` tokens: plain, with emphasis weights, or with a third of its rows masked. */
function batchOf(c: LlamaConfig, rows: Rows, seqLen = 16): Batch {
  const stream = tokens(4096, c.vocabSize);
  const emphasis =
    rows === 'plain'
      ? null
      : { mask: Uint8Array.from(stream, (_, i) => (i % 5 === 0 ? 1 : 0)), weight: 5, maxRank: 3 };
  const batch = new TokenWindowSource(stream, 3, seqLen, 1, emphasis).next();
  if (rows === 'masked') batch.weights = batch.weights!.map((w, i) => (i % 3 === 0 ? 0 : w));
  return batch;
}

/** Loss and every gradient there is (a frozen parameter has none), copied, from `run`. */
function lossAndGrads(
  model: LlamaModel,
  run: () => number,
): { loss: number; grads: Map<string, Float32Array> } {
  for (const p of model.params.values()) p.grad = null;
  const loss = run();
  const grads = [...model.params].filter(([, p]) => p.grad !== null);
  return { loss, grads: new Map(grads.map(([k, p]) => [k, Float32Array.from(p.grad!)])) };
}

function autograd(model: LlamaModel, batch: Batch, hooks?: HookSet): number {
  const { loss } = batchLoss(model, batch, hooks);
  loss.backward();
  return loss.item();
}

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Directions of a fixed pattern (not orthogonal: each ablation reads what the last one left). */
const directions = (dim: number, count: number, salt: number): Float32Array[] =>
  Array.from({ length: count }, (_, j) =>
    Float32Array.from({ length: dim }, (_, i) => Math.sin((i + 1) * (j + salt) * 0.37) + (i === j ? 1 : 0)),
  );

describe.runIf(ortAvailable())('fused training step', () => {
  const cases: [string, Partial<LlamaConfig>, Rows, number][] = [
    ['multi-head, tied, plain rows, 2 threads', {}, 'plain', 2],
    ['grouped-query, untied, weighted rows, 2 threads', { nKvHeads: 2, tieEmbeddings: false }, 'weighted', 2],
    ['one kv head, masked rows, 1 thread', { nKvHeads: 1 }, 'masked', 1],
    ['multi-head, masked rows, 2 threads', {}, 'masked', 2],
  ];
  for (const [name, extra, rows, threads] of cases) {
    it(`gives autograd's loss and gradients to the bit: ${name}`, () => {
      configureBackend({ threads });
      const c = parseLlamaConfig({ ...base, ...extra });
      const model = new LlamaModel(c).initialize(3);
      expect(fusedStepUnsupported(model)).toBeNull();
      // Two sequence lengths through the same graph.
      for (const seqLen of [16, 11]) {
        const batch = batchOf(c, rows, seqLen);
        const fused = lossAndGrads(model, () => fusedLossAndGradients(model, batch)!.loss);
        const plain = lossAndGrads(model, () => autograd(model, batch));
        expect(fused.loss).toBe(plain.loss);
        expect(fused.grads.size).toBe(model.params.size);
        for (const [k, g] of plain.grads) expect(bytes(fused.grads.get(k)!).equals(bytes(g)), k).toBe(true);
      }
    });
  }

  it("computes only the trained parameters' gradients when the rest is frozen (embedding rows), to the bit", () => {
    configureBackend({ threads: 2 });
    for (const tie of [true, false]) {
      const c = parseLlamaConfig({ ...base, tieEmbeddings: tie });
      const model = new LlamaModel(c).initialize(3);
      selectTrainable(model, { kind: 'embeddingRows', rows: [1, 5, 9] }, 1);
      expect(fusedStepUnsupported(model)).toBeNull();
      const batch = batchOf(c, 'masked');
      const fused = lossAndGrads(model, () => fusedLossAndGradients(model, batch)!.loss);
      const plain = lossAndGrads(model, () => autograd(model, batch));
      expect(fused.loss).toBe(plain.loss);
      expect([...fused.grads.keys()]).toEqual(['model.embed_tokens.weight']);
      expect([...plain.grads.keys()]).toEqual(['model.embed_tokens.weight']);
      const [f, a] = [
        fused.grads.get('model.embed_tokens.weight')!,
        plain.grads.get('model.embed_tokens.weight')!,
      ];
      expect(bytes(f).equals(bytes(a))).toBe(true);
    }
  });

  it("trains LoRA adapters on every projection with autograd's loss and gradients, to the bit", () => {
    const cases: [Partial<LlamaConfig>, Rows, number][] = [
      [{}, 'weighted', 2],
      [{ nKvHeads: 2, tieEmbeddings: false, nLayers: 3 }, 'masked', 1],
      [{ nKvHeads: 1 }, 'plain', 2],
    ];
    for (const [extra, rows, rank] of cases) {
      configureBackend({ threads: 2 });
      const c = parseLlamaConfig({ ...base, ...extra });
      const model = new LlamaModel(c).initialize(3);
      selectTrainable(model, { kind: 'lora', rank, targets: [...LORA_TARGETS] }, 7);
      // B starts at zero; make it nonzero so every path of the adapters carries a gradient.
      for (const a of model.adapters.values()) a.b.data.forEach((_, i, d) => (d[i] = Math.sin(i + 1) * 0.05));
      expect(fusedStepUnsupported(model)).toBeNull();
      const adapterGrads = (run: () => number) => {
        for (const a of model.adapters.values()) a.a.grad = a.b.grad = null;
        const { loss, grads } = lossAndGrads(model, run);
        expect(grads.size).toBe(0);
        return { loss, grads: [...model.adapters.values()].flatMap((a) => [a.a.grad!, a.b.grad!]) };
      };
      for (const seqLen of [16, 10]) {
        const batch = batchOf(c, rows, seqLen);
        const fused = adapterGrads(() => fusedLossAndGradients(model, batch)!.loss);
        const plain = adapterGrads(() => autograd(model, batch));
        expect(fused.loss).toBe(plain.loss);
        expect(fused.grads).toHaveLength(2 * 7 * c.nLayers);
        fused.grads.forEach((g, i) =>
          expect(bytes(g).equals(bytes(plain.grads[i])), `adapter ${i}`).toBe(true),
        );
      }
    }
  });

  it('trains to the same weights as the autograd path, in one thread and across two workers', () => {
    configureBackend({ threads: 2 });
    const c = parseLlamaConfig(base);
    const train = (
      workers: number,
      fused: boolean,
      hooks?: HookSet,
      trainable: TrainableSpec = { kind: 'all' },
    ): Float32Array[] => {
      const before = process.env.PSM_FUSED_STEP;
      process.env.PSM_FUSED_STEP = fused ? '1' : '0';
      try {
        const model = new LlamaModel(c).initialize(5);
        const trainer = new Trainer(model, new TokenWindowSource(tokens(4096, c.vocabSize), 4, 16, 2), {
          schedule: { peakLr: 3e-3, minLr: 3e-4, warmupSteps: 1, totalSteps: 4 },
          trainable,
          seed: 2,
          workers,
          hooks,
        });
        trainer.run();
        const adapters = [...model.adapters.values()].flatMap((a) => [a.a, a.b]);
        return [...model.params.values(), ...adapters].map((p) => Float32Array.from(p.data));
      } finally {
        if (before === undefined) delete process.env.PSM_FUSED_STEP;
        else process.env.PSM_FUSED_STEP = before;
      }
    };
    for (const workers of [1, 2]) {
      const a = train(workers, true);
      const b = train(workers, false);
      a.forEach((w, i) => expect(bytes(w).equals(bytes(b[i]))).toBe(true));
    }
    // Under concept ablation between the blocks (one thread: hooks do not go to workers).
    const dirs = directions(c.dim, 2, 1);
    const hooks = new HookSet()
      .add('blocks.0.hook_resid_post', ablateDirectionsHook(dirs))
      .add('blocks.1.hook_resid_post', ablateDirectionsHook(dirs));
    const a = train(1, true, hooks);
    const b = train(1, false, hooks);
    a.forEach((w, i) => expect(bytes(w).equals(bytes(b[i]))).toBe(true));
    // LoRA adapters on every projection.
    const lora: TrainableSpec = { kind: 'lora', rank: 1, targets: [...LORA_TARGETS] };
    const la = train(1, true, undefined, lora);
    const lb = train(1, false, undefined, lora);
    expect(la).toHaveLength(b.length + 2 * 7 * c.nLayers);
    la.forEach((w, i) => expect(bytes(w).equals(bytes(lb[i]))).toBe(true));
  });

  const hookCases: [string, Partial<LlamaConfig>, Rows, (dim: number) => HookSet][] = [
    [
      'concept ablation after every block',
      { nLayers: 3 },
      'weighted',
      (dim) => {
        const h = new HookSet();
        for (let l = 0; l < 3; l++)
          h.add(`blocks.${l}.hook_resid_post`, ablateDirectionsHook(directions(dim, 3, l + 1)));
        return h;
      },
    ],
    [
      'steering added at one layer',
      {},
      'plain',
      (dim) => new HookSet().add('blocks.0.hook_resid_post', addVectorHook(directions(dim, 1, 2)[0], 4)),
    ],
    [
      'embedding and block-input hooks, a cap on some positions, untied',
      { tieEmbeddings: false, nKvHeads: 2 },
      'masked',
      (dim) =>
        new HookSet()
          .add('embed', addVectorHook(directions(dim, 1, 3)[0], 0.5))
          .add('blocks.0.hook_resid_pre', ablateDirectionsHook(directions(dim, 2, 4)))
          .add(
            'blocks.1.hook_resid_pre',
            capProjectionHook(directions(dim, 1, 5)[0], { max: 0.1 }, { positions: [2, 5] }),
          )
          .add('blocks.1.hook_resid_post', addVectorHook(directions(dim, 1, 6)[0], -1)),
    ],
  ];
  for (const [name, extra, rows, hooksOf] of hookCases) {
    it(`with hooks between blocks, gives autograd's loss and gradients to the bit: ${name}`, () => {
      configureBackend({ threads: 2 });
      const c = parseLlamaConfig({ ...base, ...extra });
      const model = new LlamaModel(c).initialize(4);
      const hooks = hooksOf(c.dim);
      expect(fusedStepUnsupported(model, hooks)).toBeNull();
      for (const seqLen of [16, 9]) {
        const batch = batchOf(c, rows, seqLen);
        const fused = lossAndGrads(model, () => fusedLossAndGradients(model, batch, hooks)!.loss);
        const plain = lossAndGrads(model, () => autograd(model, batch, hooks));
        expect(fused.loss).toBe(plain.loss);
        expect(fused.grads.size).toBe(model.params.size);
        for (const [k, g] of plain.grads) expect(bytes(fused.grads.get(k)!).equals(bytes(g)), k).toBe(true);
      }
    });
  }

  it('shows a recording hook between blocks the activation autograd shows it', () => {
    configureBackend({ threads: 2 });
    const c = parseLlamaConfig(base);
    const model = new LlamaModel(c).initialize(4);
    const batch = batchOf(c, 'plain');
    const seen: Float32Array[] = [];
    const hooks = new HookSet().add(
      'blocks.0.hook_resid_post',
      recordHook((x) => seen.push(x)),
    );
    const fused = lossAndGrads(model, () => fusedLossAndGradients(model, batch, hooks)!.loss);
    const plain = lossAndGrads(model, () => autograd(model, batch, hooks));
    expect(fused.loss).toBe(plain.loss);
    expect(seen).toHaveLength(2);
    expect(bytes(seen[0]).equals(bytes(seen[1]))).toBe(true);
  });

  it('leaves to autograd what it does not cover, changing nothing', () => {
    configureBackend({ threads: 2 });
    const c = parseLlamaConfig(base);
    const model = new LlamaModel(c).initialize(3);
    const batch = batchOf(c, 'plain');
    const hooks = new HookSet().add('blocks.0.hook_mlp_out', addVectorHook(new Float32Array(c.dim), 1));
    expect(fusedStepUnsupported(model, hooks)).toMatch(/hook blocks.0.hook_mlp_out acts inside a block/);
    expect(fusedLossAndGradients(model, batch, hooks)).toBeNull();

    const noLoss = { ...batch, weights: new Float32Array(batch.targets.length) };
    expect(fusedLossAndGradients(model, noLoss)).toBeNull();
    const outside = {
      ...batch,
      targets: Int32Array.from(batch.targets, (t, i) => (i === 4 ? c.vocabSize : t)),
    };
    expect(fusedLossAndGradients(model, outside)).toBeNull();
    expect([...model.params.values()].every((p) => p.grad === null)).toBe(true);

    const qwen = new LlamaModel(parseLlamaConfig({ ...base, qkvBias: true })).initialize(3);
    expect(fusedStepUnsupported(qwen)).toMatch(/qwen2/);
    model.addLora(2, ['q_proj'], 1);
    expect(fusedStepUnsupported(model)).toMatch(/LoRA adapters other than/);
  });
});
