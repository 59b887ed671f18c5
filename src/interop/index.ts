/**
 * Interop: take PSM Lab models to other tools (Hugging Face folders, GGUF for llama.cpp) and bring small
 * open-weight models in. These functions work on folders and files; the `psm export` / `psm import` commands
 * call them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteJsonSync } from '../io/atomic-write.ts';
import { loadModelFolder, saveModelFolder } from '../model/weights.ts';
import { toHfConfig } from '../model/config.ts';
import { BpeTokenizer, tokenizerToJson } from '../tokenizer/index.ts';
import { chatTemplateFromGguf } from './chat-template-source.ts';
import { exportHfFolder, exportHfFolderKeepingTokenizer } from './hf-export.ts';
import { importHfToModelFolder } from './hf-import.ts';
import { loadFolderTokenizer, readJsonObject } from './hf-tokenizer.ts';
import {
  ggufConfig,
  ggufToModel,
  ggufTextTokenizer,
  ggufVocabFromTokenizerJson,
  readGgufFile,
  writeGgufFile,
  ggufArchitecture,
  ggmlTypeName,
  type GgufVocab,
} from './gguf.ts';

export { PSM_CHAT_TEMPLATE, PSM_CHAT_STOP, formatChat, type ChatMessage } from './chat-template.ts';
export {
  exportHfFolder,
  exportHfFolderKeepingTokenizer,
  specialTokenIds,
  type HfExportOptions,
} from './hf-export.ts';
export {
  importHfFolder,
  importHfToModelFolder,
  checkHfConfigSupported,
  SUPPORTED_ARCHITECTURES,
  type HfImportResult,
} from './hf-import.ts';
export { loadFolderTokenizer, HfTokenizerAdapter, type FolderTokenizer } from './hf-tokenizer.ts';
export {
  writeGgufFile,
  readGgufFile,
  readGgufHeader,
  checkGgufModelFile,
  checkGgufTensorValues,
  parseGguf,
  serializeGguf,
  ggufContents,
  ggufConfig,
  ggufToModel,
  ggufTokenizer,
  ggufTextTokenizer,
  ggufVocabFromTokenizerJson,
  ggufTensorData,
  permuteForGguf,
  unpermuteFromGguf,
  type GgufFile,
  type GgufHeader,
  type GgufValue,
  type GgufExportOptions,
  type GgufVocab,
} from './gguf.ts';

export type ExportFormat = 'hf' | 'gguf';

export interface ExportSummary {
  format: ExportFormat;
  out: string;
  bytes: number;
  architecture: string;
  parameters: number;
}

function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
}

/**
 * Exports a model folder (config.json, model.safetensors, tokenizer.json) as an HF folder or a GGUF file. PSM Lab's
 * own byte-level BPE tokenizer is written out from what it reads; an imported folder's Hugging Face tokenizer is
 * copied as it is into an HF folder, and written into a GGUF when llama.cpp reproduces its splitting (Qwen2/2.5/3,
 * Llama 3; others are refused by name).
 */
export function exportModelFolder(
  modelDir: string,
  format: ExportFormat,
  out: string,
  opts: { dtype?: 'F32' | 'F16'; name?: string } = {},
): ExportSummary {
  if (format !== 'hf' && format !== 'gguf')
    throw new Error(`export: unknown format "${String(format)}" (use hf or gguf)`);
  const model = loadModelFolder(modelDir);
  const tok = loadFolderTokenizer(modelDir);
  if (format === 'hf') {
    if (opts.dtype && opts.dtype !== 'F32')
      throw new Error('export: the Hugging Face folder is written in F32 only');
    if (tok.bpe) exportHfFolder(model, tok.bpe, out);
    else exportHfFolderKeepingTokenizer(model, tok.tokenizer, modelDir, out);
    return {
      format,
      out,
      bytes: folderBytes(out),
      architecture: String((toHfConfig(model.config).architectures as string[])[0]),
      parameters: model.parameterCount(),
    };
  }
  const vocab = tok.bpe ?? folderGgufVocab(modelDir);
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const bytes = writeGgufFile(out, model, vocab, {
    dtype: opts.dtype,
    name: opts.name ?? path.basename(path.resolve(modelDir)),
  });
  return {
    format,
    out,
    bytes,
    architecture: ggufArchitecture(model.config),
    parameters: model.parameterCount(),
  };
}

/** The GGUF vocabulary of a folder's Hugging Face tokenizer.json, with tokenizer_config.json's special tokens and chat template. */
function folderGgufVocab(modelDir: string): GgufVocab {
  const file = path.join(modelDir, 'tokenizer.json');
  const configFile = path.join(modelDir, 'tokenizer_config.json');
  const config = fs.existsSync(configFile) ? readJsonObject(configFile) : {};
  return ggufVocabFromTokenizerJson(readJsonObject(file), config, file);
}

export interface ImportSummary {
  from: string;
  out: string;
  kind: 'hf' | 'gguf';
  architecture: string;
  parameters: number;
  dtypes: string[];
  tokenizer: string | null;
  warnings: string[];
}

/**
 * Imports an HF folder (Llama 3, SmolLM2, Qwen2/2.5, Qwen3, Gemma 3) or a GGUF file (llama, qwen2, qwen3, gemma3;
 * F32/F16/BF16/Q8_0) into a PSM Lab model folder.
 */
export function importModel(from: string, out: string): ImportSummary {
  if (!fs.existsSync(from)) throw new Error(`${from}: not found`);
  if (fs.statSync(from).isDirectory()) {
    const r = importHfToModelFolder(from, out);
    return {
      from,
      out,
      kind: 'hf',
      architecture: r.architecture,
      parameters: r.model.parameterCount(),
      dtypes: r.dtypes,
      tokenizer: r.tokenizer?.kind ?? null,
      warnings: r.warnings,
    };
  }
  const file = readGgufFile(from);
  const config = ggufConfig(file);
  const model = ggufToModel(file);
  const { tokenizer, tokenizerJson, reason } = ggufTextTokenizer(file);
  const warnings = tokenizer ? [] : [`no tokenizer: ${reason}`];
  const dtypes = [...new Set(file.tensors.map((t) => ggmlTypeName(t.type)))];
  const json = tokenizerJson ?? (tokenizer instanceof BpeTokenizer ? tokenizerToJson(tokenizer) : null);
  const extra: Record<string, string> = {};
  if (json) extra['tokenizer.json'] = `${JSON.stringify(json, null, 2)}\n`;
  // The file's chat template travels into tokenizer_config.json, where a model folder keeps it.
  let chat: ReturnType<typeof chatTemplateFromGguf> = null;
  try {
    chat = chatTemplateFromGguf(file);
  } catch (e) {
    warnings.push(`chat template not kept: ${(e as Error).message}`);
  }
  if (chat)
    extra['tokenizer_config.json'] = `${JSON.stringify(
      { chat_template: chat.source, bos_token: chat.bosToken ?? null, eos_token: chat.eosToken ?? null },
      null,
      2,
    )}\n`;
  saveModelFolder(out, model, extra, { producer: 'psm-lab import', source: 'gguf' });
  atomicWriteJsonSync(path.join(out, 'psm-import.json'), {
    source: path.resolve(from),
    format: 'gguf',
    architecture: ggufArchitecture(config),
    warnings,
  });
  return {
    from,
    out,
    kind: 'gguf',
    architecture: ggufArchitecture(config),
    parameters: model.parameterCount(),
    dtypes,
    tokenizer: tokenizer ? (tokenizerJson ? 'hf-js' : 'psm') : null,
    warnings,
  };
}
