/**
 * Tokenizers of imported models. PSM Lab's own byte-level BPE reads the GPT-2 style tokenizer.json its models
 * use; the tokenizers of open-weight models (Qwen2's split regex and NFC normalizer, Llama 3's, SentencePiece
 * style Llama 2 ones) are outside what it reproduces exactly, so those run through @huggingface/tokenizers (the
 * JS port of the HF library) behind the same TextTokenizer interface.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { symbolsToBytes, tokenizerFromJson, type BpeTokenizer } from '../tokenizer/index.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';

/** Whether a tokenizer.json decoder (or one in its Sequence) is `type`. */
function hasDecoder(decoder: unknown, type: string): boolean {
  if (!decoder || typeof decoder !== 'object') return false;
  const d = decoder as { type?: unknown; decoders?: unknown };
  return d.type === type || (Array.isArray(d.decoders) && d.decoders.some((x) => hasDecoder(x, type)));
}

/** A byte-fallback token ("<0xE4>") of SentencePiece-style vocabularies: the byte it stands for. */
const BYTE_FALLBACK_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * A TextTokenizer over @huggingface/tokenizers; encode adds no special tokens (like PSM Lab's). Token bytes are exact
 * for byte-level vocabularies (GPT-2, Qwen, Llama 3: each token string maps back to its bytes through the GPT-2
 * byte-to-character table) and for byte-fallback tokens; any other token stands for the UTF-8 of its decoded text.
 */
export class HfTokenizerAdapter implements TextTokenizer {
  readonly vocabSize: number;
  readonly specialTokens: readonly string[];
  readonly addedTokenContents: readonly string[];
  private readonly tok: HfJsTokenizer;
  private readonly addedById = new Map<number, string>();
  private readonly specialIds = new Set<number>();
  private readonly byteLevel: boolean;
  private readonly byteFallback: boolean;
  private readonly utf8 = new TextEncoder();
  private readonly utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(json: Record<string, unknown>, config: Record<string, unknown> = {}) {
    this.tok = new HfJsTokenizer(json, config);
    const added = Array.isArray(json.added_tokens)
      ? (json.added_tokens as { id: number; content: string; special?: boolean }[])
      : [];
    const model = json.model as { vocab?: unknown; byte_fallback?: unknown } | undefined;
    const vocab = model?.vocab;
    let maxId = -1;
    if (vocab && typeof vocab === 'object' && !Array.isArray(vocab))
      for (const id of Object.values(vocab as Record<string, number>)) maxId = Math.max(maxId, id);
    else if (Array.isArray(vocab)) maxId = vocab.length - 1;
    for (const t of added) {
      maxId = Math.max(maxId, t.id);
      this.addedById.set(t.id, t.content);
      if (t.special) this.specialIds.add(t.id);
    }
    this.vocabSize = maxId + 1;
    this.specialTokens = added.filter((t) => t.special).map((t) => t.content);
    this.addedTokenContents = added.map((t) => t.content);
    this.byteLevel = hasDecoder(json.decoder, 'ByteLevel');
    this.byteFallback = model?.byte_fallback === true;
  }

  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * The library's pipeline (normalizer, pre-tokenizer, model) on the whole text, without first splitting out the
   * added tokens: what Hugging Face's split_special_tokens=True does. Equals encode() on text without added tokens.
   */
  encodeOrdinary(text: string): number[] {
    const { normalizer, pre_tokenizer: preTokenizer, model } = this.tok;
    if (!model) throw new Error('tokenizer.json has no model');
    const normalized = normalizer ? normalizer(text) : text;
    if (normalized.length === 0) return [];
    const words = preTokenizer ? preTokenizer(normalized, { section_index: 0 }) : [normalized];
    return model(words).map((t: string) => {
      const id = model.tokens_to_ids.get(t) ?? model.unk_token_id;
      if (id === undefined) throw new Error(`token ${JSON.stringify(t)} is not in the vocabulary`);
      return id;
    });
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers refuses an empty list
    for (const id of ids) this.checkId(id);
    return this.tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    const added = this.addedById.get(id);
    if (added !== undefined) return this.utf8.encode(added);
    const token = this.tok.id_to_token(id);
    if (token === undefined) throw new Error(`token id ${id} is not in the vocabulary`);
    if (this.byteLevel) {
      const bytes = symbolsToBytes(token);
      if (bytes) return bytes;
    }
    const byte = this.byteFallback ? BYTE_FALLBACK_TOKEN.exec(token) : null;
    if (byte) return Uint8Array.of(parseInt(byte[1], 16));
    return this.utf8.encode(
      this.tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
    );
  }

  decodeToken(id: number): string {
    const added = this.addedById.get(id);
    return added ?? this.utf8Decoder.decode(this.tokenBytes(id));
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
      throw new Error(`token id ${id} is out of range [0, ${this.vocabSize})`);
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
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read it (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
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

/**
 * The tokenizer a model folder's model runs with (see loadFolderTokenizer), refused, naming the file, when it has ids
 * past the model's `modelVocabSize` embedding rows. A model may have more rows than its tokenizer has tokens (Qwen
 * pads its vocabulary); the engine never samples those.
 */
export function loadModelTokenizer(dir: string, modelVocabSize: number): TextTokenizer {
  const { tokenizer, note } = loadFolderTokenizer(dir);
  if (tokenizer.vocabSize > modelVocabSize)
    throw new Error(
      `${path.join(dir, 'tokenizer.json')}: the tokenizer has ids up to ${tokenizer.vocabSize - 1}, but the model's vocabulary is ${modelVocabSize} tokens${note ? ` (PSM Lab's own reader declined it: ${note})` : ''}`,
    );
  return tokenizer;
}
