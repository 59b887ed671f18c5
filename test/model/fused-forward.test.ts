import { describe, expect, it } from 'vitest';
import { noGrad, Tensor } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig, type LlamaConfig } from '../../src/model/config.ts';
import { fusedGraphUnsupported, fusedHidden, fusedPrompts } from '../../src/model/fused-forward.ts';
import {
  ablateDirectionsHook,
  addVectorHook,
  capProjectionHook,
  HookSet,
  recordHook,
} from '../../src/model/hooks.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { ortAvailable } from '../../src/tensor/ort-matmul.ts';

const base = { vocabSize: 61, dim: 32, nLayers: 2, nHeads: 4, nKvHeads: 4, hiddenDim: 64, maxSeqLen: 24 };

function ids(n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 37 + 11) % vocab);
}

/** `fn` on the per-kernel path (the fused forward switched off). */
function perKernel<T>(fn: () => T): T {
  process.env.PSM_FUSED_FORWARD = '0';
  try {
    return fn();
  } finally {
    delete process.env.PSM_FUSED_FORWARD;
  }
}

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

describe.runIf(ortAvailable())('fused forward', () => {
  const cases: [string, Partial<LlamaConfig>, number][] = [
    ['multi-head, tied, 2 threads', {}, 2],
    ['grouped-query, untied, 1 thread', { nKvHeads: 2, tieEmbeddings: false }, 1],
  ];
  for (const [name, extra, threads] of cases) {
    it(`gives the per-kernel path's hidden states and logits to the bit: ${name}`, () => {
      configureBackend({ threads });
      const model = new LlamaModel(parseLlamaConfig({ ...base, ...extra })).initialize(4);
      for (const [batch, t] of [
        [3, 17],
        [1, 24],
      ]) {
        const x = ids(batch * t, base.vocabSize);
        expect(fusedHidden(model, x, batch)).not.toBeNull();
        const fused = noGrad(() => model.forward(x, batch));
        const plain = perKernel(() => noGrad(() => model.forward(x, batch)));
        expect(fused.shape).toEqual(plain.shape);
        expect(bytes(fused.data).equals(bytes(plain.data))).toBe(true);
      }
    });
  }

  it('runs hooks between blocks as the per-kernel path does, stopping where it stops, to the bit', () => {
    configureBackend({ threads: 2 });
    const model = new LlamaModel(parseLlamaConfig({ ...base, nLayers: 3 })).initialize(4);
    const dir = (salt: number): Float32Array =>
      Float32Array.from(
        { length: base.dim },
        (_, i) => Math.sin((i + 1) * salt * 0.41) + (i === salt ? 1 : 0),
      );
    const x = ids(3 * 13, base.vocabSize);
    const runs: [string, number | undefined][] = [
      ['whole pass', undefined],
      ['stop after block 1', 1],
    ];
    for (const [what, stop] of runs) {
      // Each run records what its hooks saw; both paths must show them the same activations.
      const hooksOf = (seen: Float32Array[]): HookSet => {
        const hooks = new HookSet()
          .add('embed', addVectorHook(dir(1), 0.5))
          .add('blocks.0.hook_resid_post', ablateDirectionsHook([dir(2), dir(3)]))
          .add('blocks.1.hook_resid_pre', capProjectionHook(dir(4), { max: 0.2 }, { positions: [1, 4] }))
          .add(
            'blocks.1.hook_resid_post',
            recordHook((a) => seen.push(a)),
          );
        if (stop === undefined) hooks.add('blocks.2.hook_resid_post', addVectorHook(dir(5), -2));
        return hooks;
      };
      expect(fusedHidden(model, x, 3, { hooks: hooksOf([]), stopAfterLayer: stop })).not.toBeNull();
      const pass = (): { y: Float32Array; seen: Float32Array[] } => {
        const seen: Float32Array[] = [];
        const hooks = hooksOf(seen);
        const y = noGrad(() => model.forwardHidden(x, 3, { hooks, stopAfterLayer: stop })).data;
        return { y, seen };
      };
      const fused = pass();
      const plain = perKernel(pass);
      expect(bytes(fused.y).equals(bytes(plain.y)), what).toBe(true);
      expect(fused.seen).toHaveLength(1);
      expect(bytes(fused.seen[0]).equals(bytes(plain.seen[0])), what).toBe(true);
    }
    // A hook inside a block is the per-kernel path's.
    const inside = new HookSet().add('blocks.0.hook_mlp_out', addVectorHook(dir(1), 1));
    expect(fusedHidden(model, x, 3, { hooks: inside })).toBeNull();
  });

  it('scores a padded prompt batch and its branches as the per-kernel path does, hooks or none, to the bit', () => {
    configureBackend({ threads: 2 });
    for (const extra of [{}, { nKvHeads: 2, tieEmbeddings: false, nLayers: 3 }]) {
      const c = parseLlamaConfig({ ...base, ...extra });
      const model = new LlamaModel(c).initialize(5);
      const dir = Float32Array.from({ length: c.dim }, (_, i) => Math.cos(i * 0.7));
      const [b, promptLen, branches, branchLen] = [3, 9, 2, 4];
      const padding = Int32Array.of(0, 3, 5);
      const prompts = ids(b * promptLen, c.vocabSize);
      const conts = ids(b * branches * branchLen, c.vocabSize).map((x) => (x * 3 + 1) % c.vocabSize);
      for (const hooked of [false, true]) {
        const pass = () => {
          const seen: Float32Array[] = [];
          const hooks = hooked
            ? new HookSet()
                .add(
                  'blocks.0.hook_resid_post',
                  addVectorHook(dir, 0.7, { positions: [-1], lengths: [9, 6, 4] }),
                )
                .add(
                  'blocks.1.hook_resid_pre',
                  recordHook((a) => seen.push(a)),
                )
            : undefined;
          return noGrad(() => {
            const { hidden, cache } = model.forwardPrompts(prompts, b, { padding, hooks });
            const branch = model.forwardBranches(conts, cache, branchLen, { hooks });
            return { hidden: hidden.data, keys: cache.keys, values: cache.values, branch: branch.data, seen };
          });
        };
        const fused = pass();
        const plain = perKernel(pass);
        const what = `${JSON.stringify(extra)} hooks ${hooked}`;
        expect(bytes(fused.hidden).equals(bytes(plain.hidden)), what).toBe(true);
        expect(bytes(fused.branch).equals(bytes(plain.branch)), what).toBe(true);
        for (let i = 0; i < c.nLayers; i++) {
          expect(bytes(fused.keys[i]!).equals(bytes(plain.keys[i]!)), `${what} keys ${i}`).toBe(true);
          expect(bytes(fused.values[i]!).equals(bytes(plain.values[i]!)), `${what} values ${i}`).toBe(true);
        }
        expect(fused.seen.map(bytes)).toEqual(plain.seen.map(bytes));
        expect(fused.seen).toHaveLength(hooked ? 2 : 0);
      }
      expect(
        fusedPrompts(model, prompts, b, { padding, mask: new Float32Array(b * promptLen ** 2) }),
      ).not.toBeNull();

      // Resumed after block 0 from a recorded residual stream, steered there (as a steering scan rescores a trace).
      const record = (): { prompt: Tensor; branch: Tensor } => {
        const out: Partial<{ prompt: Tensor; branch: Tensor }> = {};
        const at = 'blocks.0.hook_resid_post';
        noGrad(() => {
          const { cache } = model.forwardPrompts(prompts, b, {
            padding,
            hooks: new HookSet().add(at, (x) => void (out.prompt = new Tensor(x.data.slice(), x.shape))),
          });
          model.forwardBranches(conts, cache, branchLen, {
            hooks: new HookSet().add(at, (x) => void (out.branch = new Tensor(x.data.slice(), x.shape))),
          });
        });
        return out as { prompt: Tensor; branch: Tensor };
      };
      const resumed = (): Float32Array[] => {
        const { prompt, branch } = record();
        const hooks = new HookSet().add('blocks.0.hook_resid_post', addVectorHook(dir, 1.5));
        return noGrad(() => {
          const p = model.forwardPrompts(prompts, b, {
            padding,
            hooks,
            resume: { afterLayer: 0, hidden: prompt },
          });
          const y = model.forwardBranches(conts, p.cache, branchLen, {
            hooks,
            resume: { afterLayer: 0, hidden: branch },
          });
          return [p.hidden.data, y.data, ...p.cache.keys.slice(1).map((k) => k!)];
        });
      };
      const fusedResumed = resumed();
      const plainResumed = perKernel(resumed);
      expect(fusedResumed).toHaveLength(2 + c.nLayers - 1);
      plainResumed.forEach((a, i) =>
        expect(bytes(fusedResumed[i]).equals(bytes(a)), `resumed ${i}`).toBe(true),
      );
      const zeros = new Tensor(new Float32Array(b * promptLen * c.dim), [b, promptLen, c.dim]);
      expect(() =>
        noGrad(() =>
          model.forwardPrompts(prompts, b, {
            padding,
            hooks: new HookSet().add('embed', addVectorHook(dir, 1)),
            resume: { afterLayer: 0, hidden: zeros },
          }),
        ),
      ).toThrow(/acts before the point the pass resumes from/);
    }
  });

  it('leaves gradients, other architectures and bad ids to the per-kernel path', () => {
    configureBackend({ threads: 2 });
    const model = new LlamaModel(parseLlamaConfig(base)).initialize(4);
    // With gradients on, the pass records its graph (a parameter needs a gradient).
    expect(model.forward(ids(8, base.vocabSize), 1).requiresGrad).toBe(true);
    expect(() => noGrad(() => model.forwardHidden(Int32Array.of(1, base.vocabSize), 1))).toThrow(/outside/);
    expect(fusedHidden(model, Int32Array.of(1, -1), 1)).toBeNull();
    const qwen = new LlamaModel(parseLlamaConfig({ ...base, qkvBias: true })).initialize(4);
    expect(fusedGraphUnsupported(qwen)).toMatch(/qwen2/);
    expect(fusedHidden(qwen, ids(8, base.vocabSize), 1)).toBeNull();
  });
});
