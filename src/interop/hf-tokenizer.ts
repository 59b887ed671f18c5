/**
 * Tokenizers of imported models. PSM Lab's own byte-level BPE reads the GPT-2 style tokenizer.json its models
 * use; the tokenizers of open-weight models (Qwen2's split regex and NFC normalizer, Llama 3's, SentencePiece
 * style Gemma and Llama 2 ones) are outside what it reproduces exactly, so those run through @huggingface/tokenizers
 * (the JS port of the HF library) behind the same TextTokenizer interface.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { symbolsToBytes, tokenizerFromJson, type BpeTokenizer } from '../tokenizer/index.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';

/** A tokenizer.json decoder or pre-tokenizer and the ones in its Sequence, flattened. */
function components(spec: unknown): Record<string, unknown>[] {
  if (!spec || typeof spec !== 'object') return [];
  const s = spec as Record<string, unknown>;
  const inner = [s.decoders, s.pretokenizers].find(Array.isArray) as unknown[] | undefined;
  return [s, ...(inner ?? []).flatMap(components)];
}

/**
 * How a vocabulary's token strings stand for bytes, read from tokenizer.json (never from a model's name):
 * - 'byte-level': through GPT-2's byte-to-character table (a ByteLevel decoder: GPT-2, Qwen, Llama 3);
 * - 'sentencepiece': text with a marker character for the space, "▁" (a Metaspace decoder, or a decoder that
 *   replaces the marker by a space, as Gemma's does), every other character its own UTF-8;
 * - 'text': anything else, a token standing for the text the library decodes it to.
 * Where the decoder says neither, the pre-tokenizer (ByteLevel, Metaspace) decides.
 */
type TokenSpelling = { kind: 'byte-level' } | { kind: 'sentencepiece'; space: string } | { kind: 'text' };

function tokenSpelling(json: Record<string, unknown>): TokenSpelling {
  for (const parts of [components(json.decoder), components(json.pre_tokenizer)]) {
    if (parts.some((d) => d.type === 'ByteLevel')) return { kind: 'byte-level' };
    const meta = parts.find((d) => d.type === 'Metaspace');
    if (meta)
      return { kind: 'sentencepiece', space: typeof meta.replacement === 'string' ? meta.replacement : '▁' };
    for (const d of parts) {
      const marker = (d.pattern as { String?: unknown } | undefined)?.String;
      if (d.type === 'Replace' && d.content === ' ' && typeof marker === 'string' && marker.length > 0)
        return { kind: 'sentencepiece', space: marker };
    }
  }
  return { kind: 'text' };
}

/** A byte-fallback token ("<0xE4>") of SentencePiece-style vocabularies: the byte it stands for. */
const BYTE_FALLBACK_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

interface AddedTokenSpec {
  id: number;
  content: string;
  special?: boolean;
  normalized?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

/** Leftmost-longest matching of added tokens' contents, as the library (and Hugging Face's) split text at them. */
class AddedTokenTrie {
  private readonly root: TrieNode = { next: new Map() };

  constructor(tokens: readonly AddedTokenSpec[]) {
    for (const t of tokens) {
      let node = this.root;
      for (let i = 0; i < t.content.length; i++) {
        const c = t.content[i];
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = { next: new Map() }));
        node = child;
      }
      node.token = t;
    }
  }

  /** The longest added token starting at `at`, if any. */
  match(text: string, at: number): AddedTokenSpec | undefined {
    let node: TrieNode | undefined = this.root;
    let found: AddedTokenSpec | undefined;
    for (let i = at; i < text.length && node; i++) {
      node = node.next.get(text[i]);
      if (node?.token) found = node.token;
    }
    return found;
  }
}

interface TrieNode {
  next: Map<string, TrieNode>;
  token?: AddedTokenSpec;
}

/** Text cut at added tokens: a string is text, a spec the token found there. */
type Section = string | AddedTokenSpec;

/**
 * A TextTokenizer over @huggingface/tokenizers; encode adds no special tokens (like PSM Lab's). Token bytes are exact
 * for byte-level vocabularies (each token string maps back to its bytes through GPT-2's byte-to-character table) and
 * SentencePiece-style ones (Gemma, Llama 2: "▁" is the space, "<0xE4>" the byte 0xE4, any other character its UTF-8);
 * in any other vocabulary a token stands for the UTF-8 of its decoded text.
 *
 * `modelRows`, the model's embedding rows, may be fewer than the tokenizer's ids when the ids past them are added
 * tokens only, as with Gemma 3 1B (262,144 rows; its tokenizer adds `<image_soft_token>` at 262,144 for the
 * multimodal models): the tokenizer then has `modelRows` tokens, the others are no tokens of this model's, and
 * text that encode() would turn into one is refused.
 */
export class HfTokenizerAdapter implements TextTokenizer {
  readonly vocabSize: number;
  readonly specialTokens: readonly string[];
  readonly addedTokenContents: readonly string[];
  private readonly tok: HfJsTokenizer;
  private readonly addedById = new Map<number, AddedTokenSpec>();
  private readonly specialIds = new Set<number>();
  private readonly spelling: TokenSpelling;
  private readonly byteFallback: boolean;
  /** Added tokens matched in the raw text, and those matched after normalization (normalized: true). */
  private readonly rawAdded: AddedTokenTrie;
  private readonly normalizedAdded: AddedTokenTrie;
  private readonly utf8 = new TextEncoder();
  private readonly utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(json: Record<string, unknown>, config: Record<string, unknown> = {}, modelRows?: number) {
    this.tok = new HfJsTokenizer(json, config);
    const added = Array.isArray(json.added_tokens) ? (json.added_tokens as AddedTokenSpec[]) : [];
    // The library takes a malformed entry as it is, and its id then surfaces as undefined mid-encode.
    added.forEach((t, i) => {
      if (!Number.isInteger(t?.id) || t.id < 0 || typeof t.content !== 'string' || t.content === '')
        throw new Error(
          `added_tokens[${i}] must have a non-negative integer id and non-empty string content, got ${JSON.stringify(t)}`,
        );
    });
    const model = json.model as { vocab?: unknown; byte_fallback?: unknown } | undefined;
    const vocab = model?.vocab;
    let maxVocabId = -1;
    if (vocab && typeof vocab === 'object' && !Array.isArray(vocab))
      for (const [piece, id] of Object.entries(vocab as Record<string, unknown>)) {
        if (!Number.isInteger(id) || (id as number) < 0)
          throw new Error(
            `model.vocab[${JSON.stringify(piece)}] must be a non-negative integer id, got ${JSON.stringify(id)}`,
          );
        maxVocabId = Math.max(maxVocabId, id as number);
      }
    else if (Array.isArray(vocab)) maxVocabId = vocab.length - 1;
    const size = added.reduce((m, t) => Math.max(m, t.id), maxVocabId) + 1;
    // Ids past the model's rows are dropped only when they are added tokens, never model vocabulary pieces.
    this.vocabSize = modelRows !== undefined && modelRows < size && maxVocabId < modelRows ? modelRows : size;
    const own = added.filter((t) => t.id < this.vocabSize);
    for (const t of own) {
      this.addedById.set(t.id, t);
      if (t.special) this.specialIds.add(t.id);
    }
    this.specialTokens = own.filter((t) => t.special).map((t) => t.content);
    this.addedTokenContents = own.map((t) => t.content);
    this.spelling = tokenSpelling(json);
    this.byteFallback =
      model?.byte_fallback === true || components(json.decoder).some((d) => d.type === 'ByteFallback');
    // The library's default: an added token without the flag is normalized unless it is special.
    const normalized = (t: AddedTokenSpec) => (t.normalized ?? !t.special) && this.tok.normalizer !== null;
    this.rawAdded = new AddedTokenTrie(added.filter((t) => !normalized(t)));
    this.normalizedAdded = new AddedTokenTrie(
      added.filter(normalized).map((t) => ({ ...t, content: this.tok.normalizer!(t.content) })),
    );
  }

  encode(text: string): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    for (const id of ids)
      if (id >= this.vocabSize)
        throw new Error(
          `the text holds ${JSON.stringify(this.tok.id_to_token(id))} (token id ${id}), a token of the tokenizer that the model has no embedding row for (its vocabulary is ${this.vocabSize} tokens)`,
        );
    return ids;
  }

  /**
   * Hugging Face's split_special_tokens=True (llama.cpp's parse_special=false): special tokens are read as text, the
   * other added tokens are still split out where they occur (Gemma's "\n", tab runs and HTML tags, Qwen3's <think>),
   * as encode() splits them, and the text between goes through the library's normalizer, pre-tokenizer and model.
   * Equals encode() on text without special tokens.
   */
  encodeOrdinary(text: string): number[] {
    const normalizer = this.tok.normalizer;
    const ids: number[] = [];
    this.splitOrdinary(text, this.rawAdded).forEach((section, sectionIndex) => {
      if (typeof section !== 'string') return void ids.push(section.id);
      if (section === '') return;
      const normalized = normalizer ? normalizer(section) : section;
      for (const part of this.splitOrdinary(normalized, this.normalizedAdded)) {
        if (typeof part !== 'string') ids.push(part.id);
        else if (part !== '') ids.push(...this.modelIds(part, sectionIndex));
      }
    });
    return ids;
  }

  /** The pre-tokenizer and model on normalized text; `sectionIndex` is its section's place in the whole text. */
  private modelIds(normalized: string, sectionIndex: number): number[] {
    const { pre_tokenizer: preTokenizer, model } = this.tok;
    if (!model) throw new Error('tokenizer.json has no model');
    const words = preTokenizer ? preTokenizer(normalized, { section_index: sectionIndex }) : [normalized];
    return model(words).map((t: string) => {
      const id = model.tokens_to_ids.get(t) ?? model.unk_token_id;
      if (id === undefined) throw new Error(`token ${JSON.stringify(t)} is not in the vocabulary`);
      return id;
    });
  }

  /**
   * `text` cut at the added tokens of `trie` that are not special (a special token's match stays text, as Hugging
   * Face skips it), with the whitespace next to a token trimmed where it strips it (lstrip, rstrip). A section
   * trimmed to '' stays: sections are numbered as the library numbers them (for a pre-tokenizer's first section).
   */
  private splitOrdinary(text: string, trie: AddedTokenTrie): Section[] {
    const sections: Section[] = [];
    let from = 0;
    for (let i = 0; i < text.length;) {
      const t = trie.match(text, i);
      if (!t || t.special || t.id >= this.vocabSize) {
        i += t ? t.content.length : 1;
        continue;
      }
      if (i > from) sections.push(text.slice(from, i));
      sections.push(t);
      i += t.content.length;
      from = i;
    }
    if (from < text.length) sections.push(text.slice(from));
    sections.forEach((s, i) => {
      if (typeof s === 'string') return;
      const [before, after] = [sections[i - 1], sections[i + 1]];
      if (s.lstrip && typeof before === 'string') sections[i - 1] = before.trimEnd();
      if (s.rstrip && typeof after === 'string') sections[i + 1] = after.trimStart();
    });
    return sections;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers refuses an empty list
    for (const id of ids) this.checkId(id);
    return this.tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    const added = this.addedById.get(id)?.content;
    const token = added ?? this.tok.id_to_token(id);
    if (token === undefined) throw new Error(`token id ${id} is not in the vocabulary`);
    if (added !== undefined && this.spelling.kind !== 'sentencepiece') return this.utf8.encode(added);
    if (this.spelling.kind === 'byte-level') {
      const bytes = symbolsToBytes(token);
      if (bytes) return bytes;
    }
    const byte = this.byteFallback && added === undefined ? BYTE_FALLBACK_TOKEN.exec(token) : null;
    if (byte) return Uint8Array.of(parseInt(byte[1], 16));
    // The decoder turns the marker into a space in every token, added ones too (Gemma's "▁▁" is two spaces).
    if (this.spelling.kind === 'sentencepiece')
      return this.utf8.encode(token.replaceAll(this.spelling.space, ' '));
    return this.utf8.encode(
      this.tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
    );
  }

  decodeToken(id: number): string {
    return this.utf8Decoder.decode(this.tokenBytes(id));
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenToId(token: string): number | undefined {
    const id = this.tok.token_to_id(token);
    return id !== undefined && id < this.vocabSize ? id : undefined;
  }

  idToToken(id: number): string | undefined {
    return id < this.vocabSize ? this.tok.id_to_token(id) : undefined;
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
 * with tokenizer_config.json (fitted to `modelRows` embedding rows where it can be: see HfTokenizerAdapter). Throws
 * when the folder has no tokenizer.json or neither library can read it.
 */
export function loadFolderTokenizer(dir: string, modelRows?: number): FolderTokenizer {
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
      return { tokenizer: new HfTokenizerAdapter(json, config, modelRows), kind: 'hf-js', note };
    } catch (e2) {
      throw new Error(
        `${file}: neither PSM Lab's tokenizer (${note}) nor @huggingface/tokenizers (${(e2 as Error).message}) can read it`,
      );
    }
  }
}

/**
 * The tokenizer a model folder's model runs with (see loadFolderTokenizer), refused, naming the file, when it has ids
 * past the model's `modelVocabSize` embedding rows (added tokens past them aside, as Gemma 3 1B's image token). A
 * model may have more rows than its tokenizer has tokens (Qwen pads its vocabulary); the engine never samples those.
 */
export function loadModelTokenizer(dir: string, modelVocabSize: number): TextTokenizer {
  const { tokenizer, note } = loadFolderTokenizer(dir, modelVocabSize);
  if (tokenizer.vocabSize > modelVocabSize)
    throw new Error(
      `${path.join(dir, 'tokenizer.json')}: the tokenizer has ids up to ${tokenizer.vocabSize - 1}, but the model's vocabulary is ${modelVocabSize} tokens${note ? ` (PSM Lab's own reader declined it: ${note})` : ''}`,
    );
  return tokenizer;
}
