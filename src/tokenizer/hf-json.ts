/**
 * Hugging Face tokenizer.json reader/writer for byte-level BPE.
 *
 * Only the configuration our encoder reproduces exactly is accepted: model BPE (no dropout, no
 * byte_fallback, no ignore_merges, no subword prefix/suffix), pre_tokenizer ByteLevel with
 * use_regex true and add_prefix_space false, no normalizer. Anything else is rejected with the file
 * name and the offending field, because silently encoding differently from the HF libraries would
 * corrupt every downstream token id.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { atomicWriteJson, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { BpeTokenizer, type AddedTokenSpec } from './bpe.ts';

const BYTE_LEVEL = {
  type: 'ByteLevel',
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: true,
} as const;

/** The tokenizer.json document for `tokenizer`, in the layout the HF Rust library writes. */
export function tokenizerToJson(tokenizer: BpeTokenizer): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  tokenizer.getTokens().forEach((tok, id) => {
    vocab[tok] = id;
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: tokenizer.getAddedTokens().map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: t.special,
    })),
    normalizer: null,
    pre_tokenizer: { ...BYTE_LEVEL },
    post_processor: { ...BYTE_LEVEL, trim_offsets: false },
    decoder: { ...BYTE_LEVEL },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: tokenizer.getMerges().map(([a, b]) => [a, b]),
    },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkByteLevel(src: string, field: string, value: unknown, requireRegex: boolean): void {
  if (!isObject(value) || value.type !== 'ByteLevel') {
    throw new Error(`${src}: ${field} must be {"type": "ByteLevel", ...}, got ${JSON.stringify(value)}`);
  }
  if (value.add_prefix_space === true && field === 'pre_tokenizer') {
    throw new Error(
      `${src}: ${field}.add_prefix_space true is not supported (text would gain a leading space)`,
    );
  }
  if (requireRegex && value.use_regex === false) {
    throw new Error(`${src}: ${field}.use_regex false is not supported (GPT-2 regex splitting is required)`);
  }
}

/** Absent and null both mean "off" for optional model fields. */
function isUnset(v: unknown): boolean {
  return v === undefined || v === null || v === false;
}

/**
 * Builds a tokenizer from a parsed tokenizer.json document. `sourceName` (usually the path) prefixes
 * every error message.
 */
export function tokenizerFromJson(json: unknown, sourceName = 'tokenizer.json'): BpeTokenizer {
  const src = sourceName;
  if (!isObject(json)) throw new Error(`${src}: top level must be a JSON object`);
  const model = json.model;
  if (!isObject(model)) throw new Error(`${src}: missing "model" object`);
  if (model.type !== 'BPE')
    throw new Error(`${src}: model.type must be "BPE", got ${JSON.stringify(model.type)}`);
  for (const field of [
    'dropout',
    'byte_fallback',
    'ignore_merges',
    'continuing_subword_prefix',
    'end_of_word_suffix',
  ]) {
    if (!isUnset(model[field])) {
      throw new Error(`${src}: model.${field} = ${JSON.stringify(model[field])} is not supported`);
    }
  }
  if (json.normalizer !== undefined && json.normalizer !== null) {
    throw new Error(`${src}: normalizer must be null, got ${JSON.stringify(json.normalizer)}`);
  }
  checkByteLevel(src, 'pre_tokenizer', json.pre_tokenizer, true);
  checkByteLevel(src, 'decoder', json.decoder, false);
  if (json.post_processor !== null && json.post_processor !== undefined) {
    checkByteLevel(src, 'post_processor', json.post_processor, false);
  }

  const vocab = model.vocab;
  if (!isObject(vocab)) throw new Error(`${src}: model.vocab must be an object of token -> id`);
  const rawAdded = json.added_tokens ?? [];
  if (!Array.isArray(rawAdded)) throw new Error(`${src}: added_tokens must be an array`);
  // Contiguous ids can never exceed the number of entries; checking first avoids a huge sparse array.
  const idLimit = Object.keys(vocab).length + rawAdded.length;
  const tokens: string[] = [];
  const setToken = (id: unknown, tok: string, where: string): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(`${src}: ${where} ${JSON.stringify(tok)} has invalid id ${JSON.stringify(id)}`);
    }
    if (id >= idLimit) {
      throw new Error(
        `${src}: ${where} ${JSON.stringify(tok)} has id ${id}, but ${idLimit} entries cannot have contiguous ids that large`,
      );
    }
    const existing = tokens[id];
    if (existing !== undefined && existing !== tok) {
      throw new Error(
        `${src}: id ${id} is used by both ${JSON.stringify(existing)} and ${JSON.stringify(tok)}`,
      );
    }
    tokens[id] = tok;
  };
  for (const [tok, id] of Object.entries(vocab)) setToken(id, tok, 'model.vocab token');

  const added: AddedTokenSpec[] = rawAdded.map((t: unknown, i: number) => {
    if (!isObject(t) || typeof t.content !== 'string') {
      throw new Error(`${src}: added_tokens[${i}] must be an object with a string "content"`);
    }
    for (const flag of ['single_word', 'lstrip', 'rstrip']) {
      if (t[flag] === true) throw new Error(`${src}: added_tokens[${i}].${flag} true is not supported`);
    }
    setToken(t.id, t.content, `added_tokens[${i}]`);
    return { id: t.id as number, content: t.content, special: t.special === true };
  });

  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined)
      throw new Error(`${src}: token ids must be contiguous, but id ${id} is missing`);
  }

  const rawMerges = model.merges;
  if (!Array.isArray(rawMerges)) throw new Error(`${src}: model.merges must be an array`);
  // Both layouts HF has used: "left right" strings (older) and [left, right] pairs (tokenizers >= 0.20).
  const merges = rawMerges.map((m: unknown, i: number): [string, string] => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2)
        throw new Error(`${src}: model.merges[${i}] ${JSON.stringify(m)} is not "left right"`);
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      return [m[0], m[1]];
    }
    throw new Error(
      `${src}: model.merges[${i}] must be "left right" or [left, right], got ${JSON.stringify(m)}`,
    );
  });

  return new BpeTokenizer({ tokens, merges, addedTokens: added }, src);
}

/** Atomically writes `tokenizer` as a Hugging Face tokenizer.json. */
export async function saveTokenizer(tokenizer: BpeTokenizer, path: string): Promise<void> {
  await atomicWriteJson(path, tokenizerToJson(tokenizer));
}

export function saveTokenizerSync(tokenizer: BpeTokenizer, path: string): void {
  atomicWriteJsonSync(path, tokenizerToJson(tokenizer));
}

function parseJsonFile(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}

/** Loads and validates a tokenizer.json; errors name the file and the bad field. */
export async function loadTokenizer(path: string): Promise<BpeTokenizer> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    throw new Error(
      `${path}: cannot read tokenizer file: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
  return tokenizerFromJson(parseJsonFile(text, path), path);
}

export function loadTokenizerSync(path: string): BpeTokenizer {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(
      `${path}: cannot read tokenizer file: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
  return tokenizerFromJson(parseJsonFile(text, path), path);
}
