import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { halfToFloatTable } from '../src/io/safetensors.ts';
import { describe, expect, it } from 'vitest';
import { noGrad } from '../src/autograd/tensor.ts';
import {
  f32ToF16Bits,
  GgufValueType,
  ggufConfig,
  ggufContents,
  ggufTensorData,
  ggufToModel,
  ggufTokenizer,
  parseGguf,
  permuteForGguf,
  readGgufFile,
  serializeGguf,
  str,
  u32,
  unpermuteFromGguf,
  writeGgufFile,
  type GgufValue,
} from '../src/interop/gguf.ts';
import { PSM_CHAT_TEMPLATE } from '../src/interop/chat-template.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { CHAT_DOCS, EOT, makeTokenizer, maxAbsDiff, tinyConfig } from './interop-fixtures.ts';

const tokenizer = makeTokenizer();

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'psm-gguf-'));
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks));
}

function randomModel(overrides = {}, seed = 5): LlamaModel {
  const m = new LlamaModel(tinyConfig(tokenizer, overrides)).initialize(seed);
  // Non-trivial norms and biases so a mix-up between tensors cannot go unnoticed.
  let k = 0;
  for (const [name, t] of m.params)
    if (name.endsWith('norm.weight') || name.endsWith('.bias'))
      for (let i = 0; i < t.size; i++) t.data[i] = 1 + 0.01 * ((k++ % 17) - 8);
  return m;
}

describe('GGUF writer', () => {
  it('writes a v3 file with llama metadata, the tokenizer and llama.cpp tensor names', () => {
    const file = path.join(tmp(), 'm.gguf');
    const model = randomModel();
    const size = writeGgufFile(file, model, tokenizer, { name: 'tiny' });
    expect(fs.statSync(file).size).toBe(size);
    const g = readGgufFile(file);
    expect(g.version).toBe(3);
    const meta = (k: string) => g.metadata.get(k)?.value;
    expect(meta('general.architecture')).toBe('llama');
    expect(meta('general.name')).toBe('tiny');
    expect(meta('llama.embedding_length')).toBe(32);
    expect(meta('llama.block_count')).toBe(2);
    expect(meta('llama.attention.head_count')).toBe(4);
    expect(meta('llama.attention.head_count_kv')).toBe(2);
    expect(meta('llama.feed_forward_length')).toBe(64);
    expect(meta('llama.context_length')).toBe(96);
    expect(meta('llama.rope.dimension_count')).toBe(8);
    expect(meta('llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-5, 10);
    expect(meta('tokenizer.ggml.model')).toBe('gpt2');
    expect(meta('tokenizer.ggml.pre')).toBe('gpt-2');
    expect((meta('tokenizer.ggml.tokens') as string[]).length).toBe(tokenizer.vocabSize);
    expect((meta('tokenizer.ggml.token_type') as number[])[0]).toBe(3); // <|endoftext|> is a control token
    expect(meta('tokenizer.ggml.bos_token_id')).toBe(tokenizer.tokenToId(EOT));
    expect(meta('tokenizer.ggml.eos_token_id')).toBe(tokenizer.tokenToId(EOT));
    expect(meta('tokenizer.chat_template')).toBe(PSM_CHAT_TEMPLATE);
    const names = g.tensors.map((t) => t.name);
    expect(names).toContain('token_embd.weight');
    expect(names).toContain('blk.1.attn_q.weight');
    expect(names).toContain('blk.0.ffn_down.weight');
    expect(names).toContain('output_norm.weight');
    expect(names).not.toContain('output.weight'); // tied
    const q = g.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(q.dims).toEqual([32, 32]);
    const k = g.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!;
    expect(k.dims).toEqual([32, 16]); // ggml order: [in, out]
    for (const t of g.tensors) expect((g.dataOffset + t.offset) % 32).toBe(0);
  });

  it('reads back exactly what it wrote: config, weights (q/k un-permuted) and tokenizer', () => {
    for (const overrides of [{}, { tieEmbeddings: false }, { qkvBias: true, tieEmbeddings: false }]) {
      const model = randomModel(overrides);
      const file = path.join(tmp(), 'm.gguf');
      writeGgufFile(file, model, tokenizer);
      const g = readGgufFile(file);
      expect(g.metadata.get('general.architecture')?.value).toBe(model.config.qkvBias ? 'qwen2' : 'llama');
      expect(ggufConfig(g)).toEqual(model.config);
      const back = ggufToModel(g);
      for (const [name, t] of model.params)
        expect(Buffer.from(back.param(name).data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
      const tok = ggufTokenizer(g).tokenizer!;
      for (const d of CHAT_DOCS) expect(tok.encode(`${EOT}${d}`)).toEqual(tokenizer.encode(`${EOT}${d}`));
    }
  });

  it('permutes q/k rows from rotate-half to interleaved pairs, as convert_hf_to_gguf.py does', () => {
    // One head of size 8 with one column: HF rows [0..7] pair (0,4) (1,5) (2,6) (3,7); llama.cpp pairs (0,1) (2,3) ...
    const data = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...permuteForGguf(data, 8, 1, 1)]).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    const rows = 4 * 8;
    const big = Float32Array.from({ length: rows * 3 }, (_, i) => i);
    expect([...unpermuteFromGguf(permuteForGguf(big, rows, 3, 4), rows, 3, 4)]).toEqual([...big]);
  });

  it('pads the vocabulary with unused tokens when the model is wider than the tokenizer', () => {
    const model = randomModel({ vocabSize: tokenizer.vocabSize + 8 });
    const file = path.join(tmp(), 'm.gguf');
    writeGgufFile(file, model, tokenizer);
    const g = readGgufFile(file);
    const tokens = g.metadata.get('tokenizer.ggml.tokens')!.value as string[];
    expect(tokens.length).toBe(tokenizer.vocabSize + 8);
    expect(tokens[tokens.length - 1]).toBe(`[PAD${tokenizer.vocabSize + 7}]`);
    expect(ggufTokenizer(g).tokenizer!.vocabSize).toBe(tokenizer.vocabSize);
    expect(() =>
      writeGgufFile(file, new LlamaModel(tinyConfig(tokenizer, { vocabSize: 300 })), tokenizer),
    ).toThrow(/tokenizer has 360 tokens/);
  });

  it('F16 export halves the matrices with round-to-nearest-even and keeps norms F32', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(2 ** -24)).toBe(1);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie rounds to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    const model = randomModel();
    const file = path.join(tmp(), 'm16.gguf');
    writeGgufFile(file, model, tokenizer, { dtype: 'F16' });
    const g = readGgufFile(file);
    expect(g.metadata.get('general.file_type')?.value).toBe(1);
    expect(g.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!.type).toBe(1);
    expect(g.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')!.type).toBe(0);
    const back = ggufToModel(g);
    const w = model.param('model.layers.0.mlp.up_proj.weight').data;
    expect(maxAbsDiff(back.param('model.layers.0.mlp.up_proj.weight').data, w)).toBeLessThan(1e-4);
    expect(ggufTensorData(g, 'token_embd.weight').length).toBe(tokenizer.vocabSize * 32);
  });

  it('keeps the model computing the same function through write and read', () => {
    const model = randomModel({ tieEmbeddings: false });
    const file = path.join(tmp(), 'm.gguf');
    writeGgufFile(file, model, tokenizer);
    const back = ggufToModel(readGgufFile(file));
    const ids = Int32Array.from(tokenizer.encode(CHAT_DOCS[0]).slice(0, 20));
    noGrad(() =>
      expect(maxAbsDiff(back.forward(ids, 1).data, model.forward(ids, 1).data)).toBeLessThan(1e-6),
    );
  });
});

describe('GGUF reader: bad input gets a clear error', () => {
  const model = randomModel();
  const { metadata, tensors } = ggufContents(model, tokenizer);
  const good = concat(serializeGguf(metadata, tensors));
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  // Offset of the first tensor info: after the header and all metadata.
  const headerOnly = (meta: Map<string, GgufValue>) => concat(serializeGguf(meta, []));

  it('accepts the well-formed file', () => {
    expect(parseGguf(good, 'good.gguf').tensors.length).toBe(tensors.length);
  });

  it('rejects a file that is not GGUF, or of an unknown version', () => {
    expect(() => parseGguf(new Uint8Array(2), 'x.gguf')).toThrow(/x\.gguf: truncated/);
    expect(() => parseGguf(Buffer.from('PK\x03\x04 not a gguf file at all, just bytes'), 'x.zip')).toThrow(
      /not a GGUF file/,
    );
    const v1 = good.slice();
    view(v1).setUint32(4, 1, true);
    expect(() => parseGguf(v1, 'v1.gguf')).toThrow(/version 1 is not supported/);
  });

  it('rejects truncation anywhere, naming the file', () => {
    for (const cut of [10, 30, 200, 5000, Math.floor(good.length / 2), good.length - 1]) {
      expect(() => parseGguf(good.subarray(0, cut), 'cut.gguf'), `cut at ${cut}`).toThrow(
        /cut\.gguf: .*(truncated|beyond|needs)/,
      );
    }
  });

  it('rejects lying counts without allocating for them', () => {
    const bad = good.slice();
    view(bad).setBigUint64(8, 10n ** 15n, true); // tensor count
    expect(() => parseGguf(bad, 'lie.gguf')).toThrow(/tensor count .* is 1000000000000000, but only/);
    const bad2 = good.slice();
    view(bad2).setBigUint64(16, 2n ** 60n, true); // metadata count
    expect(() => parseGguf(bad2, 'lie.gguf')).toThrow(/metadata entry count/);
    // A string length (the first key's) that runs past the end.
    const bad3 = good.slice();
    view(bad3).setBigUint64(24, 2n ** 40n, true);
    expect(() => parseGguf(bad3, 'lie.gguf')).toThrow(/metadata key #0 length .* only \d+ bytes follow/);
    // An array count that cannot fit: the token list.
    const meta = new Map(metadata);
    meta.set('tokenizer.ggml.tokens', {
      type: GgufValueType.ARRAY,
      elementType: GgufValueType.STRING,
      value: ['a', 'b'],
    });
    const small = headerOnly(meta);
    const idx =
      Buffer.from(small).indexOf(Buffer.from('tokenizer.ggml.tokens')) + 'tokenizer.ggml.tokens'.length + 8;
    view(small).setBigUint64(idx, 10n ** 12n, true);
    expect(() => parseGguf(small, 'arr.gguf')).toThrow(/array count .* only \d+ bytes follow/);
  });

  it('rejects lying tensor offsets, sizes, types and overlaps', () => {
    // Find and corrupt the offset field of the last tensor info: it sits just before the data section padding.
    const file = parseGguf(good, 'good.gguf');
    const last = file.tensors[file.tensors.length - 1];
    const nameAt = Buffer.from(good).lastIndexOf(Buffer.from(last.name));
    const offsetAt = nameAt + last.name.length + 4 + 8 * last.dims.length + 4;
    const bad = good.slice();
    view(bad).setBigUint64(offsetAt, BigInt(good.length), true);
    expect(() => parseGguf(bad, 'off.gguf')).toThrow(
      /off\.gguf: tensor "output_norm\.weight" .* beyond|needs bytes/,
    );
    const misaligned = good.slice();
    view(misaligned).setBigUint64(offsetAt, BigInt(last.offset + 4), true);
    expect(() => parseGguf(misaligned, 'al.gguf')).toThrow(/not a multiple of the alignment/);
    const overlap = good.slice();
    view(overlap).setBigUint64(offsetAt, 0n, true);
    expect(() => parseGguf(overlap, 'ov.gguf')).toThrow(/overlaps tensor/);
    const badType = good.slice();
    view(badType).setUint32(offsetAt - 4, 99, true);
    expect(() => parseGguf(badType, 'ty.gguf')).toThrow(/unknown ggml type 99/);
    const zeroDim = good.slice();
    view(zeroDim).setBigUint64(nameAt + last.name.length + 4, 0n, true);
    expect(() => parseGguf(zeroDim, 'z.gguf')).toThrow(/zero dimension/);
    const dup = good.slice();
    const kAt = Buffer.from(dup).indexOf(Buffer.from('blk.0.attn_k.weight'));
    dup.set(Buffer.from('blk.0.attn_q.weight'), kAt);
    expect(() => parseGguf(dup, 'dup.gguf')).toThrow(/tensor "blk\.0\.attn_q\.weight" is described twice/);
  });

  it('rejects unsupported architectures and quantized tensors it cannot decode, by name', () => {
    const meta = new Map(metadata);
    meta.set('general.architecture', str('gpt2'));
    const g = parseGguf(concat(serializeGguf(meta, tensors)), 'gpt2.gguf');
    expect(() => ggufConfig(g)).toThrow(
      /gpt2\.gguf: unsupported architecture "gpt2" \(supported: llama, qwen2, qwen3, gemma3\)/,
    );
    const meta2 = new Map(metadata);
    meta2.set('llama.rope.scaling.type', str('yarn'));
    expect(() => ggufConfig(parseGguf(concat(serializeGguf(meta2, tensors)), 'y.gguf'))).toThrow(
      /rope scaling "yarn"/,
    );
    const meta3 = new Map(metadata);
    meta3.delete('llama.block_count');
    expect(() => ggufConfig(parseGguf(concat(serializeGguf(meta3, tensors)), 'n.gguf'))).toThrow(
      /"llama.block_count" is missing/,
    );
    // A Q4_0 tensor (block of 32 values in 18 bytes): listed fine, but not decodable.
    const q = good.slice();
    const file = parseGguf(good, 'good.gguf');
    const emb = file.tensors.find((t) => t.name === 'token_embd.weight')!;
    const at =
      Buffer.from(good).indexOf(Buffer.from('token_embd.weight')) + 'token_embd.weight'.length + 4 + 16;
    view(q).setUint32(at, 2, true);
    const gq = parseGguf(q, 'q4.gguf');
    expect(gq.tensors.find((t) => t.name === emb.name)!.byteSize).toBe((emb.dims[0] * emb.dims[1] * 18) / 32);
    expect(() => ggufTensorData(gq, 'token_embd.weight')).toThrow(/is Q4_0; only F32, F16, BF16, Q8_0/);
    // Q8_0 (32 values in 34 bytes: an f16 scale, then 32 int8) is dequantized: value = scale * int8.
    const q8 = good.slice();
    view(q8).setUint32(at, 8, true);
    const g8 = parseGguf(q8, 'q8.gguf');
    const t8 = g8.tensors.find((t) => t.name === emb.name)!;
    const raw = new DataView(q8.buffer, q8.byteOffset + g8.dataOffset + t8.offset, t8.byteSize);
    const values = ggufTensorData(g8, 'token_embd.weight');
    const half = halfToFloatTable();
    for (const i of [0, 31, 32, 100]) {
      const block = Math.floor(i / 32);
      expect(values[i]).toBe(half[raw.getUint16(block * 34, true)] * raw.getInt8(block * 34 + 2 + (i % 32)));
    }
    const meta4 = new Map(metadata);
    meta4.set('general.alignment', u32(24));
    expect(() => parseGguf(headerOnly(meta4), 'a.gguf')).toThrow(/alignment 24 is not a power of two/);
  });

  it('rejects a tensor whose shape contradicts the metadata', () => {
    const meta = new Map(metadata);
    meta.set('llama.feed_forward_length', u32(48));
    const g = parseGguf(concat(serializeGguf(meta, tensors)), 'ffn.gguf');
    expect(() => ggufToModel(g)).toThrow(
      /ffn\.gguf: tensor "blk\.0\.ffn_gate\.weight" has ggml dims \[32,64\], the metadata needs \[32,48\]/,
    );
  });
});
