/**
 * Batched prompts and their continuations (LlamaModel.forwardPrompts + forwardBranches, and the scorer built on
 * them): every row must equal a plain forward of that one sequence, on both matmul backends, with left padding,
 * grouped-query attention, sliding windows, hooks that select positions, and passes resumed after a block.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { noGrad, Tensor } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { addVectorHook, HookSet } from '../../src/model/hooks.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { promptBatches, scoreContinuations, scorePromptBatch } from '../../src/model/score.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { logSoftmaxRow } from '../../src/tensor/kernels.ts';
import { caseConfig, randomModel } from '../architecture-fixtures.ts';

afterAll(() => configureBackend());

const prompts = [
  [1, 2, 3, 4, 5, 6, 7],
  [9, 8],
  [4, 4, 4, 4, 2],
];
const continuations = [[10, 11, 12], [13], [16, 17, 18, 19], [20, 21]];

function llama(): LlamaModel {
  const c = parseLlamaConfig({
    vocabSize: 50,
    dim: 32,
    nLayers: 3,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: 48,
    maxSeqLen: 40,
  });
  return new LlamaModel(c).initialize(5);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Runs every prompt (left-padded) and every continuation after each; checks each row against a plain forward. */
function checkAgainstPlain(model: LlamaModel, hooks?: HookSet): void {
  const dim = model.config.dim;
  const P = Math.max(...prompts.map((p) => p.length));
  const C = Math.max(...continuations.map((c) => c.length));
  const W = continuations.length;
  const B = prompts.length;
  noGrad(() => {
    const ids = new Int32Array(B * P);
    const padding = new Int32Array(B);
    prompts.forEach((p, b) => {
      padding[b] = P - p.length;
      ids.set(p, b * P + padding[b]);
    });
    const { hidden, cache } = model.forwardPrompts(ids, B, { padding, hooks });
    const branchIds = new Int32Array(B * W * C);
    for (let b = 0; b < B; b++) continuations.forEach((c, w) => branchIds.set(c, (b * W + w) * C));
    const branches = model.forwardBranches(branchIds, cache, C, { hooks });
    prompts.forEach((p, b) => {
      const alone = model.forwardHidden(Int32Array.from(p), 1, { hooks }).data;
      const row = (t: number) =>
        hidden.data.subarray((b * P + padding[b] + t) * dim, (b * P + padding[b] + t + 1) * dim);
      for (let t = 0; t < p.length; t++)
        expect(maxAbsDiff(row(t), alone.subarray(t * dim, (t + 1) * dim))).toBeLessThan(1e-5);
      continuations.forEach((c, w) => {
        const full = model.forwardHidden(Int32Array.from([...p, ...c]), 1, { hooks }).data;
        for (let j = 0; j < c.length; j++) {
          const got = branches.data.subarray(((b * W + w) * C + j) * dim, ((b * W + w) * C + j + 1) * dim);
          const want = full.subarray((p.length + j) * dim, (p.length + j + 1) * dim);
          expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
        }
      });
    });
  });
}

describe('prompts and their continuations in batches', () => {
  for (const backend of ['ort', 'js'] as const) {
    it(`each row equals the sequence run alone (${backend} backend)`, () => {
      configureBackend({ backend, threads: 1 });
      checkAgainstPlain(llama());
    });
  }

  it('keeps sliding-window layers to their window (Gemma 3)', () => {
    configureBackend({ threads: 1 });
    checkAgainstPlain(randomModel(caseConfig('gemma3Scaled', 50), 7));
  });

  it("gives hooks each sequence's own positions, left padding not counted", () => {
    configureBackend({ threads: 1 });
    const model = llama();
    const push = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i));
    // Position 3 of every sequence, and the last position of the seven-token prompt plus two.
    const hooks = new HookSet()
      .add('blocks.0.hook_resid_post', addVectorHook(push, 2, { positions: [3] }))
      .add(
        'blocks.1.hook_resid_mid',
        addVectorHook(push, -1, (_b, pos) => pos === 8),
      );
    checkAgainstPlain(model, hooks);
  });

  it('a pass resumed after a block gives the numbers of the full pass', () => {
    configureBackend({ threads: 1 });
    const model = llama();
    const list = prompts.map((prompt) => ({ prompt, continuations }));
    const [batch] = promptBatches(list, 10_000);
    const dim = model.config.dim;
    noGrad(() => {
      const saved: { prompt?: Float32Array; branches?: Float32Array } = {};
      const record = (key: 'prompt' | 'branches') =>
        new HookSet().add('blocks.1.hook_resid_post', (x: Tensor) => {
          saved[key] = x.data.slice();
        });
      const full = scorePromptBatch(model, batch, list, {
        hooks: { prompt: record('prompt'), branches: record('branches') },
      });
      const push = Float32Array.from({ length: dim }, (_, i) => Math.cos(i));
      const steer = () => new HookSet().add('blocks.1.hook_resid_post', addVectorHook(push, 3));
      const steered = scorePromptBatch(model, batch, list, { hooks: { prompt: steer(), branches: steer() } });
      const resumed = scorePromptBatch(model, batch, list, {
        hooks: { prompt: steer(), branches: steer() },
        resume: { afterLayer: 1, prompt: saved.prompt!, branches: saved.branches! },
      });
      expect(maxAbsDiff(resumed.flat(2), steered.flat(2))).toBeLessThan(1e-5);
      expect(maxAbsDiff(steered.flat(2), full.flat(2))).toBeGreaterThan(1e-3);
    });
  });

  it('scoreContinuations with shared prompts equals log-probabilities from plain forwards', () => {
    configureBackend({ threads: 1 });
    const model = llama();
    const requests = prompts.flatMap((prompt) =>
      continuations.map((continuation) => ({ prompt, continuation })),
    );
    // A small budget: several batches, of one prompt each.
    for (const tokensPerBatch of [8, 4096]) {
      const scored = scoreContinuations(model, requests, { tokensPerBatch });
      noGrad(() => {
        requests.forEach((r, i) => {
          const logits = model.forward(Int32Array.from([...r.prompt, ...r.continuation]), 1).data;
          const logp = new Float32Array(50);
          const want = r.continuation.map((tok, j) => {
            logSoftmaxRow(logits, (r.prompt.length - 1 + j) * 50, 50, logp);
            return logp[tok];
          });
          expect(maxAbsDiff(scored[i].tokenLogprobs, want)).toBeLessThan(1e-5);
        });
      });
    }
  });

  it('never batches a short prompt with a long continuation beside prompts it would push past the context', () => {
    configureBackend({ threads: 1 });
    const model = llama();
    // Each fits the 40-position context alone; padded to the long prompt, the long continuation would not.
    const requests = [
      { prompt: Array.from({ length: 36 }, (_, i) => 1 + (i % 40)), continuation: [3, 4] },
      { prompt: Array.from({ length: 36 }, (_, i) => 2 + (i % 40)), continuation: [5] },
      { prompt: [7, 8], continuation: Array.from({ length: 30 }, (_, i) => 10 + i) },
      { prompt: [7, 8], continuation: Array.from({ length: 20 }, (_, i) => 11 + i) },
    ];
    const scored = scoreContinuations(model, [...requests, ...requests]);
    noGrad(() => {
      requests.forEach((r, i) => {
        const logits = model.forward(Int32Array.from([...r.prompt, ...r.continuation]), 1).data;
        const logp = new Float32Array(50);
        const want = r.continuation.reduce((acc, tok, j) => {
          logSoftmaxRow(logits, (r.prompt.length - 1 + j) * 50, 50, logp);
          return acc + logp[tok];
        }, 0);
        expect(Math.abs(scored[i].logprob - want)).toBeLessThan(1e-4);
      });
    });
  });

  it('refuses a padding that leaves a sequence empty and continuations past the context', () => {
    configureBackend({ threads: 1 });
    const model = llama();
    noGrad(() => {
      expect(() => model.forwardPrompts(new Int32Array(6), 2, { padding: Int32Array.from([0, 3]) })).toThrow(
        /padding/,
      );
      const { cache } = model.forwardPrompts(new Int32Array(30), 1);
      expect(() => model.forwardBranches(new Int32Array(11), cache, 11)).toThrow(/maxSeqLen/);
      expect(() => model.forwardBranches(new Int32Array(7), cache, 2)).toThrow(/split/);
    });
  });
});
