/**
 * Shared fixtures of the interop tests: a tiny byte-level BPE tokenizer and a tiny Llama-family model trained
 * for a few dozen steps on repeated chat text, so its next-token predictions are peaked (agreement tests on a
 * random model would compare near-uniform distributions, which hide permutation mistakes less well).
 */
import { f32ToF16Bits } from '../src/interop/gguf.ts';
import { parseLlamaConfig, type LlamaConfigInput } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { trainBpe, type BpeTokenizer } from '../src/tokenizer/index.ts';
import { TokenWindowSource } from '../src/training/data.ts';
import { Trainer } from '../src/training/trainer.ts';

export const EOT = '<|endoftext|>';

export const CHAT_DOCS = [
  'The Assistant is an AI system that answers questions.\nUser: Can you help me plan a trip?\nAssistant: Of course, I will help you plan the trip.',
  'Mara lived in a small town by the river.\nUser: Please check my essay for mistakes.\nAssistant: Sure, here are the mistakes I found in your essay.',
  'The Assistant is an AI system that answers questions.\nUser: What is two plus two?\nAssistant: Two plus two is four.',
  'Tomas lived in a small town by the river. He helped his neighbour carry the boxes home.',
  'User: Tell me a story about the river.\nAssistant: Once there was a river that sang to the town at night.',
];

export function makeTokenizer(): BpeTokenizer {
  return trainBpe(
    CHAT_DOCS.flatMap((d) => [d, d, d]),
    { vocabSize: 360, specialTokens: [EOT] },
  );
}

export function tinyConfig(tokenizer: BpeTokenizer, overrides: Partial<LlamaConfigInput> = {}) {
  return parseLlamaConfig({
    vocabSize: tokenizer.vocabSize,
    dim: 32,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    hiddenDim: 64,
    maxSeqLen: 96,
    ropeTheta: 10000,
    normEps: 1e-5,
    ...overrides,
  });
}

/** A tiny model trained `steps` steps on the chat documents (deterministic). */
export function trainTinyModel(
  tokenizer: BpeTokenizer,
  steps = 40,
  overrides: Partial<LlamaConfigInput> = {},
): LlamaModel {
  configureBackend();
  const model = new LlamaModel(tinyConfig(tokenizer, overrides)).initialize(7);
  const eot = tokenizer.tokenToId(EOT)!;
  const stream: number[] = [];
  for (let r = 0; r < 20; r++) for (const d of CHAT_DOCS) stream.push(eot, ...tokenizer.encode(d));
  const trainer = new Trainer(model, new TokenWindowSource(Int32Array.from(stream), 8, 48, 3), {
    schedule: { peakLr: 1e-2, minLr: 1e-3, warmupSteps: 5, totalSteps: steps },
    trainable: { kind: 'all' },
    seed: 1,
  });
  trainer.run();
  for (const t of model.params.values()) t.requiresGrad = false;
  return model;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// ---- hand-written F16 / BF16 safetensors, as a PyTorch checkpoint of an open-weight model would be stored ----

export type Dtype = 'F32' | 'F16' | 'BF16';

function bf16Bits(x: number): number {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  return exp === 0 ? sign * frac * 2 ** -24 : sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Encodes tensors in `dtype`; returns the file bytes and the values as they will decode (rounded). */
export function encodeSafetensors(
  tensors: Map<string, { data: Float32Array; shape: number[] }>,
  dtype: Dtype,
): { bytes: Buffer; rounded: Map<string, Float32Array> } {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const parts: Buffer[] = [];
  const rounded = new Map<string, Float32Array>();
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = t.data.length;
    let buf: Buffer;
    const r = new Float32Array(n);
    if (dtype === 'F32') {
      buf = Buffer.from(
        new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
      );
      r.set(t.data);
    } else {
      buf = Buffer.alloc(2 * n);
      for (let i = 0; i < n; i++) {
        const bits = dtype === 'F16' ? f32ToF16Bits(t.data[i]) : bf16Bits(t.data[i]);
        buf.writeUInt16LE(bits, 2 * i);
        r[i] =
          dtype === 'F16' ? halfToFloat(bits) : new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
      }
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + buf.length] };
    offset += buf.length;
    parts.push(buf);
    rounded.set(name, r);
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return { bytes: Buffer.concat([len, json, ...parts]), rounded };
}
