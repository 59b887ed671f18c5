/**
 * Import a local Hugging Face model folder of the Llama or Qwen2 family into the engine, so hooks, persona
 * vectors and steering run on small open-weight models.
 *
 * Reads config.json (LlamaForCausalLM / Qwen2ForCausalLM), the weights from model.safetensors or from the
 * shards listed in model.safetensors.index.json (F32, F16 or BF16; widened to F32), and the tokenizer when there
 * is one. Tensors are streamed one at a time (any shard size; peak memory is the model plus one tensor). Everything the
 * engine does not implement (rope scaling, MLP or output biases, a head_dim that is not hidden/heads, sliding
 * windows that matter) is refused with the file and field named rather than run silently wrong.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromHfConfig, type LlamaConfig } from '../model/config.ts';
import { checkConfigFitsWeights, LlamaModel, llamaParamNames } from '../model/llama.ts';
import { saveModelFolder } from '../model/weights.ts';
import { readSafetensorsFileHeader, streamSafetensors } from './safetensors-stream.ts';
import { loadFolderTokenizer, readJsonObject, type FolderTokenizer } from './hf-tokenizer.ts';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'Qwen2ForCausalLM'] as const;
const SUPPORTED_MODEL_TYPES = ['llama', 'qwen2'];

export interface HfImportResult {
  model: LlamaModel;
  config: LlamaConfig;
  architecture: string;
  modelType: 'llama' | 'qwen2';
  /** Storage dtypes met in the weight files (e.g. ["BF16"]). */
  dtypes: string[];
  /** Weight files read, relative to the folder. */
  weightFiles: string[];
  tokenizer: FolderTokenizer | null;
  /** Why no tokenizer was loaded, when tokenizer is null. */
  tokenizerError?: string;
  warnings: string[];
}

/** Checks a raw config.json for features the engine lacks; returns warnings for harmless ones. */
export function checkHfConfigSupported(
  raw: Record<string, unknown>,
  source: string,
): { modelType: 'llama' | 'qwen2'; architecture: string; warnings: string[] } {
  const warnings: string[] = [];
  const archs = raw.architectures;
  const modelType = raw.model_type;
  const archList = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [];
  const supported = `supported: ${SUPPORTED_ARCHITECTURES.join(', ')} (model_type ${SUPPORTED_MODEL_TYPES.join(' or ')})`;
  if (typeof modelType !== 'string' || !SUPPORTED_MODEL_TYPES.includes(modelType)) {
    throw new Error(
      `${source}: unsupported architecture ${archList.length ? archList.join(', ') : '(none named)'} with model_type ${JSON.stringify(modelType)}; ${supported}`,
    );
  }
  if (
    archList.length > 0 &&
    !archList.some((a) => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a))
  ) {
    throw new Error(`${source}: unsupported architecture ${archList.join(', ')}; ${supported}`);
  }
  const architecture = archList[0] ?? (modelType === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM');
  const ropeScaling = raw.rope_scaling;
  if (ropeScaling !== undefined && ropeScaling !== null) {
    const type =
      (ropeScaling as { rope_type?: unknown; type?: unknown }).rope_type ??
      (ropeScaling as { type?: unknown }).type;
    if (type !== 'default')
      throw new Error(
        `${source}: rope_scaling ${JSON.stringify(ropeScaling)} is not supported (the engine implements plain RoPE)`,
      );
  }
  if (raw.mlp_bias === true)
    throw new Error(`${source}: mlp_bias true is not supported (the engine's MLP has no biases)`);
  if (modelType === 'llama' && raw.attention_bias === true) {
    throw new Error(
      `${source}: attention_bias true on a Llama model adds an o_proj bias, which the engine lacks`,
    );
  }
  if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu')
    throw new Error(
      `${source}: hidden_act ${JSON.stringify(raw.hidden_act)} is not supported (only silu / SwiGLU)`,
    );
  const hidden = raw.hidden_size;
  const heads = raw.num_attention_heads;
  if (
    raw.head_dim !== undefined &&
    raw.head_dim !== null &&
    typeof hidden === 'number' &&
    typeof heads === 'number' &&
    raw.head_dim !== hidden / heads
  ) {
    throw new Error(
      `${source}: head_dim ${String(raw.head_dim)} differs from hidden_size / num_attention_heads = ${hidden / heads}, which the engine assumes`,
    );
  }
  if (raw.use_sliding_window === true) {
    warnings.push(
      `${source}: use_sliding_window is true; the engine attends to the full context, which matches only below sliding_window (${String(raw.sliding_window)}) tokens`,
    );
  }
  if (typeof raw.pretraining_tp === 'number' && raw.pretraining_tp > 1)
    warnings.push(
      `${source}: pretraining_tp ${raw.pretraining_tp} is ignored (it only changes how the reference slices matmuls)`,
    );
  return { modelType: modelType as 'llama' | 'qwen2', architecture, warnings };
}

/** The weight files of a folder: the shards of model.safetensors.index.json, or model.safetensors. */
function weightLayout(dir: string): { files: string[]; weightMap: Map<string, string> | null } {
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexPath)) {
    const index = readJsonObject(indexPath);
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map))
      throw new Error(`${indexPath}: weight_map must be an object of tensor name -> shard file`);
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== 'string' || file.length === 0)
        throw new Error(`${indexPath}: weight_map["${name}"] must be a file name`);
      if (path.isAbsolute(file) || file.split(/[\\/]/).includes('..'))
        throw new Error(`${indexPath}: shard "${file}" must be a file inside the folder`);
      weightMap.set(name, file);
    }
    const files = [...new Set(weightMap.values())].sort();
    for (const f of files)
      if (!fs.existsSync(path.join(dir, f)))
        throw new Error(`${indexPath}: shard ${f} is listed but ${path.join(dir, f)} does not exist`);
    return { files, weightMap };
  }
  if (fs.existsSync(path.join(dir, 'model.safetensors')))
    return { files: ['model.safetensors'], weightMap: null };
  if (
    fs.existsSync(path.join(dir, 'pytorch_model.bin')) ||
    fs.existsSync(path.join(dir, 'pytorch_model.bin.index.json'))
  ) {
    throw new Error(
      `${dir}: only PyTorch pickle weights (pytorch_model.bin) found; convert them to safetensors first (PSM Lab never unpickles files)`,
    );
  }
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

function copyInto(model: LlamaModel, name: string, data: Float32Array, shape: number[], where: string): void {
  const t = model.params.get(name)!;
  if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) {
    throw new Error(`${where}: tensor "${name}" has shape [${shape}], config.json needs [${t.shape}]`);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]))
      throw new Error(`${where}: tensor "${name}" contains ${data[i]} at index ${i}`);
  }
  t.data.set(data);
}

export interface HfImportOptions {
  /** Skip the tokenizer (weights only). */
  skipTokenizer?: boolean;
}

/** Reads a Hugging Face Llama/Qwen2 folder into a LlamaModel (and its tokenizer when readable). */
export function importHfFolder(dir: string, opts: HfImportOptions = {}): HfImportResult {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder`);
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath))
    throw new Error(`${configPath}: not found (is ${dir} a Hugging Face model folder?)`);
  const raw = readJsonObject(configPath);
  const { modelType, architecture, warnings } = checkHfConfigSupported(raw, configPath);
  let config = fromHfConfig(raw, configPath);
  if (
    raw.use_sliding_window === true &&
    typeof raw.sliding_window === 'number' &&
    raw.sliding_window < config.maxSeqLen
  ) {
    config = { ...config, maxSeqLen: raw.sliding_window };
  }
  const { files, weightMap } = weightLayout(dir);
  // Each shard's header first (dtypes, offsets, a deleted entry named), then the config against the weights'
  // size, and only then the model's memory: a config that lies about its size allocates nothing.
  const expectedIn = (file: string): Iterable<string> =>
    weightMap ? [...weightMap].filter(([, f]) => f === file).map(([n]) => n) : llamaParamNames(config);
  for (const file of files)
    readSafetensorsFileHeader(path.join(dir, file), { expectedNames: expectedIn(file) });
  const weightBytes = files.reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
  checkConfigFitsWeights(config, weightBytes, configPath);
  const model = new LlamaModel(config);
  const assigned = new Set<string>();
  const dtypes = new Set<string>();
  for (const file of files) {
    const full = path.join(dir, file);
    const met = streamSafetensors(full, (name, data, shape) => {
      if (weightMap) {
        const listed = weightMap.get(name);
        if (listed === undefined)
          throw new Error(`${full}: tensor "${name}" is not listed in model.safetensors.index.json`);
        if (listed !== file)
          throw new Error(
            `${full}: tensor "${name}" is listed in model.safetensors.index.json under shard ${listed}`,
          );
      }
      if (name.endsWith('rotary_emb.inv_freq')) return;
      if (name === 'lm_head.weight' && config.tieEmbeddings) {
        warnings.push(`${full}: lm_head.weight ignored (config.json ties it to the embeddings)`);
        return;
      }
      if (!model.params.has(name))
        throw new Error(
          `${full}: unexpected tensor "${name}" (not part of a ${architecture} with this config)`,
        );
      if (assigned.has(name)) throw new Error(`${full}: tensor "${name}" appears in more than one shard`);
      copyInto(model, name, data, shape, full);
      assigned.add(name);
    });
    for (const d of met) dtypes.add(d);
  }
  if (weightMap) {
    for (const [name, file] of weightMap) {
      if (
        !assigned.has(name) &&
        !name.endsWith('rotary_emb.inv_freq') &&
        !(name === 'lm_head.weight' && config.tieEmbeddings)
      ) {
        throw new Error(
          `${path.join(dir, file)}: tensor "${name}" is listed in the index but missing from the shard`,
        );
      }
    }
  }
  const missing = [...model.params.keys()].filter((n) => !assigned.has(n));
  if (missing.length > 0) {
    throw new Error(
      `${dir}: ${missing.length} tensor(s) missing from the weights, e.g. "${missing[0]}"${missing[0] === 'lm_head.weight' ? ' (config.json says the head is not tied to the embeddings)' : ''}`,
    );
  }

  let tokenizer: FolderTokenizer | null = null;
  let tokenizerError: string | undefined;
  if (!opts.skipTokenizer) {
    try {
      tokenizer = loadFolderTokenizer(dir);
      if (tokenizer.tokenizer.vocabSize > config.vocabSize) {
        warnings.push(
          `tokenizer has ${tokenizer.tokenizer.vocabSize} tokens, more than the model's vocabulary of ${config.vocabSize}`,
        );
      }
    } catch (e) {
      tokenizerError = (e as Error).message;
      warnings.push(`no tokenizer: ${tokenizerError}`);
    }
  }
  return {
    model,
    config,
    architecture,
    modelType,
    dtypes: [...dtypes].sort(),
    weightFiles: files,
    tokenizer,
    tokenizerError,
    warnings,
  };
}

const COPIED_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
];

/**
 * Imports `from` and writes a PSM Lab model folder at `outDir`: config.json and F32 model.safetensors in the
 * engine's layout, the tokenizer files copied verbatim, and psm-import.json recording the provenance.
 */
export function importHfToModelFolder(
  from: string,
  outDir: string,
  opts: HfImportOptions = {},
): HfImportResult & { files: string[] } {
  const result = importHfFolder(from, opts);
  const extra: Record<string, Uint8Array | string> = {};
  for (const f of COPIED_FILES) {
    const p = path.join(from, f);
    if (fs.existsSync(p)) extra[f] = fs.readFileSync(p);
  }
  extra['psm-import.json'] = `${JSON.stringify(
    {
      source: path.resolve(from),
      architecture: result.architecture,
      modelType: result.modelType,
      sourceDtypes: result.dtypes,
      weightFiles: result.weightFiles,
      tokenizer: result.tokenizer ? result.tokenizer.kind : null,
      warnings: result.warnings,
    },
    null,
    2,
  )}\n`;
  saveModelFolder(outDir, result.model, extra, {
    producer: 'psm-lab import',
    source_architecture: result.architecture,
  });
  return {
    ...result,
    files: ['config.json', 'model.safetensors', ...Object.keys(extra)].map((f) => path.join(outDir, f)),
  };
}
