import { describe, expect, it } from 'vitest';
import { noGrad } from '../../src/autograd/tensor.ts';
import { parseLlamaConfig, type LlamaConfig } from '../../src/model/config.ts';
import { fusedGraphUnsupported, fusedHidden } from '../../src/model/fused-forward.ts';
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
