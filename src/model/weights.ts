/**
 * A model on disk is a Hugging Face model folder: config.json plus model.safetensors with Llama (or Qwen2)
 * tensor names. Loading checks every tensor against the config and names the file and tensor at fault.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { writeSafetensorsSync, type TensorData } from '../io/safetensors.ts';
import { readSafetensorsFileHeader, readSafetensorsInto } from '../io/safetensors-stream.ts';
import { fromHfConfig, llamaParamNames, toHfConfig } from './config.ts';
import { checkConfigFitsWeights, LlamaModel } from './llama.ts';

export const MODEL_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.json';

export function modelTensors(model: LlamaModel): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, t] of model.params) out.set(name, { data: t.data, shape: [...t.shape] });
  return out;
}

/** Writes config.json, model.safetensors and any extra files (e.g. tokenizer.json) into dir, each atomically. */
export function saveModelFolder(
  dir: string,
  model: LlamaModel,
  extraFiles: Record<string, string | Uint8Array> = {},
  metadata: Record<string, string> = {},
): void {
  if (model.adapters.size > 0)
    throw new Error('saveModelFolder: merge or drop LoRA adapters before saving the model');
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensorsSync(path.join(dir, MODEL_FILE), modelTensors(model), { format: 'pt', ...metadata });
  atomicWriteJsonSync(path.join(dir, CONFIG_FILE), toHfConfig(model.config));
  for (const [name, content] of Object.entries(extraFiles))
    atomicWriteFileSync(path.join(dir, name), content);
}

/** Checks a weight file's tensor names and shapes against a model's: none missing, none extra, shapes equal. */
function checkTensorSet(
  model: LlamaModel,
  shapes: ReadonlyMap<string, readonly number[]>,
  source: string,
): void {
  for (const [name, t] of model.params) {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`${source}: tensor "${name}" is missing`);
    if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) {
      throw new Error(`${source}: tensor "${name}" has shape [${shape}], the config needs [${t.shape}]`);
    }
  }
  for (const name of shapes.keys()) {
    if (model.params.has(name)) continue;
    if (name === 'lm_head.weight' && model.config.tieEmbeddings) continue;
    if (name.endsWith('rotary_emb.inv_freq')) continue;
    throw new Error(`${source}: unexpected tensor "${name}" (not part of this model's architecture)`);
  }
}

/** Refuses a tensor holding NaN or an infinity, naming the source, the tensor and the first bad index. */
export function checkFinite(name: string, data: Float32Array, source: string): void {
  // A float32 is NaN or infinite exactly when its exponent bits are all ones; OR-ing a flag over the bits scans
  // a 2 GB model in about a second (Number.isFinite per element took several).
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  let nonFinite = 0;
  for (let i = 0; i < bits.length; i++) nonFinite |= (~bits[i] & 0x7f800000) === 0 ? 1 : 0;
  if (nonFinite === 0) return;
  const at = data.findIndex((x) => !Number.isFinite(x));
  throw new Error(`${source}: tensor "${name}" contains ${data[at]} at index ${at}`);
}

/**
 * Reads a weights file into a model's parameters, tensor by tensor and straight into their buffers, checking
 * names, shapes and values.
 */
export function readWeightsInto(model: LlamaModel, file: string): void {
  readSafetensorsInto(
    file,
    (tensors) => {
      checkTensorSet(model, new Map(tensors.map((t) => [t.name, t.shape])), file);
      return (t) => model.params.get(t.name)?.data;
    },
    { expectedNames: model.params.keys() },
  );
  for (const [name, t] of model.params) checkFinite(name, t.data, file);
}

/** Loads a model folder in about the model's own size of memory, whatever the weight file's size. */
export function loadModelFolder(dir: string): LlamaModel {
  const configPath = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(configPath)) throw new Error(`${configPath}: not found (is ${dir} a model folder?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw new Error(`${configPath}: not valid JSON (${(e as Error).message})`);
  }
  const config = fromHfConfig(raw, configPath);
  const weightsPath = path.join(dir, MODEL_FILE);
  if (!fs.existsSync(weightsPath)) throw new Error(`${weightsPath}: not found`);
  // The weights file's header first (its own errors name it), then the config against its size, and only then
  // the allocation, so a config that lies about its size never allocates.
  readSafetensorsFileHeader(weightsPath, { expectedNames: llamaParamNames(config) });
  checkConfigFitsWeights(config, fs.statSync(weightsPath).size, configPath);
  const model = new LlamaModel(config);
  readWeightsInto(model, weightsPath);
  return model;
}
