import { describe, expect, it } from 'vitest';
import { noGrad } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig, type LlamaConfig } from '../../src/model/config.ts';
import { fusedGraphUnsupported, fusedHidden } from '../../src/model/fused-forward.ts';
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
