/**
 * llama.cpp control vectors: the GGUF files `llama-cli --control-vector[-scaled]` and `llama-server` read, which
 * llama.cpp's cvector-generator and repeng's ControlVector.export_gguf write.
 *
 * A file holds general.architecture "controlvector", controlvector.model_hint (the model's architecture, e.g.
 * "llama") and controlvector.layer_count (how many directions), and one F32 1-D tensor "direction.N" per steered
 * layer. llama.cpp (common/common.cpp common_control_vector_load, src/llama-adapter.cpp llama_adapter_cvec) reads
 * direction.N into the slot of layer N, multiplied by the strength given on its command line (several files add
 * up), refuses N = 0 and any tensor that is not F32 and 1-D, and while building each model's graph adds slot il to
 * the output of block il (`cur = build_cvec(cur, il)` after the block's FFN residual add, il counted from 0). So
 * direction.N steers the residual stream leaving block N: PSM Lab's `blocks.N.hook_resid_post`
 * ({@link llamaCppLayerOfHook} maps every hook point). Block 0's output can never be steered in llama.cpp.
 *
 * repeng numbers its directions the same way (its layer i is model.layers[i], read from hidden_states[i + 1]);
 * early versions wrote negative indices, which llama.cpp rejects and {@link readControlVector} refuses by name.
 * cvector-generator computes direction.N from block N-1's output and writes it for block N (it is applied one block
 * later than it was measured); the file still means "add at block N", which is all an import needs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync } from '../io/atomic-write.ts';
import {
  ggmlTypeName,
  ggufTensorData,
  GgufValueType,
  readGgufFile,
  serializeGguf,
  str,
  type GgufValue,
} from './gguf.ts';

export const CONTROL_VECTOR_ARCH = 'controlvector';

export interface ControlVector {
  /** The architecture the vector was made for (controlvector.model_hint), e.g. "llama" or "qwen2". */
  modelHint: string;
  /** llama.cpp layer N (the output of block N, N >= 1) -> the direction added there at strength 1. */
  directions: Map<number, Float32Array>;
}

/**
 * The llama.cpp control-vector layer whose addition equals adding at PSM Lab hook `hook` (src/model/hooks.ts), for
 * a model of `nLayers` blocks. llama.cpp adds at block outputs only, so:
 *   blocks.N.hook_resid_post  -> N   the residual leaving block N is what llama.cpp's slot N is added to
 *   blocks.N.hook_mlp_out     -> N   resid_post = resid_mid + mlp_out and nothing else reads mlp_out: same sum
 *   blocks.N.hook_resid_pre   -> N-1 the residual entering block N is the one leaving block N-1
 * Everything else has no llama.cpp equivalent and is refused with the reason: block 0's output (llama.cpp never
 * steers layer 0, so neither blocks.0.hook_resid_post nor blocks.1.hook_resid_pre), the embeddings, the points
 * inside a block (resid_mid, attn_out: the MLP would read the push) and final_norm.
 */
export function llamaCppLayerOfHook(hook: string, nLayers: number): number {
  const m =
    /^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out)$/.exec(hook);
  const refuse = (why: string) => new Error(`hook ${hook} cannot be a llama.cpp control vector: ${why}`);
  if (!m) {
    if (hook === 'embed' || hook === 'final_norm')
      throw refuse(
        'llama.cpp adds control vectors to block outputs only (direction.N after block N, N >= 1)',
      );
    throw refuse('not a hook point (see src/model/hooks.ts)');
  }
  const block = Number(m[1]);
  if (block >= nLayers) throw refuse(`the model has blocks 0..${nLayers - 1}`);
  const kind = m[2];
  if (kind === 'hook_resid_mid' || kind === 'hook_attn_out')
    throw refuse(
      'it is inside a block, where the MLP reads it; llama.cpp adds only to block outputs (use hook_resid_post or hook_mlp_out)',
    );
  const layer = kind === 'hook_resid_pre' ? block - 1 : block;
  if (layer < 1)
    throw refuse(
      "it is block 0's output (or the embeddings), which llama.cpp never steers: its control vectors start at direction.1",
    );
  return layer;
}

/** The PSM Lab hook a llama.cpp control-vector layer N is added at: the residual leaving block N. */
export function hookOfLlamaCppLayer(layer: number): string {
  return `blocks.${layer}.hook_resid_post`;
}

const i32 = (value: number): GgufValue => ({ type: GgufValueType.INT32, value });

/** The GGUF bytes of a control vector (layers in increasing order, as cvector-generator writes them). */
export function serializeControlVector(cv: ControlVector): Uint8Array[] {
  if (cv.directions.size === 0) throw new Error('control vector: no directions to write');
  let dim = -1;
  const layers = [...cv.directions.keys()].sort((a, b) => a - b);
  for (const l of layers) {
    const d = cv.directions.get(l)!;
    if (!Number.isInteger(l) || l < 1)
      throw new Error(`control vector: layer ${l} is not an integer >= 1 (llama.cpp refuses direction.0)`);
    if (dim >= 0 && d.length !== dim)
      throw new Error(`control vector: direction.${l} has ${d.length} values, the others ${dim}`);
    dim = d.length;
    for (const x of d)
      if (!Number.isFinite(x)) throw new Error(`control vector: direction.${l} contains ${x}`);
  }
  const md = new Map<string, GgufValue>([
    ['general.architecture', str(CONTROL_VECTOR_ARCH)],
    [`${CONTROL_VECTOR_ARCH}.model_hint`, str(cv.modelHint)],
    [`${CONTROL_VECTOR_ARCH}.layer_count`, i32(layers.length)],
  ]);
  return serializeGguf(
    md,
    layers.map((l) => ({ name: `direction.${l}`, shape: [dim], data: cv.directions.get(l)!, type: 'F32' })),
  );
}

/** Writes a control-vector GGUF atomically; returns its size in bytes. */
export function writeControlVector(file: string, cv: ControlVector): number {
  const bytes = Buffer.concat(serializeControlVector(cv));
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  atomicWriteFileSync(file, bytes);
  return bytes.length;
}

/**
 * Reads a control-vector GGUF (cvector-generator's or repeng's). Refused, naming the file and the tensor: another
 * architecture, a tensor not named direction.N with an integer N >= 1 (repeng's early negative indices included),
 * a direction that is not 1-D, directions of different sizes, non-finite values. F16 and BF16 directions are read
 * (llama.cpp itself takes F32 only).
 */
export function readControlVector(file: string): ControlVector {
  const g = readGgufFile(file);
  const arch = g.metadata.get('general.architecture');
  if (arch?.type !== GgufValueType.STRING || arch.value !== CONTROL_VECTOR_ARCH)
    throw new Error(
      `${file}: not a control vector (general.architecture is ${arch ? JSON.stringify(arch.value) : 'missing'}, expected "${CONTROL_VECTOR_ARCH}")`,
    );
  const hint = g.metadata.get(`${CONTROL_VECTOR_ARCH}.model_hint`);
  const modelHint = hint?.type === GgufValueType.STRING ? hint.value : '';
  if (g.tensors.length === 0) throw new Error(`${file}: the control vector has no direction tensors`);
  const directions = new Map<number, Float32Array>();
  let dim = -1;
  for (const t of g.tensors) {
    const m = /^direction\.(-?\d+)$/.exec(t.name);
    if (!m) throw new Error(`${file}: tensor "${t.name}" is not named direction.<layer>`);
    const layer = Number(m[1]);
    if (layer < 1)
      throw new Error(
        `${file}: tensor "${t.name}": layer ${layer} is not >= 1 (llama.cpp numbers blocks from 0 and never steers block 0; ` +
          'negative indices come from early repeng versions and must be converted to n_layers + index)',
      );
    if (t.dims.filter((d) => d > 1).length > 1 || t.dims.length > 2)
      throw new Error(`${file}: tensor "${t.name}" has shape [${t.dims}], a direction must be 1-D`);
    const type = ggmlTypeName(t.type);
    if (!['F32', 'F16', 'BF16'].includes(type))
      throw new Error(`${file}: tensor "${t.name}" is ${type}; directions must be F32 (or F16 / BF16)`);
    const data = ggufTensorData(g, t.name);
    if (dim >= 0 && data.length !== dim)
      throw new Error(`${file}: tensor "${t.name}" has ${data.length} values, the others ${dim}`);
    dim = data.length;
    for (const x of data)
      if (!Number.isFinite(x)) throw new Error(`${file}: tensor "${t.name}" contains ${x}`);
    directions.set(layer, data);
  }
  return { modelHint, directions };
}
