/**
 * GGUF (v3) writer and reader, for running PSM Lab models in llama.cpp and its ecosystem (node-llama-cpp,
 * Ollama, LM Studio), and for reading such files back.
 *
 * File layout (all little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
 *   magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
 *   metadata: (string key, u32 value_type, value)*,
 *   tensor infos: (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)*,
 *   padding to general.alignment (default 32), then the tensor data, each tensor at an aligned offset.
 * Strings are a u64 byte length plus UTF-8 bytes. ne[0] is the fastest-varying dimension, so a row-major
 * [out, in] weight has ne = [in, out].
 *
 * Each engine architecture is written as llama.cpp's of the same name (llama, qwen2, qwen3, gemma3), with its
 * tensor names (token_embd, blk.N.attn_q, ..., output_norm, output) and metadata, as llama.cpp's
 * convert_hf_to_gguf.py writes them. llama.cpp's llama architecture rotates interleaved pairs (x[2i],
 * x[2i+1]) while HF Llama weights (and this engine) rotate halves (x[i], x[i + d/2]), so for it q and k rows
 * are permuted exactly as convert_hf_to_gguf.py does; reading permutes them back. qwen2, qwen3 and gemma3
 * rotate halves, unpermuted. Llama 3's scaled RoPE is the tensor rope_freqs.weight (one divisor per
 * frequency); Gemma's norms are stored as 1 + weight, as llama.cpp multiplies by the stored value.
 *
 * The tokenizer goes in as tokenizer.ggml.model "gpt2" (byte-level BPE: tokens, token types, merges) with the
 * GPT-2 pre-tokenizer, the bos/eos ids and the chat template.
 *
 * The reader checks everything before trusting it: magic, version, counts against the bytes that could hold
 * them, every length and offset against the file size, value types, tensor types and sizes, alignment, overlaps,
 * and the architecture; a bad file gets an error naming the file, the offset and the field.
 */
import * as fs from 'node:fs';
import { endianness } from 'node:os';
import { atomicWriteFileSync } from '../io/atomic-write.ts';
import {
  architectureOf,
  headDim,
  llama3InverseFrequencies,
  llamaParamShapes,
  parseLlamaConfig,
  positionsFromFile,
  type Architecture,
  type LlamaConfig,
  type LlamaConfigInput,
  type RopeScaling,
} from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { checkFinite } from '../model/weights.ts';
import { BpeTokenizer, type AddedTokenSpec } from '../tokenizer/index.ts';
import { PSM_CHAT_TEMPLATE } from './chat-template.ts';
import { halfToFloatTable } from '../io/safetensors.ts';
import { specialTokenContent, specialTokenIds } from './hf-export.ts';
import { HfTokenizerAdapter } from './hf-tokenizer.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';

// ---------------------------------------------------------------------------------------------
// Types

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** A metadata value with its GGUF type. 64-bit integers are bigints; arrays carry their element type. */
export type GgufValue =
  | {
      type:
        | GgufValueType.UINT8
        | GgufValueType.INT8
        | GgufValueType.UINT16
        | GgufValueType.INT16
        | GgufValueType.UINT32
        | GgufValueType.INT32
        | GgufValueType.FLOAT32
        | GgufValueType.FLOAT64;
      value: number;
    }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64; value: bigint }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.ARRAY; elementType: GgufValueType; value: GgufItem[] };

/** An array element: a scalar, or (for nested arrays) an array of elements. */
export type GgufItem = number | bigint | boolean | string | GgufItem[];

/** ggml tensor types: [id, elements per block, bytes per block]. */
export const GGML_TYPES: Record<string, readonly [number, number, number]> = {
  F32: [0, 1, 4],
  F16: [1, 1, 2],
  Q4_0: [2, 32, 18],
  Q4_1: [3, 32, 20],
  Q5_0: [6, 32, 22],
  Q5_1: [7, 32, 24],
  Q8_0: [8, 32, 34],
  Q8_1: [9, 32, 36],
  Q2_K: [10, 256, 84],
  Q3_K: [11, 256, 110],
  Q4_K: [12, 256, 144],
  Q5_K: [13, 256, 176],
  Q6_K: [14, 256, 210],
  Q8_K: [15, 256, 292],
  IQ2_XXS: [16, 256, 66],
  IQ2_XS: [17, 256, 74],
  IQ3_XXS: [18, 256, 98],
  IQ1_S: [19, 256, 50],
  IQ4_NL: [20, 32, 18],
  IQ3_S: [21, 256, 110],
  IQ2_S: [22, 256, 82],
  IQ4_XS: [23, 256, 136],
  I8: [24, 1, 1],
  I16: [25, 1, 2],
  I32: [26, 1, 4],
  I64: [27, 1, 8],
  F64: [28, 1, 8],
  IQ1_M: [29, 256, 56],
  BF16: [30, 1, 2],
  TQ1_0: [34, 256, 54],
  TQ2_0: [35, 256, 66],
};
const GGML_TYPE_BY_ID = new Map(
  Object.entries(GGML_TYPES).map(([name, [id, block, bytes]]) => [id, { name, block, bytes }]),
);

export function ggmlTypeName(id: number): string {
  return GGML_TYPE_BY_ID.get(id)?.name ?? `unknown(${id})`;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] varies fastest. */
  dims: number[];
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
  byteSize: number;
}

/** What a GGUF file says about itself: metadata and tensor infos, checked against the file's size. */
export interface GgufHeader {
  source: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the data section. */
  dataOffset: number;
  fileSize: number;
}

/**
 * A GGUF file's header and a way to its tensors' bytes: a copy out of bytes held in memory ({@link parseGguf}),
 * or a read from the file when a tensor is asked for ({@link readGgufFile}), so that loading a model holds its
 * weights and at most one tensor's bytes, never the whole file.
 */
export interface GgufFile extends GgufHeader {
  /** Fills `into` (t.byteSize bytes long) with tensor `t`'s bytes; throws, naming the file, when it cannot. */
  readTensorBytes: (t: GgufTensorInfo, into: Uint8Array) => void;
}

// ---------------------------------------------------------------------------------------------
// Writing

const utf8 = new TextEncoder();

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: bigint): void {
    this.ensure(8);
    this.view.setBigInt64(this.length, v, true);
    this.length += 8;
  }
  f32(v: number): void {
    this.ensure(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(w: ByteWriter, type: GgufValueType, v: unknown): void {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
      w.u8(Number(v) & 0xff);
      return;
    case GgufValueType.UINT16:
    case GgufValueType.INT16: {
      const x = Number(v) & 0xffff;
      w.u8(x & 0xff);
      w.u8(x >> 8);
      return;
    }
    case GgufValueType.UINT32:
      w.u32(Number(v));
      return;
    case GgufValueType.INT32:
      w.i32(Number(v));
      return;
    case GgufValueType.FLOAT32:
      w.f32(Number(v));
      return;
    case GgufValueType.FLOAT64:
      w.f64(Number(v));
      return;
    case GgufValueType.UINT64:
      w.u64(BigInt(v as bigint));
      return;
    case GgufValueType.INT64:
      w.i64(BigInt(v as bigint));
      return;
    case GgufValueType.BOOL:
      w.u8(v ? 1 : 0);
      return;
    case GgufValueType.STRING:
      w.string(String(v));
      return;
    default:
      throw new Error(`gguf: cannot write value type ${type}`);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  w.u32(v.type);
  if (v.type === GgufValueType.ARRAY) {
    if (v.elementType === GgufValueType.ARRAY) throw new Error('gguf: nested arrays are not written');
    w.u32(v.elementType);
    w.u64(v.value.length);
    for (const x of v.value) writeScalar(w, v.elementType, x);
    return;
  }
  writeScalar(w, v.type, v.value);
}

export const u32 = (value: number): GgufValue => ({ type: GgufValueType.UINT32, value });
export const f32 = (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value });
export const str = (value: string): GgufValue => ({ type: GgufValueType.STRING, value });
export const bool = (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value });
export const arr = (elementType: GgufValueType, value: GgufItem[]): GgufValue => ({
  type: GgufValueType.ARRAY,
  elementType,
  value,
});

export interface GgufTensorInput {
  name: string;
  /** Row-major shape as the engine holds it ([out, in] for a weight); reversed into ggml order on write. */
  shape: number[];
  data: Float32Array;
  /** Q8_0: blocks of 32 values as an f16 scale and 32 int8 (rows must be a multiple of 32 long). */
  type: 'F32' | 'F16' | 'Q8_0';
}

/** Round-to-nearest-even float32 -> IEEE half bits. */
export function f32ToF16Bits(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Serialises metadata and tensors as GGUF v3 chunks (header, then each tensor's bytes, padded). */
export function serializeGguf(
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensorInput[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): Uint8Array[] {
  if (endianness() !== 'LE') throw new Error('gguf: writing requires a little-endian host');
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0)
    throw new Error(`gguf: alignment ${alignment} must be a power of two`);
  const meta = new Map(metadata);
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) meta.set('general.alignment', u32(alignment));
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(meta.size);
  for (const [key, value] of meta) {
    w.string(key);
    writeValue(w, value);
  }
  const payloads: Uint8Array[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`gguf: tensor ${t.name} written twice`);
    names.add(t.name);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length)
      throw new Error(`gguf: tensor ${t.name} shape [${t.shape}] does not match ${t.data.length} values`);
    let payload: Uint8Array;
    if (t.type === 'F32') payload = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    else if (t.type === 'Q8_0') {
      if (t.shape[t.shape.length - 1] % 32 !== 0)
        throw new Error(
          `gguf: tensor ${t.name} rows of ${t.shape[t.shape.length - 1]} cannot be split into Q8_0 blocks of 32`,
        );
      payload = quantizeQ8_0(t.data);
    } else {
      const half = new Uint16Array(count);
      for (let i = 0; i < count; i++) half[i] = f32ToF16Bits(t.data[i]);
      payload = new Uint8Array(half.buffer);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]);
    w.u32(GGML_TYPES[t.type][0]);
    w.u64(offset);
    payloads.push(payload);
    const padded = Math.ceil(payload.byteLength / alignment) * alignment;
    if (padded > payload.byteLength) payloads.push(new Uint8Array(padded - payload.byteLength));
    offset += padded;
  }
  w.pad(alignment);
  return [w.result(), ...payloads];
}

/**
 * ggml's Q8_0 (quantize_row_q8_0_ref): per block of 32, d = max|x| / 127 stored as f16, and the values as
 * round(x / d) in int8 (ties away from zero, as C's roundf).
 */
export function quantizeQ8_0(data: Float32Array): Uint8Array {
  const blocks = data.length / 32;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(data[b * 32 + i]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16Bits(d), true);
    for (let i = 0; i < 32; i++) {
      const x = Math.fround(data[b * 32 + i] * id);
      view.setInt8(b * 34 + 2 + i, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Engine <-> llama.cpp tensors

/**
 * HF rotate-half layout -> llama.cpp interleaved layout for the rows of a q or k projection (and its bias):
 * within each head, row j * (d/2) + i moves to 2 i + j. Same as convert_hf_to_gguf.py's LlamaModel.permute.
 */
export function permuteForGguf(data: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  return permuteRows(data, rows, cols, nHeads, false);
}

/** Inverse of {@link permuteForGguf}. */
export function unpermuteFromGguf(
  data: Float32Array,
  rows: number,
  cols: number,
  nHeads: number,
): Float32Array {
  return permuteRows(data, rows, cols, nHeads, true);
}

function permuteRows(
  data: Float32Array,
  rows: number,
  cols: number,
  nHeads: number,
  inverse: boolean,
): Float32Array {
  const hd = rows / nHeads;
  if (!Number.isInteger(hd) || hd % 2 !== 0)
    throw new Error(`gguf: cannot permute ${rows} rows into ${nHeads} heads of even size`);
  const half = hd / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const hfRow = h * hd + j * half + i;
        const ggRow = h * hd + 2 * i + j;
        const [src, dst] = inverse ? [ggRow, hfRow] : [hfRow, ggRow];
        out.set(data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

const LAYER_NAMES: [hf: string, gguf: string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.q_proj.bias', 'attn_q.bias'],
  ['self_attn.k_proj.bias', 'attn_k.bias'],
  ['self_attn.v_proj.bias', 'attn_v.bias'],
  ['self_attn.q_norm.weight', 'attn_q_norm.weight'],
  ['self_attn.k_norm.weight', 'attn_k_norm.weight'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
];

/**
 * Gemma's block has a norm after attention and one after the MLP besides the two before: HF's
 * post_attention_layernorm is the one after attention there, and pre_feedforward_layernorm llama.cpp's ffn_norm.
 */
const GEMMA_LAYER_NAMES: [hf: string, gguf: string][] = [
  ...LAYER_NAMES.filter(([hf]) => hf !== 'post_attention_layernorm.weight'),
  ['post_attention_layernorm.weight', 'post_attention_norm.weight'],
  ['pre_feedforward_layernorm.weight', 'ffn_norm.weight'],
  ['post_feedforward_layernorm.weight', 'post_ffw_norm.weight'],
];

function layerNames(arch: Architecture): [hf: string, gguf: string][] {
  return arch === 'gemma3' ? GEMMA_LAYER_NAMES : LAYER_NAMES;
}

/** llama.cpp name of an engine (HF) parameter name, in a file of architecture `arch`. */
export function ggufTensorName(hfName: string, arch: Architecture = 'llama'): string {
  if (hfName === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hfName === 'model.norm.weight') return 'output_norm.weight';
  if (hfName === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m) {
    const pair = layerNames(arch).find(([hf]) => hf === m[2]);
    if (pair) return `blk.${m[1]}.${pair[1]}`;
  }
  throw new Error(`gguf: no llama.cpp name for tensor "${hfName}"`);
}

/** Engine (HF) name of a llama.cpp tensor name in a file of architecture `arch`, or undefined. */
export function hfTensorName(ggufName: string, arch: Architecture = 'llama'): string | undefined {
  if (ggufName === 'token_embd.weight') return 'model.embed_tokens.weight';
  if (ggufName === 'output_norm.weight') return 'model.norm.weight';
  if (ggufName === 'output.weight') return 'lm_head.weight';
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufName);
  if (!m) return undefined;
  const pair = layerNames(arch).find(([, g]) => g === m[2]);
  return pair ? `model.layers.${m[1]}.${pair[0]}` : undefined;
}

/**
 * GGUF architecture for a model: llama.cpp's of the same name. "llama" rotates interleaved pairs (q/k
 * permuted on the way); "qwen2" (q/k/v biases), "qwen3" and "gemma3" rotate halves.
 */
export function ggufArchitecture(config: LlamaConfig): Architecture {
  return architectureOf(config);
}

/** Whether llama.cpp's architecture rotates interleaved pairs, so q/k rows are permuted in the file. */
function permutesQk(arch: Architecture): boolean {
  return arch === 'llama';
}

/** llama.cpp's Gemma 3: every 6th layer global, local RoPE base 10000, scores scaled by 1/sqrt(head_dim). */
const LLAMA_CPP_GEMMA3 = { pattern: 6, localTheta: 10000 };

/** Gemma 3's layer kinds as llama.cpp assigns them: every `pattern`-th layer global. */
function gemmaPatternLayers(nLayers: number, pattern: number): LlamaConfig['layerTypes'] {
  return Array.from({ length: nLayers }, (_, i) =>
    (i + 1) % pattern === 0 ? 'full_attention' : 'sliding_attention',
  );
}

/** The query_pre_attn_scalar llama.cpp's gemma3 uses: the head size, or dim / heads for the 62-layer 27B. */
function llamaCppGemmaScalar(c: { nLayers: number; dim: number; nHeads: number }, hd: number): number {
  return c.nLayers === 62 ? c.dim / c.nHeads : hd;
}

/**
 * Throws, naming the feature, when llama.cpp would compute another function from a GGUF of this model: its
 * gemma3 fixes which layers are local, their RoPE base and the attention scale, and applies final logit
 * soft-capping only without sliding windows; the other architectures never soft-cap.
 */
function checkGgufExpressible(c: LlamaConfig): void {
  if (c.ropeScaling?.type === 'llama3' && architectureOf(c) !== 'llama')
    throw new Error(
      `gguf export: llama.cpp reads Llama 3's scaled RoPE (rope_freqs.weight) only for the llama architecture, not ${architectureOf(c)}`,
    );
  if (architectureOf(c) !== 'gemma3') {
    if (c.finalLogitSoftcap !== undefined)
      throw new Error(`gguf export: final logit soft-capping is read by llama.cpp only for gemma models`);
    return;
  }
  const want = gemmaPatternLayers(c.nLayers, LLAMA_CPP_GEMMA3.pattern)!;
  if (c.layerTypes!.some((t, i) => t !== want[i]))
    throw new Error(
      "gguf export: llama.cpp's gemma3 makes every 6th layer global; this model's layerTypes differ",
    );
  if (c.ropeLocalTheta !== LLAMA_CPP_GEMMA3.localTheta)
    throw new Error(
      `gguf export: llama.cpp's gemma3 turns its sliding-window layers' RoPE with base ${LLAMA_CPP_GEMMA3.localTheta}; this model uses ${c.ropeLocalTheta}`,
    );
  const scalar = llamaCppGemmaScalar(c, headDim(c));
  if ((c.queryPreAttnScalar ?? headDim(c)) !== scalar)
    throw new Error(
      `gguf export: llama.cpp's gemma3 scales attention by 1/sqrt(${scalar}); this model's queryPreAttnScalar is ${c.queryPreAttnScalar}`,
    );
  if (c.finalLogitSoftcap !== undefined)
    throw new Error(
      "gguf export: llama.cpp's gemma3 with sliding-window layers ignores final logit soft-capping; this model caps at " +
        c.finalLogitSoftcap,
    );
}

/** Llama 3's rope_freqs.weight: per frequency, the divisor of plain RoPE's (convert_hf_to_gguf.py's rope_factors). */
function ropeFreqFactors(c: LlamaConfig, s: Extract<RopeScaling, { type: 'llama3' }>): Float32Array {
  const d = headDim(c);
  const scaled = llama3InverseFrequencies(c.ropeTheta, d, s);
  return Float32Array.from(scaled, (inv, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / d) / inv);
}

// ---------------------------------------------------------------------------------------------
// Tokenizers as GGUF stores them

/** llama.cpp's token types (tokenizer.ggml.token_type). */
const TOKEN_TYPE = { NORMAL: 1, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5 } as const;

/**
 * A byte-level BPE tokenizer as a GGUF file holds it (tokenizer.ggml.model "gpt2"): tokens by id, their types,
 * the merges as "left right", and `pre`, the name llama.cpp gives the text splitting before BPE.
 */
export interface GgufVocab {
  pre: string;
  tokens: string[];
  types: number[];
  merges: string[];
  bos?: number;
  eos?: number;
  addBos: boolean;
  chatTemplate?: string;
}

/** A byte-level BPE splitting llama.cpp knows by name (llama-vocab.cpp), as Hugging Face tokenizer.json writes it. */
interface LlamaCppPreTokenizer {
  /** The models whose tokenizer.json splits this way. */
  families: string;
  /** The regex of the Split pre-tokenizer (behavior Isolated), followed by a ByteLevel step without its own regex. */
  split: string;
  /** Whether whole words found in the vocabulary skip merging (HF's model.ignore_merges; llama.cpp's ignore_merges). */
  ignoreMerges: boolean;
}

/**
 * The pre-tokenizers a tokenizer.json may have to be written to GGUF, by llama.cpp's name: "qwen2" is Qwen2's,
 * Qwen2.5's and Qwen3's (with NFC normalization on the HF side, which llama.cpp does not apply); "llama-bpe" is
 * Llama 3's (digits in groups of up to three, whole words looked up before merging).
 */
const PRE_TOKENIZERS: Record<string, LlamaCppPreTokenizer> = {
  qwen2: {
    families: 'Qwen2, Qwen2.5, Qwen3',
    split:
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ignoreMerges: false,
  },
  'llama-bpe': {
    families: 'Llama 3',
    split:
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ignoreMerges: true,
  },
};

const SUPPORTED_PRE_TOKENIZERS = Object.entries(PRE_TOKENIZERS)
  .map(([name, p]) => `"${name}" (${p.families})`)
  .join(', ');

type JsonObject = Record<string, unknown>;
const isJsonObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A tokenizer.json pre_tokenizer in a few words ("Split /.../ then ByteLevel"), for error messages. */
function describePreTokenizer(p: unknown): string {
  if (!isJsonObject(p)) return 'none';
  if (p.type === 'Sequence' && Array.isArray(p.pretokenizers))
    return p.pretokenizers.length === 0
      ? 'an empty Sequence'
      : p.pretokenizers.map(describePreTokenizer).join(' then ');
  if (p.type === 'Split') {
    const pattern = isJsonObject(p.pattern) ? (p.pattern.Regex ?? p.pattern.String) : undefined;
    return `Split on ${typeof pattern === 'string' ? `/${pattern}/` : 'an unreadable pattern'} (${String(p.behavior)}${p.invert === true ? ', inverted' : ''})`;
  }
  if (p.type === 'ByteLevel') return p.use_regex === false ? 'ByteLevel' : "ByteLevel with GPT-2's regex";
  return typeof p.type === 'string' ? p.type : 'an untyped pre-tokenizer';
}

/** llama.cpp's name for a tokenizer.json pre_tokenizer: a Split on a known regex, then plain ByteLevel; else undefined. */
function llamaCppPreTokenizerName(p: unknown): string | undefined {
  if (!isJsonObject(p) || p.type !== 'Sequence' || !Array.isArray(p.pretokenizers)) return undefined;
  const [split, byteLevel, ...rest] = p.pretokenizers as unknown[];
  if (rest.length > 0 || !isJsonObject(split) || !isJsonObject(byteLevel)) return undefined;
  if (split.type !== 'Split' || split.behavior !== 'Isolated' || split.invert === true) return undefined;
  if (byteLevel.type !== 'ByteLevel' || byteLevel.use_regex !== false || byteLevel.add_prefix_space === true)
    return undefined;
  const regex = isJsonObject(split.pattern) ? split.pattern.Regex : undefined;
  return Object.entries(PRE_TOKENIZERS).find(([, known]) => known.split === regex)?.[0];
}

/** PSM Lab's own byte-level BPE as a GGUF vocabulary (GPT-2 splitting; end-of-text as BOS and EOS). */
function bpeVocab(tokenizer: BpeTokenizer): GgufVocab {
  const tokens = [...tokenizer.getTokens()];
  const types: number[] = tokens.map(() => TOKEN_TYPE.NORMAL);
  for (const t of tokenizer.getAddedTokens())
    types[t.id] = t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  const special = specialTokenIds(tokenizer);
  return {
    pre: 'gpt-2',
    tokens,
    types,
    merges: tokenizer.getMerges().map(([a, b]) => `${a} ${b}`),
    bos: special.bos?.id,
    eos: special.eos?.id,
    addBos: false,
  };
}

/**
 * tokenizer_config.json's chat_template as GGUF's tokenizer.chat_template holds it: the string, or of a list of named
 * templates the "default" one (as convert_hf_to_gguf.py writes it).
 */
function defaultChatTemplate(raw: unknown): string | undefined {
  if (typeof raw === 'string') return raw;
  if (!Array.isArray(raw)) return undefined;
  const def = (raw as unknown[]).find((t) => isJsonObject(t) && t.name === 'default');
  return isJsonObject(def) && typeof def.template === 'string' ? def.template : undefined;
}

/**
 * The GGUF vocabulary of a Hugging Face tokenizer.json of the byte-level BPE kind whose splitting llama.cpp
 * reproduces (Qwen2/2.5/3's, Llama 3's; see PRE_TOKENIZERS), with tokenizer_config.json's BOS, EOS and
 * chat template. Other tokenizers are refused, naming what differs.
 */
export function ggufVocabFromTokenizerJson(
  json: Record<string, unknown>,
  config: Record<string, unknown> = {},
  source = 'tokenizer.json',
): GgufVocab {
  const model = json.model as
    { type?: string; vocab?: Record<string, number>; merges?: unknown[] } | undefined;
  if (model?.type !== 'BPE' || !model.vocab || !Array.isArray(model.merges))
    throw new Error(`${source}: only BPE tokenizers with a vocab and merges can be written to GGUF`);
  const name = llamaCppPreTokenizerName(json.pre_tokenizer);
  if (!name)
    throw new Error(
      `${source}: llama.cpp cannot reproduce its pre-tokenizer (${describePreTokenizer(json.pre_tokenizer)}); ` +
        `GGUF export supports ${SUPPORTED_PRE_TOKENIZERS}, each a Split on its regex then ByteLevel`,
    );
  const normalizer = json.normalizer ?? null;
  // llama.cpp normalizes nothing; NFC (Qwen's) changes only text with decomposed characters, which is kept as a
  // known difference. Any other normalizer would change ordinary text.
  if (normalizer !== null && !(isJsonObject(normalizer) && normalizer.type === 'NFC'))
    throw new Error(
      `${source}: llama.cpp applies no normalizer, and this tokenizer's (${isJsonObject(normalizer) ? String(normalizer.type) : JSON.stringify(normalizer)}) would change the ids; only none or NFC can be written to GGUF`,
    );
  const ignoreMerges = (model as { ignore_merges?: unknown }).ignore_merges === true;
  if (ignoreMerges !== PRE_TOKENIZERS[name].ignoreMerges)
    throw new Error(
      `${source}: model.ignore_merges is ${ignoreMerges}, but llama.cpp's "${name}" tokenizes with ignore_merges ${PRE_TOKENIZERS[name].ignoreMerges}`,
    );
  const tokens: string[] = [];
  const types: number[] = [];
  for (const [token, id] of Object.entries(model.vocab)) {
    tokens[id] = token;
    types[id] = TOKEN_TYPE.NORMAL;
  }
  const added = Array.isArray(json.added_tokens)
    ? (json.added_tokens as { id: number; content: string; special?: boolean }[])
    : [];
  for (const t of added) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  for (let id = 0; id < tokens.length; id++)
    if (tokens[id] === undefined)
      throw new Error(`${source}: no token has id ${id} (ids must be 0..${tokens.length - 1})`);
  const merges = model.merges.map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2) return `${String(m[0])} ${String(m[1])}`;
    throw new Error(`${source}: merges[${i}] is neither "left right" nor [left, right]`);
  });
  const idOf = (key: string): number | undefined => {
    const content = specialTokenContent(config[key]);
    const id = content === undefined ? -1 : tokens.indexOf(content);
    return id >= 0 ? id : undefined;
  };
  return {
    pre: name,
    tokens,
    types,
    merges,
    bos: idOf('bos_token'),
    eos: idOf('eos_token'),
    addBos: name === 'llama-bpe' && config.add_bos_token !== false,
    chatTemplate: defaultChatTemplate(config.chat_template),
  };
}

/** The tokenizer.json (for @huggingface/tokenizers) of a GGUF vocabulary whose splitting is one of PRE_TOKENIZERS. */
function tokenizerJsonOfGgufVocab(v: GgufVocab): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  v.tokens.forEach((token, id) => {
    const type = v.types[id] ?? TOKEN_TYPE.NORMAL;
    if (type === TOKEN_TYPE.CONTROL || type === TOKEN_TYPE.USER_DEFINED)
      added.push({
        id,
        content: token,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: type === TOKEN_TYPE.CONTROL,
      });
    else if (type !== TOKEN_TYPE.UNUSED) vocab[token] = id;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: v.pre === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: PRE_TOKENIZERS[v.pre].split },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: PRE_TOKENIZERS[v.pre].ignoreMerges,
      vocab,
      merges: v.merges,
    },
  };
}

export interface GgufExportOptions {
  /** general.name (default "psm-lab-model"). */
  name?: string;
  /** Jinja chat template (default: the PSM world chat format). */
  chatTemplate?: string;
  /** Storage type of the 2-D weight matrices (norms and biases stay F32). Default F32. */
  dtype?: 'F32' | 'F16' | 'Q8_0';
  alignment?: number;
}

/** GGUF metadata and tensors for a model and its tokenizer. */
export function ggufContents(
  model: LlamaModel,
  tokenizer: BpeTokenizer | GgufVocab,
  opts: GgufExportOptions = {},
): { metadata: Map<string, GgufValue>; tensors: GgufTensorInput[] } {
  const c = model.config;
  if (model.adapters.size > 0)
    throw new Error(
      'gguf export: the model carries LoRA adapters; merge them (model.mergeLora()) before exporting',
    );
  const vocab = tokenizer instanceof BpeTokenizer ? bpeVocab(tokenizer) : tokenizer;
  if (vocab.tokens.length > c.vocabSize)
    throw new Error(
      `gguf export: the tokenizer has ${vocab.tokens.length} tokens but the model's vocabulary is only ${c.vocabSize}`,
    );
  const arch = ggufArchitecture(c);
  checkGgufExpressible(c);
  const dtype = opts.dtype ?? 'F32';
  const md = new Map<string, GgufValue>();
  md.set('general.architecture', str(arch));
  md.set('general.name', str(opts.name ?? 'psm-lab-model'));
  md.set('general.file_type', u32({ F32: 0, F16: 1, Q8_0: 7 }[dtype]));
  md.set('general.quantization_version', u32(2));
  md.set(`${arch}.context_length`, u32(c.maxSeqLen));
  md.set(`${arch}.embedding_length`, u32(c.dim));
  md.set(`${arch}.block_count`, u32(c.nLayers));
  md.set(`${arch}.feed_forward_length`, u32(c.hiddenDim));
  md.set(`${arch}.attention.head_count`, u32(c.nHeads));
  md.set(`${arch}.attention.head_count_kv`, u32(c.nKvHeads));
  md.set(`${arch}.attention.layer_norm_rms_epsilon`, f32(c.normEps));
  md.set(`${arch}.rope.freq_base`, f32(c.ropeTheta));
  md.set(`${arch}.rope.dimension_count`, u32(headDim(c)));
  md.set(`${arch}.vocab_size`, u32(c.vocabSize));
  if (c.headDim !== undefined) {
    md.set(`${arch}.attention.key_length`, u32(c.headDim));
    md.set(`${arch}.attention.value_length`, u32(c.headDim));
  }
  if (c.ropeScaling?.type === 'linear') {
    md.set(`${arch}.rope.scaling.type`, str('linear'));
    md.set(`${arch}.rope.scaling.factor`, f32(c.ropeScaling.factor));
  }
  if (arch === 'gemma3') md.set(`${arch}.attention.sliding_window`, u32(c.slidingWindow!));

  // Tokenizer: byte-level BPE; the model's vocabulary may be padded beyond the tokenizer's.
  const tokens = [...vocab.tokens];
  const types = [...vocab.types];
  for (let id = tokens.length; id < c.vocabSize; id++) {
    tokens.push(`[PAD${id}]`);
    types.push(TOKEN_TYPE.UNUSED);
  }
  md.set('tokenizer.ggml.model', str('gpt2'));
  md.set('tokenizer.ggml.pre', str(vocab.pre));
  md.set('tokenizer.ggml.tokens', arr(GgufValueType.STRING, tokens));
  md.set('tokenizer.ggml.token_type', arr(GgufValueType.INT32, types));
  md.set('tokenizer.ggml.merges', arr(GgufValueType.STRING, vocab.merges));
  if (vocab.bos !== undefined) md.set('tokenizer.ggml.bos_token_id', u32(vocab.bos));
  if (vocab.eos !== undefined) {
    md.set('tokenizer.ggml.eos_token_id', u32(vocab.eos));
    md.set('tokenizer.ggml.padding_token_id', u32(vocab.eos));
  }
  md.set('tokenizer.ggml.add_bos_token', bool(vocab.addBos));
  md.set('tokenizer.ggml.add_eos_token', bool(false));
  const template = opts.chatTemplate ?? vocab.chatTemplate ?? PSM_CHAT_TEMPLATE;
  md.set('tokenizer.chat_template', str(template));

  const tensors: GgufTensorInput[] = [];
  const hd = headDim(c);
  const shift = model.normOffset;
  const push = (hfName: string): void => {
    const t = model.param(hfName);
    let data = t.data;
    if (permutesQk(arch) && /self_attn\.(q|k)_proj\.(weight|bias)$/.test(hfName)) {
      const heads = hfName.includes('q_proj') ? c.nHeads : c.nKvHeads;
      data = permuteForGguf(data, heads * hd, t.shape.length === 2 ? t.shape[1] : 1, heads);
    }
    if (shift && hfName.endsWith('norm.weight')) data = data.map((w) => w + shift);
    tensors.push({
      name: ggufTensorName(hfName, arch),
      shape: [...t.shape],
      data,
      type: t.shape.length === 2 ? dtype : 'F32',
    });
  };
  push('model.embed_tokens.weight');
  if (c.ropeScaling?.type === 'llama3') {
    const factors = ropeFreqFactors(c, c.ropeScaling);
    tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], data: factors, type: 'F32' });
  }
  for (let i = 0; i < c.nLayers; i++) {
    for (const [hf] of layerNames(arch)) {
      const name = `model.layers.${i}.${hf}`;
      if (model.params.has(name)) push(name);
    }
  }
  push('model.norm.weight');
  if (!c.tieEmbeddings) push('lm_head.weight');
  return { metadata: md, tensors };
}

/** Writes model + tokenizer as a GGUF file, atomically. Returns the file size. */
export function writeGgufFile(
  file: string,
  model: LlamaModel,
  tokenizer: BpeTokenizer | GgufVocab,
  opts: GgufExportOptions = {},
): number {
  const { metadata, tensors } = ggufContents(model, tokenizer, opts);
  const chunks = serializeGguf(metadata, tensors, opts.alignment);
  atomicWriteFileSync(file, chunks);
  return chunks.reduce((s, c) => s + c.byteLength, 0);
}

// ---------------------------------------------------------------------------------------------
// Reading

/** The bytes read so far end before the header does: {@link readGgufHeader} reads more and starts again. */
class NeedMoreBytes extends Error {}

/**
 * Bounds-checked little-endian reader over the first bytes of a file of `fileSize` bytes; every failure names
 * the file, the offset and what was being read. Lengths are checked against the whole file, so a lying one
 * fails before anything is allocated for it.
 */
class ByteReader {
  pos = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
    readonly fileSize = bytes.byteLength,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  /** Bytes of the file after the current position. */
  get remaining(): number {
    return this.fileSize - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new Error(
        `${this.source}: truncated GGUF file: ${what} needs ${n} bytes at offset ${this.pos}, but the file has ${this.fileSize} bytes`,
      );
    }
    if (this.pos + n > this.bytes.byteLength) throw new NeedMoreBytes();
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  i8(what: string): number {
    this.need(1, what);
    return this.view.getInt8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  i16(what: string): number {
    this.need(2, what);
    const v = this.view.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A float32, as the shortest decimal that rounds to it (1e-5 reads back as 1e-5, not 9.9999997e-6). */
  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return shortestFloat32(v);
  }
  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  i64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must fit the file: used for counts and lengths, so a lying value fails here. */
  length(what: string, unitBytes: number): number {
    const at = this.pos;
    const n = this.u64(what);
    if (n * BigInt(Math.max(unitBytes, 1)) > BigInt(this.remaining)) {
      throw new Error(
        `${this.source}: ${what} at offset ${at} is ${n}, but only ${this.remaining} bytes follow (truncated file or lying header)`,
      );
    }
    return Number(n);
  }
  string(what: string): string {
    const n = this.length(`${what} length`, 1);
    const at = this.pos;
    this.need(n, what);
    const b = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return this.decoder.decode(b);
    } catch {
      throw new Error(`${this.source}: ${what} at offset ${at} is not valid UTF-8`);
    }
  }
}

function shortestFloat32(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  for (let p = 1; p <= 9; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.fround(d) === v) return d;
  }
  return v;
}

/** Smallest encoded size of a value of this type (for checking array counts against the file size). */
function minValueBytes(type: GgufValueType): number {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.BOOL:
      return 1;
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
      return 2;
    case GgufValueType.UINT32:
    case GgufValueType.INT32:
    case GgufValueType.FLOAT32:
      return 4;
    case GgufValueType.STRING:
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
    case GgufValueType.FLOAT64:
      return 8;
    case GgufValueType.ARRAY:
      return 12;
    default:
      return 1;
  }
}

function readScalar(r: ByteReader, type: number, what: string): number | bigint | boolean | string {
  switch (type) {
    case GgufValueType.UINT8:
      return r.u8(what);
    case GgufValueType.INT8:
      return r.i8(what);
    case GgufValueType.UINT16:
      return r.u16(what);
    case GgufValueType.INT16:
      return r.i16(what);
    case GgufValueType.UINT32:
      return r.u32(what);
    case GgufValueType.INT32:
      return r.i32(what);
    case GgufValueType.FLOAT32:
      return r.f32(what);
    case GgufValueType.FLOAT64:
      return r.f64(what);
    case GgufValueType.UINT64:
      return r.u64(what);
    case GgufValueType.INT64:
      return r.i64(what);
    case GgufValueType.BOOL: {
      const at = r.pos;
      const b = r.u8(what);
      if (b > 1) throw new Error(`${r.source}: ${what} at offset ${at} is a bool with byte value ${b}`);
      return b === 1;
    }
    case GgufValueType.STRING:
      return r.string(what);
    default:
      throw new Error(`${r.source}: ${what} at offset ${r.pos} has unknown value type ${type}`);
  }
}

function readValue(r: ByteReader, what: string, depth = 0): GgufValue {
  const at = r.pos;
  const type = r.u32(`${what} type`);
  if (type === GgufValueType.ARRAY) {
    if (depth > 2) throw new Error(`${r.source}: ${what} at offset ${at}: arrays nested too deeply`);
    const elementType = r.u32(`${what} element type`);
    if (!(elementType in GgufValueType))
      throw new Error(`${r.source}: ${what} at offset ${at}: unknown array element type ${elementType}`);
    const n = r.length(`${what} array count`, minValueBytes(elementType));
    const value: GgufItem[] = new Array(n);
    for (let i = 0; i < n; i++) {
      value[i] =
        elementType === GgufValueType.ARRAY
          ? readValue(r, `${what}[${i}]`, depth + 1).value
          : readScalar(r, elementType, `${what}[${i}]`);
    }
    return { type: GgufValueType.ARRAY, elementType, value };
  }
  if (!(type in GgufValueType))
    throw new Error(`${r.source}: ${what} at offset ${at} has unknown value type ${type}`);
  return { type, value: readScalar(r, type, what) } as GgufValue;
}

/**
 * Parses and validates a GGUF file held in memory (v2 or v3). Tensor data is not decoded; see
 * {@link ggufTensorData}.
 */
export function parseGguf(bytes: Uint8Array, source = '<memory>'): GgufFile {
  const header = parseGgufHeader(bytes, source, bytes.byteLength);
  return {
    ...header,
    readTensorBytes: (t, into) => {
      checkTensorTarget(source, t, into);
      const start = header.dataOffset + t.offset;
      into.set(bytes.subarray(start, start + t.byteSize));
    },
  };
}

function checkTensorTarget(source: string, t: GgufTensorInfo, into: Uint8Array): void {
  if (into.byteLength !== t.byteSize)
    throw new Error(
      `${source}: tensor "${t.name}" has ${t.byteSize} bytes, not the ${into.byteLength} asked for`,
    );
}

/** Parses the header from the first bytes of a file of `fileSize` bytes; NeedMoreBytes when they end too soon. */
function parseGgufHeader(bytes: Uint8Array, source: string, fileSize: number): GgufHeader {
  if (endianness() !== 'LE') throw new Error('gguf: reading requires a little-endian host');
  const r = new ByteReader(bytes, source, fileSize);
  if (fileSize < 4)
    throw new Error(`${source}: truncated GGUF file: ${fileSize} bytes, the header needs at least 24`);
  const magic = r.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const shown = Buffer.from(bytes.subarray(0, 4)).toString('latin1');
    throw new Error(`${source}: not a GGUF file (magic ${JSON.stringify(shown)}, expected "GGUF")`);
  }
  const version = r.u32('version');
  if (version !== 2 && version !== 3)
    throw new Error(
      `${source}: GGUF version ${version} is not supported (this reader handles versions 2 and 3)`,
    );
  // Each tensor info takes at least 8 (name length) + 1 + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes;
  // each metadata entry at least 8 (key length) + 1 + 4 (type) + 1 (value).
  const tensorCount = r.length('tensor count', 33);
  const kvCount = r.length('metadata entry count', 14);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string(`metadata key #${i}`);
    if (key.length === 0) throw new Error(`${source}: metadata key #${i} is empty`);
    if (metadata.has(key)) throw new Error(`${source}: metadata key "${key}" appears twice`);
    metadata.set(key, readValue(r, `metadata "${key}"`));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (al.type !== GgufValueType.UINT32) throw new Error(`${source}: general.alignment must be a u32`);
    alignment = al.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0)
      throw new Error(`${source}: general.alignment ${alignment} is not a power of two`);
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string(`tensor #${i} name`);
    if (names.has(name)) throw new Error(`${source}: tensor "${name}" is described twice`);
    names.add(name);
    const at = r.pos;
    const nDims = r.u32(`tensor "${name}" n_dims`);
    if (nDims < 1 || nDims > 4)
      throw new Error(
        `${source}: tensor "${name}" at offset ${at} has ${nDims} dimensions (ggml allows 1 to 4)`,
      );
    const dims: number[] = [];
    let count = 1n;
    for (let d = 0; d < nDims; d++) {
      const n = r.u64(`tensor "${name}" dimension ${d}`);
      if (n === 0n) throw new Error(`${source}: tensor "${name}" has a zero dimension`);
      count *= n;
      if (count > BigInt(fileSize) * 8n)
        throw new Error(
          `${source}: tensor "${name}" claims ${count}+ elements, more than the ${fileSize}-byte file can hold`,
        );
      dims.push(Number(n));
    }
    const type = r.u32(`tensor "${name}" type`);
    const info = GGML_TYPE_BY_ID.get(type);
    if (!info) throw new Error(`${source}: tensor "${name}" has unknown ggml type ${type}`);
    if (dims[0] % info.block !== 0)
      throw new Error(
        `${source}: tensor "${name}" of type ${info.name} has a first dimension ${dims[0]} that is not a multiple of its block size ${info.block}`,
      );
    const offset = r.u64(`tensor "${name}" offset`);
    if (offset % BigInt(alignment) !== 0n)
      throw new Error(
        `${source}: tensor "${name}" offset ${offset} is not a multiple of the alignment ${alignment}`,
      );
    const byteSize = (count / BigInt(info.block)) * BigInt(info.bytes);
    if (offset + byteSize > BigInt(fileSize)) {
      throw new Error(
        `${source}: tensor "${name}" [${dims}] at data offset ${offset} (${byteSize} bytes) lies beyond the ${fileSize}-byte file (truncated file or lying header)`,
      );
    }
    tensors.push({ name, dims, type, offset: Number(offset), byteSize: Number(byteSize) });
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const dataLength = fileSize - dataOffset;
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  let prev: GgufTensorInfo | undefined;
  for (const t of sorted) {
    if (t.offset < end)
      throw new Error(
        `${source}: tensor "${t.name}" at data offset ${t.offset} overlaps tensor "${prev!.name}" ending at ${end}`,
      );
    if (t.offset + t.byteSize > dataLength) {
      throw new Error(
        `${source}: tensor "${t.name}" needs bytes ${t.offset}..${t.offset + t.byteSize} of the data section, which has only ${Math.max(dataLength, 0)} (truncated file or lying header)`,
      );
    }
    end = t.offset + t.byteSize;
    prev = t;
  }
  return { source, version, alignment, metadata, tensors, dataOffset, fileSize };
}

/**
 * Reads and checks a GGUF file's header ({@link readGgufHeader}); each tensor's bytes are read from the file
 * only when asked for, so a model file of many GB is never held in memory whole. The file must not change
 * while it is being read: a changed size is refused.
 */
export function readGgufFile(file: string): GgufFile {
  const header = readGgufHeader(file);
  return {
    ...header,
    readTensorBytes: (t, into) => {
      checkTensorTarget(file, t, into);
      const fd = openForReading(file);
      try {
        const size = fs.fstatSync(fd).size;
        if (size !== header.fileSize)
          throw new Error(
            `${file}: the file changed while being read (${header.fileSize} bytes when its header was read, ${size} now)`,
          );
        readFully(fd, into, t.byteSize, header.dataOffset + t.offset, `${file}: tensor "${t.name}"`);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

function openForReading(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot read GGUF file: ${(e as Error).message}`);
  }
}

/** The largest header (metadata and tensor infos) read from a file; real ones, tokenizer included, are tens of MB. */
export const MAX_GGUF_HEADER_BYTES = 256 << 20;

/**
 * Reads and checks a GGUF file's header without reading its tensor data (a model file may be many GB): the
 * first MiB, then four times more until the header ends, every length checked against the file's size first.
 */
export function readGgufHeader(file: string): GgufHeader {
  const fd = openForReading(file);
  try {
    const fileSize = fs.fstatSync(fd).size;
    for (let want = 1 << 20; ; want *= 4) {
      const buf = Buffer.alloc(Math.min(want, fileSize, MAX_GGUF_HEADER_BYTES));
      readFully(fd, buf, buf.byteLength, 0, file);
      try {
        return parseGgufHeader(buf, file, fileSize);
      } catch (e) {
        if (!(e instanceof NeedMoreBytes)) throw e;
        if (buf.byteLength >= MAX_GGUF_HEADER_BYTES)
          throw new Error(
            `${file}: the GGUF header (metadata and tensor infos) runs past ${MAX_GGUF_HEADER_BYTES} bytes; not a model file this reader accepts`,
          );
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Where a ggml type keeps its floating-point numbers: every element (float types), or the scales at fixed
 * byte offsets of each block (quantized types; the quantized integers themselves cannot be non-finite).
 * Types not listed (integer types, the IQ1/IQ2/IQ3/TQ families) are not scanned.
 */
const FLOATS_OF_TYPE: Record<string, { kind: 'f16' | 'bf16' | 'f32' | 'f64'; at: number[] }> = {
  F32: { kind: 'f32', at: [0] },
  F16: { kind: 'f16', at: [0] },
  BF16: { kind: 'bf16', at: [0] },
  F64: { kind: 'f64', at: [0] },
  Q4_0: { kind: 'f16', at: [0] },
  Q4_1: { kind: 'f16', at: [0, 2] },
  Q5_0: { kind: 'f16', at: [0] },
  Q5_1: { kind: 'f16', at: [0, 2] },
  Q8_0: { kind: 'f16', at: [0] },
  Q8_1: { kind: 'f16', at: [0, 2] },
  Q2_K: { kind: 'f16', at: [80, 82] },
  Q3_K: { kind: 'f16', at: [108] },
  Q4_K: { kind: 'f16', at: [0, 2] },
  Q5_K: { kind: 'f16', at: [0, 2] },
  Q6_K: { kind: 'f16', at: [208] },
  Q8_K: { kind: 'f32', at: [0] },
  IQ4_NL: { kind: 'f16', at: [0] },
  IQ4_XS: { kind: 'f16', at: [0] },
};

/** The value of a non-finite float at byte `at` of `view`, or null when it is finite. */
function nonFinite(view: DataView, at: number, kind: 'f16' | 'bf16' | 'f32' | 'f64'): number | null {
  if (kind === 'f32' || kind === 'f64') {
    const x = kind === 'f32' ? view.getFloat32(at, true) : view.getFloat64(at, true);
    return Number.isFinite(x) ? null : x;
  }
  const b = view.getUint16(at, true);
  const [exponent, mantissa] = kind === 'f16' ? [0x7c00, 0x3ff] : [0x7f80, 0x7f];
  if ((b & exponent) !== exponent) return null;
  if (b & mantissa) return NaN;
  return b & 0x8000 ? -Infinity : Infinity;
}

/** Fills buf[0, length) from the file at `position` (readSync may return less than asked). */
function readFully(fd: number, buf: Uint8Array, length: number, position: number, what: string): void {
  for (let got = 0; got < length;) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n <= 0) throw new Error(`${what}: the file ends early (truncated while being read?)`);
    got += n;
  }
}

/**
 * Reads every tensor's data in chunks (bounded memory) and throws, naming the file and the tensor, at the first
 * NaN or infinite weight or block scale: llama.cpp would run such a file and answer NaN probabilities.
 * `onProgress` is told the bytes scanned so far.
 */
export function checkGgufTensorValues(
  header: GgufHeader,
  onProgress?: (scannedBytes: number, totalBytes: number) => void,
): void {
  const total = header.tensors.reduce((sum, t) => sum + t.byteSize, 0);
  let scanned = 0;
  const fd = fs.openSync(header.source, 'r');
  try {
    for (const t of header.tensors) {
      const type = GGML_TYPE_BY_ID.get(t.type)!;
      const floats = FLOATS_OF_TYPE[type.name];
      if (!floats) {
        scanned += t.byteSize;
        continue;
      }
      const width = floats.kind === 'f64' ? 8 : floats.kind === 'f32' ? 4 : 2;
      const step = type.block === 1 ? width : type.bytes;
      const chunk = Buffer.alloc(Math.min(t.byteSize, Math.max(step, Math.floor((4 << 20) / step) * step)));
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      for (let done = 0; done < t.byteSize;) {
        const n = Math.min(chunk.byteLength, t.byteSize - done);
        readFully(fd, chunk, n, header.dataOffset + t.offset + done, `${header.source}: tensor "${t.name}"`);
        for (let at = 0; at + step <= n; at += step) {
          for (const off of floats.at) {
            const bad = nonFinite(view, at + off, floats.kind);
            if (bad !== null) {
              const index = (done + at) / step;
              throw new Error(
                type.block === 1
                  ? `${header.source}: tensor "${t.name}" holds ${bad} at element ${index}: the weights are corrupt`
                  : `${header.source}: tensor "${t.name}" (${type.name}) has a scale of ${bad} in block ${index}: the weights are corrupt`,
              );
            }
          }
        }
        done += n;
        scanned += n;
        onProgress?.(scanned, total);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The checks a GGUF model file passes before llama.cpp is given it: a sound header ({@link readGgufHeader}), an
 * architecture, at least one tensor, and finite weights ({@link checkGgufTensorValues}). Any architecture is
 * accepted here (llama.cpp knows many); {@link ggufConfig} is stricter.
 */
export function checkGgufModelFile(
  file: string,
  onProgress?: (scannedBytes: number, totalBytes: number) => void,
): GgufHeader {
  const header = readGgufHeader(file);
  const arch = header.metadata.get('general.architecture');
  if (arch === undefined) throw new Error(`${file}: metadata "general.architecture" is missing`);
  if (arch.type !== GgufValueType.STRING || arch.value === '')
    throw new Error(`${file}: metadata "general.architecture" must be a non-empty string`);
  if (header.tensors.length === 0) throw new Error(`${file}: the GGUF file holds no tensors`);
  checkGgufTensorValues(header, onProgress);
  return header;
}

/** The ggml types {@link ggufTensorData} decodes (quantized ones dequantized as llama.cpp's dequantize_row_*). */
export const DECODED_GGML_TYPES = ['F32', 'F16', 'BF16', 'Q8_0'] as const;

/**
 * Decodes one tensor (F32, F16, BF16, or Q8_0 dequantized) in ggml order (= row-major of the reversed dims) into
 * `out` (as many values as the tensor has; an F32 tensor is read straight into it), or a fresh Float32Array.
 */
export function ggufTensorData(file: GgufFile, name: string, out?: Float32Array): Float32Array {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`${file.source}: no tensor "${name}"`);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (out && out.length !== count)
    throw new Error(`${file.source}: tensor "${name}" has ${count} values, not the ${out.length} asked for`);
  out ??= new Float32Array(count);
  const typeName = ggmlTypeName(t.type);
  if (!(DECODED_GGML_TYPES as readonly string[]).includes(typeName))
    throw new Error(
      `${file.source}: tensor "${name}" is ${typeName}; only ${DECODED_GGML_TYPES.join(', ')} tensors can be read (re-export the model in one of them)`,
    );
  if (typeName === 'F32') {
    file.readTensorBytes(t, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
    return out;
  }
  const raw = new Uint8Array(t.byteSize);
  file.readTensorBytes(t, raw);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (typeName === 'F16') {
    const tab = halfToFloatTable();
    for (let i = 0; i < count; i++) out[i] = tab[view.getUint16(2 * i, true)];
  } else if (typeName === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else if (typeName === 'Q8_0') {
    const tab = halfToFloatTable();
    for (let b = 0; b < count / 32; b++) {
      const d = tab[view.getUint16(b * 34, true)];
      for (let i = 0; i < 32; i++) out[b * 32 + i] = d * view.getInt8(b * 34 + 2 + i);
    }
  }
  return out;
}

function metaNumber(file: GgufFile, key: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${file.source}: metadata "${key}" is missing`);
  }
  if (typeof v.value === 'number') return v.value;
  if (typeof v.value === 'bigint') return Number(v.value);
  throw new Error(`${file.source}: metadata "${key}" must be a number`);
}

function metaString(file: GgufFile, key: string): string | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.STRING) throw new Error(`${file.source}: metadata "${key}" must be a string`);
  return v.value;
}

function metaArray(file: GgufFile, key: string, elementType: GgufValueType): GgufItem[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.ARRAY || v.elementType !== elementType)
    throw new Error(`${file.source}: metadata "${key}" must be an array of ${GgufValueType[elementType]}`);
  return v.value;
}

export const SUPPORTED_GGUF_ARCHITECTURES = ['llama', 'qwen2', 'qwen3', 'gemma3'] as const;

/**
 * Llama 3's scaling parameters from a rope_freqs.weight (per frequency, the divisor of plain RoPE's): the
 * factor is the largest divisor, and the ramp between the kept and the slowed wavelengths fixes the low and
 * high frequency factors relative to the original context (taken as 8192, Llama 3's; only the ratios
 * matter). Throws when the divisors follow no such ramp: another scaling, which the engine does not run.
 */
function llama3ScalingFromFactors(
  factors: Float32Array,
  theta: number,
  dims: number,
  source: string,
): Extract<RopeScaling, { type: 'llama3' }> {
  const refuse = (why: string): never => {
    throw new Error(`${source}: rope_freqs.weight ${why}; only Llama 3's scaled RoPE is supported`);
  };
  if (factors.length !== dims / 2) refuse(`has ${factors.length} entries for head dimension ${dims}`);
  const factor = Math.max(...factors);
  const original = 8192;
  // x = original / wavelength per frequency: kept where x >= high, slowed where x <= low, and on the ramp
  // between 1/f = (1 - s)/factor + s with s = (x - low)/(high - low).
  const xs = Array.from(factors, (_, i) => original / Math.pow(theta, (2 * i) / dims) / (2 * Math.PI));
  const kept = xs.filter((_, i) => factors[i] <= 1 + 1e-6);
  const slowed = xs.filter((_, i) => factors[i] >= factor * (1 - 1e-6));
  const ramp: [x: number, s: number][] = [];
  factors.forEach((f, i) => {
    if (f > 1 + 1e-6 && f < factor * (1 - 1e-6)) ramp.push([xs[i], (1 / f - 1 / factor) / (1 - 1 / factor)]);
  });
  const minKept = kept.length ? Math.min(...kept) : Infinity;
  const maxSlowed = slowed.length ? Math.max(...slowed) : 0;
  let low: number;
  let high: number;
  if (ramp.length >= 2) {
    const [[x0, s0], [x1, s1]] = [ramp[0], ramp[ramp.length - 1]];
    const slope = (s1 - s0) / (x1 - x0); // = 1 / (high - low)
    low = x0 - s0 / slope;
    high = low + 1 / slope;
  } else if (ramp.length === 1) {
    // One point fixes only where the ramp passes: take it half as wide as the neighbours allow.
    const [x0, s0] = ramp[0];
    const width = 0.5 * Math.min((x0 - maxSlowed) / s0, (minKept - x0) / (1 - s0));
    low = x0 - s0 * width;
    high = x0 + (1 - s0) * width;
  } else {
    // No ramp: a step between the slowed and the kept frequencies.
    const edge = Number.isFinite(minKept) ? (minKept + maxSlowed) / 2 : 2 * maxSlowed;
    low = edge * (1 - 1e-6);
    high = edge * (1 + 1e-6);
  }
  const scaling = {
    type: 'llama3' as const,
    factor,
    lowFreqFactor: low,
    highFreqFactor: high,
    originalMaxPositions: original,
  };
  const again = llama3InverseFrequencies(theta, dims, scaling);
  for (let i = 0; i < factors.length; i++) {
    const f = 1 / Math.pow(theta, (2 * i) / dims) / again[i];
    if (Math.abs(f - factors[i]) > 1e-4 * factors[i])
      refuse(`entry ${i} (${factors[i]}) is off Llama 3's ramp`);
  }
  return scaling;
}

/** Model configuration of a GGUF file (llama, qwen2, qwen3 or gemma3 architecture). */
export function ggufConfig(file: GgufFile): LlamaConfig {
  const arch = metaString(file, 'general.architecture');
  if (arch === undefined) throw new Error(`${file.source}: metadata "general.architecture" is missing`);
  if (!(SUPPORTED_GGUF_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new Error(
      `${file.source}: unsupported architecture "${arch}" (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(', ')})`,
    );
  }
  const a = arch as Architecture;
  const scaling = metaString(file, `${arch}.rope.scaling.type`);
  const scalingFactor = file.metadata.has(`${arch}.rope.scaling.factor`)
    ? metaNumber(file, `${arch}.rope.scaling.factor`)
    : 1;
  if (scaling !== undefined && scaling !== 'none' && scaling !== 'linear')
    throw new Error(
      `${file.source}: rope scaling "${scaling}" is not supported (the engine implements plain RoPE, linear scaling and Llama 3's)`,
    );
  if (scaling !== 'linear' && scalingFactor !== 1)
    throw new Error(`${file.source}: rope scaling factor ${scalingFactor} is not supported`);
  if (file.metadata.has(`${arch}.expert_count`) && metaNumber(file, `${arch}.expert_count`) > 0)
    throw new Error(`${file.source}: mixture-of-experts models are not supported`);
  if (file.metadata.has(`${arch}.attn_logit_softcapping`))
    throw new Error(
      `${file.source}: attention logit soft-capping (${arch}.attn_logit_softcapping) is not supported`,
    );
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  if (!embd) throw new Error(`${file.source}: tensor "token_embd.weight" is missing`);
  const dim = metaNumber(file, `${arch}.embedding_length`);
  const nHeads = metaNumber(file, `${arch}.attention.head_count`);
  const nLayers = metaNumber(file, `${arch}.block_count`);
  const keyLength = metaNumber(file, `${arch}.attention.key_length`, dim / nHeads);
  const valueLength = metaNumber(file, `${arch}.attention.value_length`, keyLength);
  if (valueLength !== keyLength)
    throw new Error(
      `${file.source}: attention.value_length ${valueLength} differs from key_length ${keyLength}, which the engine does not support`,
    );
  const input: LlamaConfigInput = {
    vocabSize: embd.dims[1],
    dim,
    nLayers,
    nHeads,
    nKvHeads: metaNumber(file, `${arch}.attention.head_count_kv`, nHeads),
    hiddenDim: metaNumber(file, `${arch}.feed_forward_length`),
    normEps: metaNumber(file, `${arch}.attention.layer_norm_rms_epsilon`, 1e-5),
    ropeTheta: metaNumber(file, `${arch}.rope.freq_base`, 10000),
    tieEmbeddings: !file.tensors.some((t) => t.name === 'output.weight'),
    qkvBias: a === 'qwen2',
    maxSeqLen: positionsFromFile(
      metaNumber(file, `${arch}.context_length`, 2048),
      file.source,
      `${arch}.context_length`,
    ),
  };
  if (a === 'qwen3' || a === 'gemma3') input.arch = a;
  if (keyLength !== dim / nHeads || input.arch) input.headDim = keyLength;
  if (scaling === 'linear' && scalingFactor !== 1)
    input.ropeScaling = { type: 'linear', factor: scalingFactor };
  const freqs = file.tensors.find((t) => t.name === 'rope_freqs.weight');
  if (freqs) {
    if (a !== 'llama')
      throw new Error(`${file.source}: tensor rope_freqs.weight on a ${a} model is not supported`);
    if (input.ropeScaling)
      throw new Error(`${file.source}: both linear rope scaling and rope_freqs.weight; not supported`);
    input.ropeScaling = llama3ScalingFromFactors(
      ggufTensorData(file, 'rope_freqs.weight'),
      input.ropeTheta!,
      keyLength,
      file.source,
    );
  }
  if (a === 'gemma3') {
    // What llama.cpp's gemma3 fixes rather than reads (see LLAMA_CPP_GEMMA3).
    if (!file.metadata.has(`${arch}.attention.sliding_window`))
      throw new Error(
        `${file.source}: a gemma3 file without ${arch}.attention.sliding_window (no sliding-window layers) is not supported`,
      );
    input.slidingWindow = metaNumber(file, `${arch}.attention.sliding_window`);
    input.layerTypes = gemmaPatternLayers(nLayers, LLAMA_CPP_GEMMA3.pattern);
    input.ropeLocalTheta = LLAMA_CPP_GEMMA3.localTheta;
    input.queryPreAttnScalar = llamaCppGemmaScalar({ nLayers, dim, nHeads }, keyLength);
  } else if (file.metadata.has(`${arch}.final_logit_softcapping`))
    throw new Error(`${file.source}: final logit soft-capping on a ${a} model is not supported`);
  const config = parseLlamaConfig(input, `${file.source} metadata`);
  const ropeDims = metaNumber(file, `${arch}.rope.dimension_count`, headDim(config));
  if (ropeDims !== headDim(config))
    throw new Error(
      `${file.source}: rope.dimension_count ${ropeDims} differs from the head dimension ${headDim(config)} (partial rotary embeddings are not supported)`,
    );
  return config;
}

/**
 * Checks the file's tensors against the config before a model is allocated for it: every parameter present
 * with its shape (the first one missing or misshapen is named), nothing else. Metadata that lies (a million
 * blocks over a small file) fails at the first missing tensor instead of allocating for it.
 */
function checkGgufTensorsMatch(file: GgufFile, config: LlamaConfig): void {
  const arch = ggufArchitecture(config);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const expected = new Set<string>();
  for (const [hfName, shape] of llamaParamShapes(config)) {
    const name = ggufTensorName(hfName, arch);
    const t = byName.get(name);
    if (!t) throw new Error(`${file.source}: tensor "${name}" is missing`);
    const dims = [...shape].reverse();
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i]))
      throw new Error(
        `${file.source}: tensor "${name}" has ggml dims [${t.dims}], the metadata needs [${dims}]`,
      );
    expected.add(name);
  }
  if (config.ropeScaling?.type === 'llama3') expected.add('rope_freqs.weight');
  for (const t of file.tensors) {
    if (expected.has(t.name)) continue;
    throw new Error(`${file.source}: unexpected tensor "${t.name}" for a ${arch} model with this metadata`);
  }
}

/** Rebuilds an engine model from a GGUF file (q/k permuted back to the HF layout for the llama architecture). */
export function ggufToModel(file: GgufFile): LlamaModel {
  const config = ggufConfig(file);
  const arch = ggufArchitecture(config);
  checkGgufTensorsMatch(file, config);
  const model = new LlamaModel(config);
  const hd = headDim(config);
  const shift = model.normOffset;
  for (const t of file.tensors) {
    if (t.name === 'rope_freqs.weight') continue;
    const hfName = hfTensorName(t.name, arch)!;
    const p = model.param(hfName);
    const permuted = permutesQk(arch) && /self_attn\.(q|k)_proj\.(weight|bias)$/.test(hfName);
    // Decoded straight into the parameter unless it needs unpermuting: no second copy of a large tensor.
    const data = ggufTensorData(file, t.name, permuted ? undefined : p.data);
    checkFinite(t.name, data, file.source);
    if (permuted) {
      const heads = hfName.includes('q_proj') ? config.nHeads : config.nKvHeads;
      p.data.set(unpermuteFromGguf(data, heads * hd, p.shape.length === 2 ? p.shape[1] : 1, heads));
    }
    if (shift && hfName.endsWith('norm.weight')) for (let i = 0; i < p.data.length; i++) p.data[i] -= shift;
  }
  return model;
}

/**
 * The byte-level BPE tokenizer stored in a GGUF file (tokenizer.ggml.model "gpt2" with the GPT-2
 * pre-tokenizer). Returns null with a reason for tokenizers PSM Lab cannot reproduce exactly.
 */
export function ggufTokenizer(file: GgufFile): { tokenizer: BpeTokenizer | null; reason?: string } {
  const kind = metaString(file, 'tokenizer.ggml.model');
  if (kind !== 'gpt2')
    return {
      tokenizer: null,
      reason: `tokenizer.ggml.model is ${JSON.stringify(kind)}; only "gpt2" (byte-level BPE) is read`,
    };
  const pre = metaString(file, 'tokenizer.ggml.pre');
  if (pre !== undefined && pre !== 'gpt-2')
    return {
      tokenizer: null,
      reason: `tokenizer.ggml.pre is "${pre}"; only the GPT-2 pre-tokenizer is reproduced exactly`,
    };
  const tokens = metaArray(file, 'tokenizer.ggml.tokens', GgufValueType.STRING) as string[] | undefined;
  const merges = metaArray(file, 'tokenizer.ggml.merges', GgufValueType.STRING) as string[] | undefined;
  if (!tokens || !merges)
    return { tokenizer: null, reason: 'tokenizer.ggml.tokens or tokenizer.ggml.merges is missing' };
  const types =
    (metaArray(file, 'tokenizer.ggml.token_type', GgufValueType.INT32) as number[] | undefined) ?? [];
  // Padding entries ([PADn], type UNUSED) past the real vocabulary are dropped.
  let n = tokens.length;
  while (n > 0 && types[n - 1] === 5) n--;
  const added: AddedTokenSpec[] = [];
  for (let id = 0; id < n; id++)
    if (types[id] === 3 || types[id] === 4) added.push({ id, content: tokens[id], special: types[id] === 3 });
  const pairs = merges.map((m, i): [string, string] => {
    const parts = m.split(' ');
    if (parts.length !== 2)
      throw new Error(`${file.source}: tokenizer.ggml.merges[${i}] ${JSON.stringify(m)} is not "left right"`);
    return [parts[0], parts[1]];
  });
  return {
    tokenizer: new BpeTokenizer(
      { tokens: tokens.slice(0, n), merges: pairs, addedTokens: added },
      `${file.source} tokenizer`,
    ),
  };
}

/**
 * The tokenizer of a GGUF file as PSM Lab runs it: its own byte-level BPE for the GPT-2 splitting (see
 * {@link ggufTokenizer}), @huggingface/tokenizers over a rebuilt tokenizer.json for the splittings of
 * PRE_TOKENIZERS (Qwen2/3's "qwen2", Llama 3's "llama-bpe"), or null with the reason.
 */
export function ggufTextTokenizer(file: GgufFile): {
  tokenizer: TextTokenizer | null;
  /** The tokenizer.json rebuilt from the file, for the @huggingface/tokenizers kinds. */
  tokenizerJson?: Record<string, unknown>;
  reason?: string;
} {
  const pre = metaString(file, 'tokenizer.ggml.pre');
  if (
    metaString(file, 'tokenizer.ggml.model') !== 'gpt2' ||
    pre === undefined ||
    !Object.hasOwn(PRE_TOKENIZERS, pre)
  )
    return ggufTokenizer(file);
  const tokens = metaArray(file, 'tokenizer.ggml.tokens', GgufValueType.STRING) as string[] | undefined;
  const merges = metaArray(file, 'tokenizer.ggml.merges', GgufValueType.STRING) as string[] | undefined;
  if (!tokens || !merges)
    return { tokenizer: null, reason: 'tokenizer.ggml.tokens or tokenizer.ggml.merges is missing' };
  const types =
    (metaArray(file, 'tokenizer.ggml.token_type', GgufValueType.INT32) as number[] | undefined) ?? [];
  const tokenizerJson = tokenizerJsonOfGgufVocab({ pre, tokens, types, merges, addBos: false });
  return { tokenizer: new HfTokenizerAdapter(tokenizerJson), tokenizerJson };
}
