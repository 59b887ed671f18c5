/**
 * Byte-level BPE training (GPT-2 style).
 *
 * Vocabulary layout: special tokens first (ids 0..S-1), then the 256 byte symbols in byte order
 * (byte b has id S+b), then one token per merge. Each step merges the most frequent adjacent pair;
 * ties go to the lexicographically smallest pair, comparing the left then the right token's byte-level
 * string (UTF-16 code-unit order, as `<` does), so training is fully deterministic.
 *
 * Pair counts are updated incrementally: each pair keeps the list of words it occurs in, so a merge
 * only touches the words that contain it, and a max-heap with lazy invalidation finds the next pair.
 */
import { BYTE_TO_CHAR, makeAddedTokenRegex, makePretokenizeRegex } from './byte-level.ts';
import { BpeTokenizer } from './bpe.ts';

export interface TrainBpeOptions {
  /** Final vocabulary size including special tokens and the 256 byte symbols. */
  vocabSize: number;
  /** Special tokens, given ids 0.. in this order; they are split out of training text and never merged. */
  specialTokens?: readonly string[];
  /** Stop when the best pair occurs fewer times than this (default 2: a pair seen once teaches nothing). */
  minFrequency?: number;
}

/** Max-heap entry; `count` is the pair's count when pushed, possibly stale by the time it is popped. */
interface HeapEntry {
  count: number;
  key: number;
}

export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions): BpeTokenizer {
  const specials = [...(options.specialTokens ?? [])];
  const minFrequency = options.minFrequency ?? 2;
  const vocabSize = options.vocabSize;
  const base = specials.length + 256;
  if (!Number.isInteger(vocabSize) || vocabSize < base) {
    throw new Error(
      `trainBpe: vocabSize must be an integer >= ${base} (${specials.length} special tokens + 256 bytes), got ${vocabSize}`,
    );
  }
  if (!Number.isInteger(minFrequency) || minFrequency < 1) {
    throw new Error(`trainBpe: minFrequency must be a positive integer, got ${minFrequency}`);
  }
  const specialSet = new Set<string>();
  for (const s of specials) {
    if (typeof s !== 'string' || s.length === 0)
      throw new Error('trainBpe: special tokens must be non-empty strings');
    if (specialSet.has(s)) throw new Error(`trainBpe: special token ${JSON.stringify(s)} is listed twice`);
    if (BYTE_TO_CHAR.includes(s)) {
      throw new Error(
        `trainBpe: special token ${JSON.stringify(s)} collides with a byte symbol of the same name`,
      );
    }
    specialSet.add(s);
  }

  // 1. Word frequencies over pre-tokens, with special tokens cut out of the text first.
  const wordCounts = new Map<string, number>();
  const pretok = makePretokenizeRegex();
  const countSection = (section: string): void => {
    pretok.lastIndex = 0;
    for (let m = pretok.exec(section); m !== null; m = pretok.exec(section)) {
      wordCounts.set(m[0], (wordCounts.get(m[0]) ?? 0) + 1);
    }
  };
  const specialRegex = makeAddedTokenRegex(specials);
  for (const text of texts) {
    if (specialRegex === undefined) {
      countSection(text);
      continue;
    }
    for (const section of text.split(specialRegex)) countSection(section);
  }

  // 2. Initial vocabulary and words as byte-symbol id sequences. Sorting the words makes every later
  // step independent of Map iteration order, i.e. of the order the texts arrived in.
  const tokens: string[] = [...specials, ...BYTE_TO_CHAR];
  const tokenIds = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const utf8 = new TextEncoder();
  const sortedWords = [...wordCounts.keys()].sort();
  const words: number[][] = [];
  const counts: number[] = [];
  for (const w of sortedWords) {
    const bytes = utf8.encode(w);
    if (bytes.length < 2) continue; // a single byte has no pairs to count
    words.push(Array.from(bytes, (b) => specials.length + b));
    counts.push(wordCounts.get(w) as number);
  }
  wordCounts.clear();

  const V = vocabSize; // every id is < vocabSize, so left * V + right is a unique pair key
  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  words.forEach((syms, w) => {
    for (let i = 0; i + 1 < syms.length; i++) {
      const key = syms[i] * V + syms[i + 1];
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + counts[w]);
      let list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, (list = []));
      list.push(w);
    }
  });

  // 3. Max-heap ordered by (count desc, left string asc, right string asc).
  const before = (x: HeapEntry, y: HeapEntry): boolean => {
    if (x.count !== y.count) return x.count > y.count;
    const xl = tokens[Math.floor(x.key / V)];
    const yl = tokens[Math.floor(y.key / V)];
    if (xl !== yl) return xl < yl;
    return tokens[x.key % V] < tokens[y.key % V];
  };
  const heap: HeapEntry[] = [];
  const siftDown = (start: number): void => {
    const item = heap[start];
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const c = r < heap.length && before(heap[r], heap[l]) ? r : l;
      if (!before(heap[c], item)) break;
      heap[i] = heap[c];
      i = c;
    }
    heap[i] = item;
  };
  const push = (e: HeapEntry): void => {
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, heap[p])) break;
      heap[i] = heap[p];
      i = p;
    }
    heap[i] = e;
  };
  const pop = (): HeapEntry | undefined => {
    if (heap.length === 0) return undefined;
    const top = heap[0];
    const last = heap.pop() as HeapEntry;
    if (heap.length > 0) {
      heap[0] = last;
      siftDown(0);
    }
    return top;
  };
  for (const [key, count] of pairCounts) heap.push({ count, key });
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(i);

  // 4. Merge loop.
  const merges: [string, string][] = [];
  const blocked = new Set<number>(); // pairs whose merge would spell a special token
  const wordStamp = new Int32Array(words.length).fill(-1); // dedupes a word listed twice under a pair
  while (tokens.length < vocabSize) {
    const best = pop();
    if (best === undefined) break;
    const current = pairCounts.get(best.key) ?? 0;
    if (blocked.has(best.key) || current === 0) continue;
    if (current !== best.count) {
      // Stale entry. Counts that grew were re-pushed when they grew, so only a shrunk count needs re-pushing.
      if (current < best.count) push({ count: current, key: best.key });
      continue;
    }
    if (current < minFrequency) break;

    const a = Math.floor(best.key / V);
    const b = best.key % V;
    const merged = tokens[a] + tokens[b];
    if (specialSet.has(merged)) {
      blocked.add(best.key);
      continue;
    }
    let id = tokenIds.get(merged);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      tokenIds.set(merged, id);
    }
    const mergeIndex = merges.length;
    merges.push([tokens[a], tokens[b]]);

    const deltas = new Map<number, number>();
    const addDelta = (key: number, d: number): void => {
      deltas.set(key, (deltas.get(key) ?? 0) + d);
    };
    for (const w of pairWords.get(best.key) ?? []) {
      if (wordStamp[w] === mergeIndex) continue;
      wordStamp[w] = mergeIndex;
      const syms = words[w];
      const c = counts[w];
      let found = false;
      for (let i = 0; i + 1 < syms.length; i++) {
        if (syms[i] === a && syms[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue; // listed before an earlier merge consumed the pair
      for (let i = 0; i + 1 < syms.length; i++) addDelta(syms[i] * V + syms[i + 1], -c);
      const out: number[] = [];
      for (let i = 0; i < syms.length;) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(id);
          i += 2;
        } else {
          out.push(syms[i]);
          i += 1;
        }
      }
      words[w] = out;
      for (let i = 0; i + 1 < out.length; i++) {
        const key = out[i] * V + out[i + 1];
        addDelta(key, c);
        // Pairs without the new token already list this word, so only new-token pairs need it added.
        if (out[i] === id || out[i + 1] === id) {
          let list = pairWords.get(key);
          if (list === undefined) pairWords.set(key, (list = []));
          list.push(w);
        }
      }
    }
    pairWords.delete(best.key);
    for (const [key, d] of deltas) {
      if (d === 0) continue;
      const next = (pairCounts.get(key) ?? 0) + d;
      if (next <= 0) pairCounts.delete(key);
      else pairCounts.set(key, next);
      if (d > 0) push({ count: next, key });
    }
  }

  return new BpeTokenizer({
    tokens,
    merges,
    addedTokens: specials.map((content, id) => ({ id, content, special: true })),
  });
}
