/**
 * Byte-level BPE tokenizer (GPT-2 style), compatible with Hugging Face tokenizer.json files whose model
 * is BPE with a ByteLevel pre-tokenizer and decoder.
 *
 * Encoding: added/special tokens are split out first (leftmost-longest), each remaining section is cut
 * into pre-tokens by the GPT-2 regex, and each pre-token's UTF-8 bytes are merged by rank (lowest rank
 * first, leftmost on ties), which is what the HF libraries do. Results are cached per pre-token, since
 * natural text repeats a small set of words; this cache is what makes corpus-scale encoding fast.
 */
import { BYTE_TO_CHAR, makeAddedTokenRegex, makePretokenizeRegex, symbolsToBytes } from './byte-level.ts';
import type { TextTokenizer } from './types.ts';

export interface AddedTokenSpec {
  id: number;
  content: string;
  /** Special tokens (e.g. "<|endoftext|>") are control symbols, not text; all added tokens are split out. */
  special: boolean;
}

export interface BpeTokenizerSpec {
  /** tokens[id] is the byte-level string for a BPE token, or the raw content for an added token. */
  tokens: readonly string[];
  /** Merges in rank order: merges[0] is applied first. */
  merges: readonly (readonly [string, string])[];
  addedTokens: readonly AddedTokenSpec[];
}

/** Pre-tokens longer than this are not cached: they are rare (long whitespace runs, blobs) and would bloat it. */
const MAX_CACHED_WORD_LENGTH = 256;
/** Cache entry cap; the cache is simply cleared when full, which keeps memory bounded on huge corpora. */
const MAX_CACHE_ENTRIES = 1_000_000;
/** Above this many bytes a word is merged with a heap (O(n log n)) instead of the quadratic scan. */
const HEAP_MERGE_THRESHOLD = 48;

export class BpeTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  /** Contents of added tokens flagged special, in id order. */
  readonly specialTokens: readonly string[];
  readonly addedTokenContents: readonly string[];

  private readonly tokens: readonly string[];
  private readonly tokenIds: Map<string, number>;
  private readonly merges: readonly (readonly [string, string])[];
  private readonly addedTokens: readonly AddedTokenSpec[];
  private readonly addedById: Map<number, AddedTokenSpec>;
  private readonly addedByContent: Map<string, number>;
  /** UTF-8 bytes each token stands for (added tokens: their content's bytes). */
  private readonly tokenBytesTable: Uint8Array[];
  private readonly byteToId = new Int32Array(256);
  /** pairKey(left, right) -> merge rank; mergeResult[rank] is the merged token id. */
  private readonly mergeRank = new Map<number, number>();
  private readonly mergeResult: Int32Array;
  private readonly pretokenizeRegex = makePretokenizeRegex();
  private readonly addedRegex: RegExp | undefined;
  private readonly cache = new Map<string, number[]>();
  private readonly utf8 = new TextEncoder();
  // ignoreBOM keeps a leading U+FEFF, so decode(encode(s)) === s also for text starting with a BOM.
  private readonly utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(spec: BpeTokenizerSpec, sourceName = 'tokenizer') {
    const src = sourceName;
    this.tokens = [...spec.tokens];
    this.vocabSize = this.tokens.length;
    this.merges = spec.merges.map(([a, b]) => [a, b] as const);
    this.addedTokens = [...spec.addedTokens].sort((a, b) => a.id - b.id);

    this.tokenIds = new Map();
    this.tokens.forEach((tok, id) => {
      if (typeof tok !== 'string') throw new Error(`${src}: token id ${id} has no string`);
      const prev = this.tokenIds.get(tok);
      if (prev !== undefined)
        throw new Error(`${src}: token ${JSON.stringify(tok)} appears at ids ${prev} and ${id}`);
      this.tokenIds.set(tok, id);
    });

    this.addedById = new Map();
    this.addedByContent = new Map();
    for (const t of this.addedTokens) {
      if (!Number.isInteger(t.id) || t.id < 0 || t.id >= this.vocabSize) {
        throw new Error(
          `${src}: added token ${JSON.stringify(t.content)} has id ${t.id} outside [0, ${this.vocabSize})`,
        );
      }
      if (t.content.length === 0) throw new Error(`${src}: added token id ${t.id} has empty content`);
      if (this.tokens[t.id] !== t.content) {
        throw new Error(
          `${src}: added token ${JSON.stringify(t.content)} has id ${t.id}, but that id is ${JSON.stringify(this.tokens[t.id])}`,
        );
      }
      if (this.addedById.has(t.id)) throw new Error(`${src}: two added tokens share id ${t.id}`);
      this.addedById.set(t.id, t);
      this.addedByContent.set(t.content, t.id);
    }
    this.specialTokens = this.addedTokens.filter((t) => t.special).map((t) => t.content);
    this.addedTokenContents = this.addedTokens.map((t) => t.content);

    this.tokenBytesTable = this.tokens.map((tok, id) => {
      if (this.addedById.has(id)) return this.utf8.encode(tok);
      const bytes = symbolsToBytes(tok);
      if (bytes === undefined || bytes.length === 0) {
        throw new Error(
          `${src}: token ${JSON.stringify(tok)} (id ${id}) is not a byte-level string and not an added token`,
        );
      }
      return bytes;
    });

    for (let b = 0; b < 256; b++) {
      const id = this.tokenIds.get(BYTE_TO_CHAR[b]);
      if (id === undefined || this.addedById.has(id)) {
        throw new Error(
          `${src}: vocabulary lacks the byte symbol ${JSON.stringify(BYTE_TO_CHAR[b])} for byte 0x${b.toString(16).padStart(2, '0')}; every byte must be encodable`,
        );
      }
      this.byteToId[b] = id;
    }

    this.mergeResult = new Int32Array(this.merges.length);
    this.merges.forEach(([a, b], rank) => {
      const where = `${src}: merge #${rank} ${JSON.stringify(`${a} ${b}`)}`;
      const left = this.tokenIds.get(a);
      const right = this.tokenIds.get(b);
      const merged = this.tokenIds.get(a + b);
      if (left === undefined || right === undefined)
        throw new Error(`${where}: part is not in the vocabulary`);
      if (merged === undefined) throw new Error(`${where}: merged token is not in the vocabulary`);
      if (this.addedById.has(left) || this.addedById.has(right) || this.addedById.has(merged)) {
        throw new Error(`${where}: merges cannot involve added tokens`);
      }
      const key = this.pairKey(left, right);
      // A pair listed twice keeps its last rank, as both HF implementations build their map that way.
      this.mergeRank.set(key, rank);
      this.mergeResult[rank] = merged;
    });

    this.addedRegex = makeAddedTokenRegex(this.addedTokens.map((t) => t.content));
  }

  /** Keys stay small integers (fast Map keys) for vocabularies up to 32768 tokens. */
  private pairKey(left: number, right: number): number {
    return left * this.vocabSize + right;
  }

  /** Merges in rank order, as [left, right] token strings. */
  getMerges(): readonly (readonly [string, string])[] {
    return this.merges;
  }

  /** Added tokens (specials and others), in id order. */
  getAddedTokens(): readonly AddedTokenSpec[] {
    return this.addedTokens;
  }

  /** Token strings indexed by id (byte-level strings; added tokens as their raw content). */
  getTokens(): readonly string[] {
    return this.tokens;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenIds.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  isSpecialId(id: number): boolean {
    return this.addedById.get(id)?.special === true;
  }

  /** Encodes text into token ids; special-token strings in the text become their ids. */
  encode(text: string): number[] {
    const out: number[] = [];
    this.encodeInto(text, out);
    return out;
  }

  /** Appends the ids for `text` to `out` (avoids an intermediate array when streaming a corpus). */
  encodeInto(text: string, out: number[]): void {
    const re = this.addedRegex;
    if (re === undefined) {
      this.encodeOrdinary(text, out);
      return;
    }
    re.lastIndex = 0;
    let start = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > start) this.encodeOrdinary(text.slice(start, m.index), out);
      out.push(this.addedByContent.get(m[0]) as number);
      start = m.index + m[0].length;
    }
    if (start < text.length) this.encodeOrdinary(start === 0 ? text : text.slice(start), out);
  }

  /** Encodes text with no added-token handling (special strings are treated as plain text). */
  encodeOrdinary(text: string, out: number[] = []): number[] {
    const re = this.pretokenizeRegex;
    const cache = this.cache;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const word = m[0];
      let ids = cache.get(word);
      if (ids === undefined) {
        ids = this.bpeWord(word);
        if (word.length <= MAX_CACHED_WORD_LENGTH) {
          if (cache.size >= MAX_CACHE_ENTRIES) cache.clear();
          cache.set(word, ids);
        }
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  /** BPE on one pre-token: start from its UTF-8 bytes and apply the lowest-rank merge until none applies. */
  private bpeWord(word: string): number[] {
    const bytes = this.utf8.encode(word);
    const syms = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = this.byteToId[bytes[i]];
    if (syms.length < 2) return syms;
    return syms.length > HEAP_MERGE_THRESHOLD ? this.mergeWithHeap(syms) : this.mergeByScan(syms);
  }

  private mergeByScan(syms: number[]): number[] {
    const ranks = this.mergeRank;
    for (;;) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(this.pairKey(syms[i], syms[i + 1]));
        // Strict '<' keeps the leftmost occurrence on equal rank, as HF does.
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          bestAt = i;
        }
      }
      if (bestAt < 0) return syms;
      syms[bestAt] = this.mergeResult[bestRank];
      syms.splice(bestAt + 1, 1);
    }
  }

  /**
   * Same result as mergeByScan, in O(n log n): a linked list over byte positions and a min-heap keyed by
   * (rank, position). Entries are validated lazily on pop, so no decrease-key is needed.
   */
  private mergeWithHeap(initial: number[]): number[] {
    const n = initial.length;
    const sym = Int32Array.from(initial);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Key = rank * n + position: rank dominates, then leftmost position. Both < 2^26 in practice.
    const heap: number[] = [];
    const push = (key: number): void => {
      heap.push(key);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= key) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = key;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap.pop() as number;
      if (heap.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= heap.length) break;
          const r = l + 1;
          const c = r < heap.length && heap[r] < heap[l] ? r : l;
          if (heap[c] >= last) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const consider = (pos: number): void => {
      if (pos < 0) return;
      const nx = next[pos];
      if (nx < 0) return;
      const r = this.mergeRank.get(this.pairKey(sym[pos], sym[nx]));
      if (r !== undefined) push(r * n + pos);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const key = pop();
      const rank = Math.floor(key / n);
      const pos = key - rank * n;
      const nx = next[pos];
      // Stale if either side was merged away or changed since this entry was pushed.
      if (!alive[pos] || nx < 0 || this.mergeRank.get(this.pairKey(sym[pos], sym[nx])) !== rank) continue;
      sym[pos] = this.mergeResult[rank];
      alive[nx] = 0;
      next[pos] = next[nx];
      if (next[nx] >= 0) prev[next[nx]] = pos;
      consider(prev[pos]);
      consider(pos);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }

  /** UTF-8 bytes a token stands for; concatenating these for a sequence gives the exact original bytes. */
  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    return this.tokenBytesTable[id];
  }

  /** Text of one token; a token holding part of a multi-byte character decodes to U+FFFD. */
  decodeToken(id: number): string {
    this.checkId(id);
    const added = this.addedById.get(id);
    return added ? added.content : this.utf8Decoder.decode(this.tokenBytesTable[id]);
  }

  /**
   * Decodes ids to text. Byte runs between added tokens are decoded as UTF-8 separately (as HF does),
   * with invalid sequences becoming U+FFFD.
   */
  decode(ids: readonly number[]): string {
    let text = '';
    let buf = new Uint8Array(256);
    let len = 0;
    const flush = (): void => {
      if (len > 0) text += this.utf8Decoder.decode(buf.subarray(0, len));
      len = 0;
    };
    for (const id of ids) {
      this.checkId(id);
      const added = this.addedById.get(id);
      if (added) {
        flush();
        text += added.content;
        continue;
      }
      const bytes = this.tokenBytesTable[id];
      if (len + bytes.length > buf.length) {
        const bigger = new Uint8Array(Math.max(buf.length * 2, len + bytes.length));
        bigger.set(buf.subarray(0, len));
        buf = bigger;
      }
      buf.set(bytes, len);
      len += bytes.length;
    }
    flush();
    return text;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`token id ${id} is out of range [0, ${this.vocabSize})`);
    }
  }
}
