/**
 * A model on disk is a Hugging Face model folder: config.json plus model.safetensors with Llama (or Qwen2)
 * tensor names. Loading checks every tensor against the config and names the file and tensor at fault.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { readSafetensorsSync, writeSafetensorsSync, type TensorData } from '../io/safetensors.ts';
import { fromHfConfig, toHfConfig } from './config.ts';
import { checkConfigFitsWeights, LlamaModel, llamaParamNames } from './llama.ts';

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

/** Copies tensors into a model, checking names and shapes. Tied models may omit lm_head. */
export function assignTensors(
  model: LlamaModel,
  tensors: ReadonlyMap<string, TensorData>,
  source: string,
): void {
  for (const [name, t] of model.params) {
    const src = tensors.get(name);
    if (!src) throw new Error(`${source}: tensor "${name}" is missing`);
    if (src.shape.length !== t.shape.length || src.shape.some((d, i) => d !== t.shape[i])) {
      throw new Error(`${source}: tensor "${name}" has shape [${src.shape}], the config needs [${t.shape}]`);
    }
    for (let i = 0; i < src.data.length; i++) {
      if (!Number.isFinite(src.data[i]))
        throw new Error(`${source}: tensor "${name}" contains ${src.data[i]} at index ${i}`);
    }
    t.data.set(src.data);
  }
  for (const name of tensors.keys()) {
    if (model.params.has(name)) continue;
    if (name === 'lm_head.weight' && model.config.tieEmbeddings) continue;
    if (name.endsWith('rotary_emb.inv_freq')) continue;
    throw new Error(`${source}: unexpected tensor "${name}" (not part of this model's architecture)`);
  }
}

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
  // The weights file first (its own errors name it), then the config against its size, then the allocation.
  const { tensors } = readSafetensorsSync(weightsPath, { expectedNames: llamaParamNames(config) });
  checkConfigFitsWeights(config, fs.statSync(weightsPath).size, configPath);
  const model = new LlamaModel(config);
  assignTensors(model, tensors, weightsPath);
  return model;
}
