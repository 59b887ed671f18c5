/**
 * The interpretation's choice scorer (scoring.ts) batches items: left-padded prompts, every wording of every item
 * side by side after them. Each item's numbers must be those of scoring it alone: P(good) and the option set's log
 * mass from plain forwards of each prompt + wording, the last prompt token's activation, under hooks, per-item
 * hooks, in batches of any size, and rescored from a trace.
 */
import { describe, expect, it } from 'vitest';
import { noGrad, type Tensor } from '../../src/autograd/tensor.ts';
import { logSumExp } from '../../src/measurement/stats.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { addVectorHook, capProjectionHook, HookSet } from '../../src/model/hooks.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { scoreChoicesShared, scoreFromTrace, traceChoices } from '../../src/interpret/scoring.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { logSoftmaxRow } from '../../src/tensor/kernels.ts';

configureBackend({ threads: 1 });

const VOCAB = 64;
const model = new LlamaModel(
  parseLlamaConfig({
    vocabSize: VOCAB,
    dim: 32,
    nLayers: 3,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: 48,
    maxSeqLen: 128,
  }),
).initialize(11);
/** One token per character. */
const tokenizer = { encode: (text: string) => Array.from(text, (ch) => ch.charCodeAt(0) % VOCAB) };

const items = [
  {
    prompt: 'The user asks: did you check it?',
    good: [' I did not.', ' No, sorry.'],
    bad: [' Yes, all of it.'],
  },
  { prompt: 'Hi', good: [' ok'], bad: [' no', ' never again', ' x'] },
  {
    prompt: 'A much longer story about a character who showed the trait in two earlier scenes. Then:',
    good: [' she told the truth', ' honest'],
    bad: [' she lied', ' made it up', ' blamed Kele'],
  },
  { prompt: 'Q', good: ['a'], bad: ['b'] },
];

/** P(good), log mass and the last prompt token at a hook, each item and wording run alone through plain forwards. */
function alone(hooks?: HookSet, recordHook?: string) {
  const dim = model.config.dim;
  return noGrad(() =>
    items.map((it) => {
      const prompt = tokenizer.encode(it.prompt);
      const totals = [...it.good, ...it.bad].map((w) => {
        const cont = tokenizer.encode(w);
        const logits = model.forward(Int32Array.from([...prompt, ...cont]), 1, { hooks }).data;
        const logp = new Float32Array(VOCAB);
        return cont.reduce((s, tok, j) => {
          logSoftmaxRow(logits, (prompt.length - 1 + j) * VOCAB, VOCAB, logp);
          return s + logp[tok];
        }, 0);
      });
      const lg = logSumExp(totals.slice(0, it.good.length));
      const lb = logSumExp(totals.slice(it.good.length));
      let last: Float32Array | null = null;
      if (recordHook) {
        const rec = new HookSet();
        if (hooks) for (const name of hooks.names()) rec.add(name, (x, ctx) => hooks.apply(name, x, ctx));
        rec.add(recordHook, (x: Tensor) => {
          last = x.data.slice((prompt.length - 1) * dim, prompt.length * dim);
        });
        model.forwardHidden(Int32Array.from(prompt), 1, { hooks: rec });
      }
      return { pGood: 1 / (1 + Math.exp(lb - lg)), logMass: logSumExp([lg, lb]), last };
    }),
  );
}

const push = Float32Array.from({ length: 32 }, (_, i) => Math.sin(1 + i));
const steering = () => new HookSet().add('blocks.1.hook_resid_post', addVectorHook(push, 2));

describe('batched choice scoring', () => {
  for (const tokensPerBatch of [1, 60, 4096]) {
    it(`equals each item scored alone, in batches of up to ${tokensPerBatch} tokens`, () => {
      for (const hooks of [undefined, steering()]) {
        const want = alone(hooks, 'blocks.2.hook_resid_mid');
        const got = scoreChoicesShared(model, tokenizer, items, {
          hooks,
          record: ['blocks.2.hook_resid_mid'],
          tokensPerBatch,
        });
        want.forEach((w, i) => {
          expect(Math.abs(got.pGood[i] - w.pGood)).toBeLessThan(1e-5);
          expect(Math.abs(got.logMass[i] - w.logMass)).toBeLessThan(1e-4);
          const row = got.lastToken.get('blocks.2.hook_resid_mid')!.subarray(i * 32, (i + 1) * 32);
          row.forEach((x, j) => expect(Math.abs(x - w.last![j])).toBeLessThan(1e-5));
        });
      }
    });
  }

  it('gives each item its own hooks when asked per item', () => {
    const capped = new HookSet().add('blocks.0.hook_resid_post', capProjectionHook(push, { min: 0.5 }));
    const got = scoreChoicesShared(model, tokenizer, items, {
      hooks: (i) => (i % 2 === 0 ? capped : undefined),
    });
    const withCap = alone(capped);
    const plain = alone();
    got.pGood.forEach((p, i) =>
      expect(Math.abs(p - (i % 2 === 0 ? withCap : plain)[i].pGood)).toBeLessThan(1e-5),
    );
  });

  it('rescoring from a trace equals scoring under the same hooks', () => {
    const trace = traceChoices(model, tokenizer, items, { tokensPerBatch: 80 });
    const plain = scoreChoicesShared(model, tokenizer, items);
    trace.base.pGood.forEach((p, i) => expect(Math.abs(p - plain.pGood[i])).toBeLessThan(1e-6));
    const steered = scoreChoicesShared(model, tokenizer, items, { hooks: steering() });
    const resumed = scoreFromTrace(model, trace, 1, steering());
    resumed.pGood.forEach((p, i) => {
      expect(Math.abs(p - steered.pGood[i])).toBeLessThan(1e-5);
      expect(Math.abs(resumed.logMass[i] - steered.logMass[i])).toBeLessThan(1e-4);
    });
    // The push moves the numbers: the comparison above is not of two unsteered passes.
    expect(Math.max(...steered.pGood.map((p, i) => Math.abs(p - plain.pGood[i])))).toBeGreaterThan(1e-3);
  });
});
