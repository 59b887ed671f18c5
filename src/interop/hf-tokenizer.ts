/**
 * Tokenizers of imported models. PSM Lab's own byte-level BPE reads the GPT-2 style tokenizer.json its models
 * use; the tokenizers of open-weight models (Qwen2's split regex and NFC normalizer, Llama 3's, SentencePiece
 * style Llama 2 ones) are outside what it reproduces exactly, so those run through @huggingface/tokenizers (the
 * JS port of the HF library) behind the same TextTokenizer interface.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { tokenizerFromJson, type BpeTokenizer } from '../tokenizer/index.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';

/** A TextTokenizer over @huggingface/tokenizers; encode adds no special tokens (like PSM Lab's). */
export class HfTokenizerAdapter implements TextTokenizer {
  readonly vocabSize: number;
  readonly specialTokens: readonly string[];
  private readonly tok: HfJsTokenizer;

  constructor(json: Record<string, unknown>, config: Record<string, unknown> = {}) {
    this.tok = new HfJsTokenizer(json, config);
    const added = Array.isArray(json.added_tokens)
      ? (json.added_tokens as { id: number; content: string; special?: boolean }[])
      : [];
    const vocab = (json.model as { vocab?: unknown } | undefined)?.vocab;
    let maxId = -1;
    if (vocab && typeof vocab === 'object' && !Array.isArray(vocab))
      for (const id of Object.values(vocab as Record<string, number>)) maxId = Math.max(maxId, id);
    else if (Array.isArray(vocab)) maxId = vocab.length - 1;
    for (const t of added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    this.specialTokens = added.filter((t) => t.special).map((t) => t.content);
  }

  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers refuses an empty list
    return this.tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
}

export interface FolderTokenizer {
  tokenizer: TextTokenizer;
  /** 'psm' when PSM Lab's exact byte-level BPE reads the file, 'hf-js' when @huggingface/tokenizers does. */
  kind: 'psm' | 'hf-js';
  /** Why the PSM reader declined, when kind is 'hf-js'. */
  note?: string;
  /** Set when kind is 'psm'. */
  bpe?: BpeTokenizer;
}

/** Reads a JSON file whose top level must be an object; errors name the file. */
export function readJsonObject(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new Error(`${file}: top level must be a JSON object`);
  return raw as Record<string, unknown>;
}

/**
 * The tokenizer of a model folder: PSM Lab's BPE when it reads tokenizer.json exactly, else @huggingface/tokenizers
 * with tokenizer_config.json. Throws when the folder has no tokenizer.json or neither library can read it.
 */
export function loadFolderTokenizer(dir: string): FolderTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file))
    throw new Error(
      `${file}: not found (the folder has no tokenizer.json; tokenizer.model / vocab.txt tokenizers are not supported)`,
    );
  const json = readJsonObject(file);
  try {
    const bpe = tokenizerFromJson(json, file);
    return { tokenizer: bpe, kind: 'psm', bpe };
  } catch (e) {
    const note = (e as Error).message;
    const cfgPath = path.join(dir, 'tokenizer_config.json');
    const config = fs.existsSync(cfgPath) ? readJsonObject(cfgPath) : {};
    try {
      return { tokenizer: new HfTokenizerAdapter(json, config), kind: 'hf-js', note };
    } catch (e2) {
      throw new Error(
        `${file}: neither PSM Lab's tokenizer (${note}) nor @huggingface/tokenizers (${(e2 as Error).message}) can read it`,
      );
    }
  }
}
