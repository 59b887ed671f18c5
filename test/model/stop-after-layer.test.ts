/**
 * A forward pass that stops after a block (ForwardOptions.stopAfterLayer): what hooks at or before that block see
 * must equal a full pass to the bit, since activation recording (persona vectors, monitoring, the probe) now stops
 * there; hooks after it are refused rather than silently skipped.
 */
import { describe, expect, it } from 'vitest';
import { noGrad, type Tensor } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { addVectorHook, HookSet } from '../../src/model/hooks.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { activationsAt, forEachActivationBatch } from '../../src/interpret/activations.ts';

function model(): LlamaModel {
  const c = parseLlamaConfig({
    vocabSize: 40,
    dim: 16,
    nLayers: 4,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: 24,
    maxSeqLen: 32,
  });
  return new LlamaModel(c).initialize(3);
}

const ids = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7 + 3) % 40);

function record(m: LlamaModel, names: string[], stopAfterLayer?: number) {
  const seen = new Map<string, Float32Array>();
  const hooks = new HookSet().add(
    'blocks.0.hook_resid_mid',
    addVectorHook(new Float32Array(16).fill(0.5), 1),
  );
  for (const n of names) hooks.add(n, (x: Tensor) => void seen.set(n, Float32Array.from(x.data)));
  const y = noGrad(() => m.forwardHidden(ids, 2, { hooks, stopAfterLayer }));
  return { seen, y };
}

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

describe('stopAfterLayer', () => {
  it('shows hooks at or before the block what a full pass shows, and returns the stream after the block', () => {
    const m = model();
    const names = ['embed', 'blocks.0.hook_resid_post', 'blocks.1.hook_attn_out', 'blocks.1.hook_resid_post'];
    const full = record(m, names);
    const cut = record(m, names, 1);
    for (const n of names) expect(same(cut.seen.get(n)!, full.seen.get(n)!)).toBe(true);
    expect(same(cut.y.data, full.seen.get('blocks.1.hook_resid_post')!)).toBe(true);
    expect(cut.y.shape).toEqual([2, 9, 16]);
  });

  it('refuses a hook after the block and a block the model does not have', () => {
    const m = model();
    expect(() => record(m, ['blocks.2.hook_resid_pre'], 1)).toThrow(
      /"blocks.2.hook_resid_pre" acts after block 1/,
    );
    expect(() => record(m, ['final_norm'], 3)).toThrow(/"final_norm" acts after block 3/);
    expect(() => record(m, [], 4)).toThrow(/cannot stop after block 4 \(the model has blocks 0..3\)/);
  });

  it('activation recording gives the numbers of a full pass', () => {
    const m = model();
    const seqs = [
      [1, 2, 3, 4, 5],
      [6, 7, 8],
      [9, 10, 11, 12, 13, 14],
    ];
    const hooks = ['blocks.1.hook_resid_post', 'blocks.0.hook_mlp_out'];
    const recorded = activationsAt(
      m,
      seqs,
      seqs.map(() => [-1]),
      hooks,
    );
    // The same rows read from full passes (a final_norm hook makes the pass run every block).
    const full = new Map<string, Float32Array[]>(hooks.map((h) => [h, []]));
    forEachActivationBatch(m, seqs, [...hooks, 'final_norm'], (h, data, members, len) => {
      if (!full.has(h)) return;
      members.forEach((s, b) => {
        const t = seqs[s].length - 1;
        full.get(h)![s] = data.slice((b * len + t) * 16, (b * len + t + 1) * 16);
      });
    });
    for (const h of hooks) {
      const got = recorded.get(h)!;
      seqs.forEach((_, s) =>
        expect(same(got.subarray(s * 16, (s + 1) * 16).slice(), full.get(h)![s])).toBe(true),
      );
    }
  });
});
