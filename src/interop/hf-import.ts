/**
 * Import a local Hugging Face model folder into the engine, so hooks, persona vectors, steering and LoRA run on
 * small open-weight models: Llama 3.x and SmolLM2 (LlamaForCausalLM, Llama 3's scaled RoPE included), Qwen2 /
 * Qwen2.5 (Qwen2ForCausalLM), Qwen3 (Qwen3ForCausalLM) and Gemma 3 (Gemma3ForCausalLM, or the language model
 * of a Gemma3ForConditionalGeneration folder without its vision tower).
 *
 * Reads config.json, the weights from model.safetensors or from the shards listed in
 * model.safetensors.index.json (F32, F16 or BF16; widened to F32), and the tokenizer when there is one. Tensors
 * are streamed one at a time (any shard size; peak memory is the model plus one tensor). Everything the engine
 * does not implement (other RoPE scalings, mixtures of experts, MLP or output biases, other activations,
 * attention soft-capping, sliding windows on a Qwen2 model that matter) is refused with the file and field
 * named rather than run silently wrong.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromHfConfig, llamaParamNames, type LlamaConfig } from '../model/config.ts';
import { checkConfigFitsWeights, LlamaModel } from '../model/llama.ts';
import { checkFinite, saveModelFolder } from '../model/weights.ts';
import { readSafetensorsFileHeader, streamSafetensors } from '../io/safetensors-stream.ts';
import { TEXT_FILES } from './chat-template-source.ts';
import { loadFolderTokenizer, readJsonObject, type FolderTokenizer } from './hf-tokenizer.ts';

export const SUPPORTED_ARCHITECTURES = [
  'LlamaForCausalLM',
  'Qwen2ForCausalLM',
  'Qwen3ForCausalLM',
  'Gemma3ForCausalLM',
  'Gemma3ForConditionalGeneration',
] as const;
const SUPPORTED_MODEL_TYPES = ['llama', 'qwen2', 'qwen3', 'gemma3_text', 'gemma3'] as const;
export type HfModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface HfImportResult {
  model: LlamaModel;
  config: LlamaConfig;
  architecture: string;
  modelType: HfModelType;
  /** Storage dtypes met in the weight files (e.g. ["BF16"]). */
  dtypes: string[];
  /** Weight files read, relative to the folder. */
  weightFiles: string[];
  tokenizer: FolderTokenizer | null;
  /** Why no tokenizer was loaded, when tokenizer is null. */
  tokenizerError?: string;
  warnings: string[];
}

/** Prefixes under which a multimodal Gemma 3 folder keeps its language model's tensors (older, newer transformers). */
const GEMMA3_TEXT_PREFIXES = ['language_model.model.', 'model.language_model.'];
/** Its other parts (vision tower, projector), which a text model skips. */
const GEMMA3_SKIPPED =
  /^(vision_tower|multi_modal_projector|model\.vision_tower|model\.multi_modal_projector)\./;

/**
 * The engine's name of a weight-file tensor: the same name, or for a Gemma3ForConditionalGeneration folder its
 * language model's tensor without the prefix (null: a tensor a text model skips).
 */
function engineTensorName(name: string, modelType: HfModelType): string | null {
  if (modelType !== 'gemma3') return name;
  if (GEMMA3_SKIPPED.test(name)) return null;
  for (const p of GEMMA3_TEXT_PREFIXES) if (name.startsWith(p)) return `model.${name.slice(p.length)}`;
  if (name === 'language_model.lm_head.weight' || name === 'lm_head.weight') return 'lm_head.weight';
  return name;
}

/** Checks a raw config.json for features the engine lacks; returns warnings for harmless ones. */
export function checkHfConfigSupported(
  raw: Record<string, unknown>,
  source: string,
): { modelType: HfModelType; architecture: string; warnings: string[] } {
  const warnings: string[] = [];
  const archs = raw.architectures;
  const modelType = raw.model_type;
  const archList = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [];
  const supported = `supported: ${SUPPORTED_ARCHITECTURES.join(', ')} (model_type ${SUPPORTED_MODEL_TYPES.join(', ')})`;
  if (typeof modelType !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
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
  const defaultArch: Record<HfModelType, string> = {
    llama: 'LlamaForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
    qwen3: 'Qwen3ForCausalLM',
    gemma3_text: 'Gemma3ForCausalLM',
    gemma3: 'Gemma3ForConditionalGeneration',
  };
  const architecture = archList[0] ?? defaultArch[modelType as HfModelType];
  for (const key of ['num_experts', 'num_local_experts', 'n_routed_experts'])
    if (typeof raw[key] === 'number' && (raw[key] as number) > 0)
      throw new Error(`${source}: ${key} ${String(raw[key])}: mixture-of-experts models are not supported`);
  // rope_scaling kinds and hidden activations are checked by fromHfConfig, which every model folder passes.
  if (raw.mlp_bias === true)
    throw new Error(`${source}: mlp_bias true is not supported (the engine's MLP has no biases)`);
  if (modelType === 'llama' && raw.attention_bias === true) {
    throw new Error(
      `${source}: attention_bias true on a Llama model adds an o_proj bias, which the engine lacks`,
    );
  }
  if (modelType === 'qwen2' && raw.use_sliding_window === true) {
    warnings.push(
      `${source}: use_sliding_window is true; the engine attends to the full context, which matches only below sliding_window (${String(raw.sliding_window)}) tokens`,
    );
  }
  if (typeof raw.pretraining_tp === 'number' && raw.pretraining_tp > 1)
    warnings.push(
      `${source}: pretraining_tp ${raw.pretraining_tp} is ignored (it only changes how the reference slices matmuls)`,
    );
  return { modelType: modelType as HfModelType, architecture, warnings };
}

/** The text model's config of a config.json (a multimodal Gemma 3 keeps it under text_config). */
function textConfig(
  raw: Record<string, unknown>,
  modelType: HfModelType,
  source: string,
): Record<string, unknown> {
  if (modelType !== 'gemma3') return raw;
  const text = raw.text_config;
  if (typeof text !== 'object' || text === null || Array.isArray(text))
    throw new Error(`${source}: a Gemma3ForConditionalGeneration config needs a text_config object`);
  return { ...(text as Record<string, unknown>), model_type: 'gemma3_text' };
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
  checkFinite(name, data, where);
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
  const text = textConfig(raw, modelType, configPath);
  let config = fromHfConfig(text, configPath);
  if (
    modelType === 'qwen2' &&
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
  /** File names of the tensors read, and of those a text model skips (vision tower, a tied head). */
  const seen = new Set<string>();
  const skipped = new Set<string>();
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
      const own = engineTensorName(name, modelType);
      if (own === null) {
        skipped.add(name);
        return;
      }
      if (own === 'lm_head.weight' && config.tieEmbeddings) {
        warnings.push(`${full}: ${name} ignored (config.json ties it to the embeddings)`);
        skipped.add(name);
        return;
      }
      if (!model.params.has(own))
        throw new Error(
          `${full}: unexpected tensor "${name}" (not part of a ${architecture} with this config)`,
        );
      if (assigned.has(own)) throw new Error(`${full}: tensor "${name}" appears in more than one shard`);
      copyInto(model, own, data, shape, full);
      assigned.add(own);
      seen.add(name);
    });
    for (const d of met) dtypes.add(d);
  }
  if (weightMap) {
    for (const [name, file] of weightMap) {
      const tiedHead = engineTensorName(name, modelType) === 'lm_head.weight' && config.tieEmbeddings;
      if (!seen.has(name) && !skipped.has(name) && !tiedHead && !name.endsWith('rotary_emb.inv_freq')) {
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

/**
 * The tokenizer, chat-template and generation files a folder carries beside its weights, kept as they are (all the
 * text files a derived folder keeps but the import record, which the import writes itself). A function, not a
 * constant: the modules that define and use the list import each other.
 */
export function copiedFiles(): string[] {
  return TEXT_FILES.filter((f) => f !== 'psm-import.json');
}

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
  for (const f of copiedFiles()) {
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
