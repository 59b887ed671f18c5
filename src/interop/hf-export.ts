/**
 * Export a PSM Lab model as a complete Hugging Face model folder, loadable by `transformers`
 * (AutoModelForCausalLM / AutoTokenizer) and by any tool that reads HF folders:
 *
 *   config.json              LlamaForCausalLM (Qwen2ForCausalLM when q/k/v have biases), with bos/eos ids
 *   model.safetensors        F32 tensors under the HF Llama names
 *   tokenizer.json           byte-level BPE (the tokenizers library format)
 *   tokenizer_config.json    PreTrainedTokenizerFast, special tokens, the chat template
 *   special_tokens_map.json
 *   generation_config.json   bos/eos ids, greedy by default
 *
 * A model folder whose tokenizer is not PSM Lab's own (an imported Qwen or Llama 3 checkpoint) keeps it: its
 * tokenizer files are copied as they are, chat template included.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toHfConfig } from '../model/config.ts';
import type { LlamaModel } from '../model/llama.ts';
import { saveModelFolder } from '../model/weights.ts';
import { tokenizerToJson, type BpeTokenizer } from '../tokenizer/index.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';
import { PSM_CHAT_TEMPLATE } from './chat-template.ts';
import { copiedFiles } from './hf-import.ts';
import { readJsonObject } from './hf-tokenizer.ts';

export const END_OF_TEXT = '<|endoftext|>';

export interface SpecialTokenIds {
  bos: { id: number; content: string } | null;
  eos: { id: number; content: string } | null;
}

/** The end-of-text token serves as both BOS (document separator) and EOS, as in GPT-2. */
export function specialTokenIds(tokenizer: BpeTokenizer): SpecialTokenIds {
  const id = tokenizer.tokenToId(END_OF_TEXT);
  if (id !== undefined) return { bos: { id, content: END_OF_TEXT }, eos: { id, content: END_OF_TEXT } };
  const first = tokenizer.getAddedTokens().find((t) => t.special);
  const tok = first ? { id: first.id, content: first.content } : null;
  return { bos: tok, eos: tok };
}

export interface HfExportOptions {
  /** Jinja chat template (default: the PSM world's "User: ...\nAssistant: ..." format). */
  chatTemplate?: string;
  /** Extra string metadata stored in the safetensors header. */
  metadata?: Record<string, string>;
}

export interface HfExportResult {
  dir: string;
  files: string[];
}

/** A special token as tokenizer_config.json names it: a string, or an AddedToken object {content, ...}. */
export function specialTokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

/** Refuses what a Hugging Face folder cannot hold: LoRA adapters, token ids past the embedding, a file at outDir. */
function checkExportable(model: LlamaModel, tokenizer: TextTokenizer, outDir: string): void {
  if (model.adapters.size > 0)
    throw new Error(
      'export: the model carries LoRA adapters; merge them (model.mergeLora()) before exporting',
    );
  if (tokenizer.vocabSize > model.config.vocabSize) {
    throw new Error(
      `export: the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is only ${model.config.vocabSize}`,
    );
  }
  if (fs.existsSync(outDir) && !fs.statSync(outDir).isDirectory())
    throw new Error(`export: ${outDir} exists and is not a folder`);
}

/**
 * Writes the model of folder `sourceDir` as a Hugging Face model folder (each file atomically) with the folder's own
 * tokenizer files (tokenizer.json, tokenizer_config.json and its chat template, special_tokens_map.json,
 * generation_config.json where present) copied byte for byte; config.json names the BOS / EOS ids of
 * tokenizer_config.json. For folders whose tokenizer PSM Lab's byte-level BPE does not read (see
 * {@link exportHfFolder} for those it does).
 */
export function exportHfFolderKeepingTokenizer(
  model: LlamaModel,
  tokenizer: TextTokenizer,
  sourceDir: string,
  outDir: string,
): HfExportResult {
  checkExportable(model, tokenizer, outDir);
  if (path.resolve(sourceDir) === path.resolve(outDir))
    throw new Error(`export: ${outDir} is the model folder itself; choose another output folder`);
  const configFile = path.join(sourceDir, 'tokenizer_config.json');
  const tokenizerConfig = fs.existsSync(configFile) ? readJsonObject(configFile) : {};
  const idOf = (key: string): number | null => {
    const content = specialTokenContent(tokenizerConfig[key]);
    return content === undefined ? null : (tokenizer.tokenToId(content) ?? null);
  };
  const config = {
    ...toHfConfig(model.config),
    bos_token_id: idOf('bos_token'),
    eos_token_id: idOf('eos_token'),
    use_cache: true,
  };
  const extra: Record<string, string | Uint8Array> = {
    'config.json': `${JSON.stringify(config, null, 2)}\n`,
  };
  for (const f of copiedFiles()) {
    const file = path.join(sourceDir, f);
    if (fs.existsSync(file)) extra[f] = fs.readFileSync(file);
  }
  saveModelFolder(outDir, model, extra, { producer: 'psm-lab' });
  return {
    dir: outDir,
    files: ['model.safetensors', ...Object.keys(extra)].map((f) => path.join(outDir, f)),
  };
}

/** Writes model + tokenizer as a Hugging Face model folder (each file atomically). */
export function exportHfFolder(
  model: LlamaModel,
  tokenizer: BpeTokenizer,
  outDir: string,
  opts: HfExportOptions = {},
): HfExportResult {
  checkExportable(model, tokenizer, outDir);
  const special = specialTokenIds(tokenizer);
  const chatTemplate = opts.chatTemplate ?? PSM_CHAT_TEMPLATE;
  const config = {
    ...toHfConfig(model.config),
    bos_token_id: special.bos?.id ?? null,
    eos_token_id: special.eos?.id ?? null,
    use_cache: true,
  };
  const tokenizerJson = tokenizerToJson(tokenizer);
  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of tokenizer.getAddedTokens()) {
    addedTokensDecoder[String(t.id)] = {
      content: t.content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: t.special,
    };
  }
  const tokenizerConfig = {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: special.bos?.content ?? null,
    eos_token: special.eos?.content ?? null,
    pad_token: special.eos?.content ?? null,
    unk_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: model.config.maxSeqLen,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: chatTemplate,
  };
  const specialMap: Record<string, string> = {};
  if (special.bos) specialMap.bos_token = special.bos.content;
  if (special.eos) {
    specialMap.eos_token = special.eos.content;
    specialMap.pad_token = special.eos.content;
  }
  const generationConfig: Record<string, unknown> = { do_sample: false, max_length: model.config.maxSeqLen };
  if (special.bos) generationConfig.bos_token_id = special.bos.id;
  if (special.eos) generationConfig.eos_token_id = special.eos.id;

  const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;
  const extra: Record<string, string> = {
    // Replaces the plain config saveModelFolder writes with one that also names the special token ids.
    'config.json': json(config),
    'tokenizer.json': json(tokenizerJson),
    'tokenizer_config.json': json(tokenizerConfig),
    'special_tokens_map.json': json(specialMap),
    'generation_config.json': json(generationConfig),
  };
  saveModelFolder(outDir, model, extra, { producer: 'psm-lab', ...opts.metadata });
  return {
    dir: outDir,
    files: ['model.safetensors', ...Object.keys(extra)].map((f) => path.join(outDir, f)),
  };
}
