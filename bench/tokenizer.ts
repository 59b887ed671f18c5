/**
 * Tokenizer benchmark: trains byte-level BPE on ~5 MB of synthetic Zipf-distributed text and reports
 * training time and encode/decode throughput on a separate ~20 MB sample.
 * Run: npx tsx bench/tokenizer.ts [--vocab 8192] [--train-mb 5] [--encode-mb 20]
 */
import { trainBpe } from '../src/tokenizer/index.ts';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Deterministic PRNG (mulberry32) so every run benchmarks the same text. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = 'etaoinshrdlcumwfgypbvkjxqz';
const EXTRA = ['é', 'ü', 'ñ', 'ø', 'ß', '日', '本', '語', '🙂'];

/** A lexicon of pseudo-words; word frequency follows Zipf's law as in natural text. */
function makeText(targetBytes: number, seed: number): string {
  const rand = rng(seed);
  const lexicon: string[] = [];
  for (let i = 0; i < 30000; i++) {
    const len = 1 + Math.floor(rand() * 9);
    let w = '';
    for (let j = 0; j < len; j++) w += LETTERS[Math.floor(LETTERS.length * rand() * rand())];
    if (rand() < 0.03) w += EXTRA[Math.floor(rand() * EXTRA.length)];
    if (rand() < 0.1) w = w[0].toUpperCase() + w.slice(1);
    lexicon.push(w);
  }
  // Zipf sampling by inverse CDF over precomputed cumulative weights 1/rank.
  const cdf = new Float64Array(lexicon.length);
  let total = 0;
  for (let i = 0; i < lexicon.length; i++) cdf[i] = total += 1 / (i + 1);
  const pick = (): string => {
    const x = rand() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lexicon[lo];
  };
  const parts: string[] = [];
  let bytes = 0;
  while (bytes < targetBytes) {
    let sentence = '';
    const n = 5 + Math.floor(rand() * 20);
    for (let i = 0; i < n; i++) {
      sentence += (i ? ' ' : '') + pick();
      if (rand() < 0.05) sentence += ',';
      if (rand() < 0.02) sentence += ` ${Math.floor(rand() * 10000)}`;
    }
    sentence += rand() < 0.2 ? '.\n\n' : '. ';
    if (rand() < 0.01) sentence += '<|endoftext|>';
    parts.push(sentence);
    bytes += Buffer.byteLength(sentence);
  }
  return parts.join('');
}

const vocabSize = arg('vocab', 8192);
const trainMb = arg('train-mb', 5);
const encodeMb = arg('encode-mb', 20);

const trainText = makeText(trainMb * 1e6, 1);
// Train on lines, as a corpus pipeline would feed documents.
const t0 = performance.now();
const tokenizer = trainBpe(trainText.split('\n'), { vocabSize, specialTokens: ['<|endoftext|>', '<|pad|>'] });
const trainS = (performance.now() - t0) / 1000;
console.log(
  `train: ${(Buffer.byteLength(trainText) / 1e6).toFixed(1)} MB -> vocab ${tokenizer.vocabSize}, ${tokenizer.getMerges().length} merges in ${trainS.toFixed(2)} s`,
);

const encodeText = makeText(encodeMb * 1e6, 2);
const docs = encodeText.split('<|endoftext|>');
const t1 = performance.now();
let nTokens = 0;
const sampleIds: number[][] = [];
for (const d of docs) {
  const ids = tokenizer.encode(d);
  nTokens += ids.length;
  if (sampleIds.length < 200) sampleIds.push(ids);
}
const encS = (performance.now() - t1) / 1000;
const mb = Buffer.byteLength(encodeText) / 1e6;
console.log(
  `encode: ${mb.toFixed(1)} MB -> ${nTokens} tokens in ${encS.toFixed(2)} s = ${(nTokens / encS / 1e6).toFixed(2)} M tokens/s, ${(mb / encS).toFixed(1)} MB/s (${(Buffer.byteLength(encodeText) / nTokens).toFixed(2)} bytes/token)`,
);

const t2 = performance.now();
let ok = true;
for (let i = 0; i < sampleIds.length; i++) ok &&= tokenizer.decode(sampleIds[i]) === docs[i];
console.log(
  `decode round trip on ${sampleIds.length} docs: ${ok ? 'ok' : 'MISMATCH'} (${((performance.now() - t2) / 1000).toFixed(2)} s)`,
);
if (!ok) process.exitCode = 1;
