// Token shards: the training input format.
//
// A split (e.g. "train") is stored as
//   <name>-00000.bin, <name>-00001.bin, ...   little-endian uint16 token ids, nothing else (no header), so a shard can
//                                             be read straight into a Uint16Array or memory-mapped;
//   <name>.json                               the index: format tag, vocab size, separator id, total tokens and
//                                             documents, and per shard its file name, tokens and documents.
// Every document is preceded by one separator token ("<|endoftext|>"): a shard reads SEP doc SEP doc ..., so any
// window that starts at a separator starts at a document boundary, and evaluation prompts should be preceded by the
// separator just as documents are. Documents never straddle shards.
//
// Writes are atomic: data goes to temporary files that are renamed into place when the writer is closed, and the
// index is written last, so a reader never sees a half-written split and a killed run leaves only temp files.

import { AtomicFileStream, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import type { TextTokenizer } from '../tokenizer/types.ts';
import { END_OF_TEXT } from './templates.ts';

/** What the world needs of a tokenizer: encoding and the vocabulary's size (a byte tokenizer is enough). */
export type CorpusTokenizer = Pick<TextTokenizer, 'encode' | 'vocabSize'>;

export const SHARD_FORMAT = 'psm-token-shards';
export const SHARD_VERSION = 1;

export interface ShardIndex {
  format: typeof SHARD_FORMAT;
  version: number;
  dtype: 'uint16';
  endianness: 'little';
  vocabSize: number;
  /** Id of the separator token that precedes every document. */
  eotId: number;
  tokens: number;
  documents: number;
  shards: Array<{ file: string; tokens: number; documents: number }>;
  /** Free-form provenance (world, seed, split) written by the corpus writer. */
  meta?: Record<string, unknown>;
}

/** The separator's id under a tokenizer; it must encode to exactly one token. */
export function eotIdOf(tokenizer: CorpusTokenizer): number {
  const ids = tokenizer.encode(END_OF_TEXT);
  if (ids.length !== 1) {
    throw new Error(
      `the tokenizer must encode ${END_OF_TEXT} as one special token (got ${ids.length} tokens: ${ids.slice(0, 8).join(', ')})`,
    );
  }
  return ids[0];
}

export interface ShardWriterOptions {
  vocabSize: number;
  eotId: number;
  /** Start a new shard after this many tokens (default 2^24 = 32 MiB files). */
  maxTokensPerShard?: number;
  meta?: Record<string, unknown>;
}

export class ShardWriter {
  private readonly dir: string;
  private readonly name: string;
  private readonly opts: Required<Omit<ShardWriterOptions, 'meta'>> & { meta?: Record<string, unknown> };
  private buf: Uint16Array;
  private bufLen = 0;
  private file: AtomicFileStream | null = null;
  private current = { tokens: 0, documents: 0 };
  private readonly done: ShardIndex['shards'] = [];
  private readonly files: AtomicFileStream[] = [];
  private closed = false;

  constructor(dir: string, name: string, opts: ShardWriterOptions) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name))
      throw new Error(`shard name must be a plain file name, got '${name}'`);
    if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= 0)
      throw new Error(`vocabSize must be a positive integer, got ${opts.vocabSize}`);
    if (opts.vocabSize > 65536) {
      throw new Error(
        `vocabulary of ${opts.vocabSize} tokens does not fit the uint16 shard format (at most 65536 ids, 0..65535)`,
      );
    }
    if (!Number.isInteger(opts.eotId) || opts.eotId < 0 || opts.eotId >= opts.vocabSize)
      throw new Error(`eotId ${opts.eotId} is outside the vocabulary`);
    this.dir = dir;
    this.name = name;
    this.opts = { maxTokensPerShard: 1 << 24, ...opts };
    this.buf = new Uint16Array(1 << 16);
  }

  /** Append one document (token ids without the separator; the writer adds it in front). */
  addDocument(tokens: ArrayLike<number>): void {
    if (this.closed) throw new Error('ShardWriter: already closed');
    const n = tokens.length + 1;
    if (
      this.file !== null &&
      this.current.tokens > 0 &&
      this.current.tokens + n > this.opts.maxTokensPerShard
    )
      this.finishShard();
    if (this.file === null) this.openShard();
    this.push(this.opts.eotId);
    const V = this.opts.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= V)
        throw new Error(`token id ${t} is outside the vocabulary (size ${V})`);
      this.push(t);
    }
    this.current.tokens += n;
    this.current.documents++;
  }

  private push(t: number): void {
    if (this.bufLen === this.buf.length) this.flush();
    this.buf[this.bufLen++] = t;
  }

  private flush(): void {
    if (this.bufLen === 0 || this.file === null) return;
    // Uint16Array uses the platform's byte order; this module refuses to load on a big-endian platform (below),
    // so the bytes written are little-endian.
    this.file.write(new Uint8Array(this.buf.buffer, 0, this.bufLen * 2));
    this.bufLen = 0;
  }

  private openShard(): void {
    const file = `${this.name}-${String(this.done.length).padStart(5, '0')}.bin`;
    this.file = new AtomicFileStream(join(this.dir, file));
    this.files.push(this.file);
    this.current = { tokens: 0, documents: 0 };
  }

  private finishShard(): void {
    if (this.file === null) return;
    this.flush();
    this.file.close();
    this.done.push({ file: basename(this.file.target), ...this.current });
    this.file = null;
  }

  /** Finish: rename the shards into place and write the index last. Returns the index. */
  close(): ShardIndex {
    if (this.closed) throw new Error('ShardWriter: already closed');
    this.finishShard();
    this.closed = true;
    const index: ShardIndex = {
      format: SHARD_FORMAT,
      version: SHARD_VERSION,
      dtype: 'uint16',
      endianness: 'little',
      vocabSize: this.opts.vocabSize,
      eotId: this.opts.eotId,
      tokens: this.done.reduce((s, x) => s + x.tokens, 0),
      documents: this.done.reduce((s, x) => s + x.documents, 0),
      shards: this.done,
      ...(this.opts.meta ? { meta: this.opts.meta } : {}),
    };
    try {
      for (const f of this.files) f.commit();
      atomicWriteJsonSync(join(this.dir, `${this.name}.json`), index);
    } catch (err) {
      // Shards without their index are not a split: take back the ones already renamed.
      for (const f of this.files) {
        f.abort();
        rmSync(f.target, { force: true });
      }
      throw err;
    }
    return index;
  }

  /** Give up: close and delete the temporary files. Safe to call after an error. */
  abort(): void {
    if (!this.closed) for (const f of this.files) f.abort();
    this.file = null;
    this.closed = true;
  }
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error(
    'psm world shards: big-endian platforms are not supported (shards are little-endian uint16)',
  );
}

/** Read and check a shard index. */
export function readShardIndex(indexPath: string): ShardIndex {
  let idx: ShardIndex;
  try {
    idx = JSON.parse(readFileSync(indexPath, 'utf8')) as ShardIndex;
  } catch (err) {
    throw new Error(`cannot read shard index ${indexPath}: ${(err as Error).message}`);
  }
  if (idx.format !== SHARD_FORMAT)
    throw new Error(`${indexPath} is not a token-shard index (format '${String(idx.format)}')`);
  if (idx.version !== SHARD_VERSION)
    throw new Error(
      `${indexPath}: unsupported shard format version ${idx.version} (expected ${SHARD_VERSION})`,
    );
  return idx;
}

/** Load all tokens of a split into one array (checks sizes against the index). */
export function loadShardTokens(indexPath: string): Uint16Array {
  const idx = readShardIndex(indexPath);
  const out = new Uint16Array(idx.tokens);
  let off = 0;
  for (const s of idx.shards) {
    const p = join(dirname(indexPath), s.file);
    if (!existsSync(p)) throw new Error(`shard ${p} listed in ${indexPath} is missing`);
    const bytes = readFileSync(p);
    if (bytes.length !== s.tokens * 2)
      throw new Error(`shard ${p} has ${bytes.length} bytes, the index says ${s.tokens} tokens`);
    // Copy through a DataView-free path: the Buffer may be unaligned, so copy bytes into the aligned output.
    new Uint8Array(out.buffer, off * 2, bytes.length).set(bytes);
    off += s.tokens;
  }
  return out;
}

/**
 * A byte-level tokenizer (ids 0-255 are UTF-8 bytes, 256 is the separator). Not the project's BPE: it exists so
 * that shards can be written and tested without one (`--tokenizer bytes`).
 */
export function byteTokenizer(): CorpusTokenizer {
  const enc = new TextEncoder();
  return {
    vocabSize: 257,
    encode(text: string): number[] {
      const out: number[] = [];
      const parts = text.split(END_OF_TEXT);
      parts.forEach((part, i) => {
        if (i > 0) out.push(256);
        for (const b of enc.encode(part)) out.push(b);
      });
      return out;
    },
  };
}
