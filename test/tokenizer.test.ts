import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BYTE_TO_CHAR,
  BpeTokenizer,
  loadTokenizer,
  loadTokenizerSync,
  saveTokenizer,
  tokenizerFromJson,
  tokenizerToJson,
  trainBpe,
} from '../src/tokenizer/index.ts';

const SPECIALS = ['<|endoftext|>', '<|pad|>'];

/** Deterministic PRNG so the synthetic corpus is identical on every run. */
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

function makeCorpus(docs: number, seed: number): string[] {
  const rand = rng(seed);
  const words = [
    'the',
    'a',
    'cat',
    'sat',
    'on',
    'mat',
    'persona',
    'character',
    'assistant',
    'helpful',
    'running',
    'ran',
    "don't",
    "we're",
    "it's",
    'über',
    'naïve',
    'café',
    '日本',
    '語',
    '2024',
    '3.14',
    'Hello',
    'World',
    '!',
    '?',
  ];
  const out: string[] = [];
  for (let d = 0; d < docs; d++) {
    let s = '';
    const n = 10 + Math.floor(rand() * 30);
    for (let i = 0; i < n; i++) {
      s += words[Math.floor(rand() * words.length)];
      const r = rand();
      s += r < 0.08 ? '.\n' : r < 0.12 ? ',  ' : r < 0.14 ? '\n\n' : ' ';
    }
    out.push(d % 7 === 0 ? `${s}<|endoftext|>` : s);
  }
  return out;
}

const VARIED_STRINGS = [
  'Hello, world!',
  'the cat sat on the mat.\n\nthe dog  ran   away',
  "don't you're I'll we've she'd 'tis",
  'Numbers: 0 1 12 123 1234 3.14159 -42 1e10 2024-06-01',
  '   leading and trailing spaces   ',
  '\t\ttabs\r\nCRLF line\rCR\u000bvt\ffeed',
  'punctuation!!! ??? ... --- ((()))[]{}<>@#$%^&*_+=|\\/~`',
  'unicode: über naïve café 日本語 한국어 Ελληνικά русский עברית العربية',
  'emoji 😀👍🏽 👨‍👩‍👧 flags 🇫🇷',
  'special <|endoftext|>next doc<|pad|><|pad|> and <|endoftext|>',
  '<|endoftext|>',
  'partial <|endof and <|pad| are plain text',
  'zero\u0000width\u200bjoiner\u200d and bom \ufeff and nbsp\u00a0here',
  'x'.repeat(300),
  'abababababababababababababababababababababababababababababababababab',
  'a',
  ' ',
  '\n',
];

const VOCAB = 360;
let tokenizer: BpeTokenizer;
let tmpDir: string;

beforeAll(() => {
  tokenizer = trainBpe(makeCorpus(400, 1), { vocabSize: VOCAB, specialTokens: SPECIALS });
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-tokenizer-'));
});

afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Straightforward BPE trainer that recounts every pair each step: slow but obviously correct. */
function naiveTrain(texts: string[], vocabSize: number, minFrequency: number): [string, string][] {
  const counts = new Map<string, number>();
  for (const t of texts) {
    for (const w of t.match(/'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu) ??
      []) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  const words = [...counts].map(([w, c]) => ({
    syms: Array.from(new TextEncoder().encode(w), (b) => BYTE_TO_CHAR[b]),
    c,
  }));
  const vocab = new Set(BYTE_TO_CHAR);
  const merges: [string, string][] = [];
  while (vocab.size < vocabSize) {
    const pairs = new Map<string, { a: string; b: string; n: number }>();
    for (const { syms, c } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const k = `${syms[i]}\u0000${syms[i + 1]}`;
        const e = pairs.get(k) ?? { a: syms[i], b: syms[i + 1], n: 0 };
        e.n += c;
        pairs.set(k, e);
      }
    }
    let best: { a: string; b: string; n: number } | undefined;
    for (const e of pairs.values()) {
      if (!best || e.n > best.n || (e.n === best.n && (e.a < best.a || (e.a === best.a && e.b < best.b)))) {
        best = e;
      }
    }
    if (!best || best.n < minFrequency) break;
    merges.push([best.a, best.b]);
    vocab.add(best.a + best.b);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.syms.length;) {
        if (i + 1 < w.syms.length && w.syms[i] === best.a && w.syms[i + 1] === best.b) {
          out.push(best.a + best.b);
          i += 2;
        } else {
          out.push(w.syms[i++]);
        }
      }
      w.syms = out;
    }
  }
  return merges;
}

describe('trainBpe', () => {
  it('lays out specials, then the 256 bytes, then merges', () => {
    expect(tokenizer.vocabSize).toBe(VOCAB);
    expect(tokenizer.tokenToId('<|endoftext|>')).toBe(0);
    expect(tokenizer.tokenToId('<|pad|>')).toBe(1);
    expect(tokenizer.specialTokens).toEqual(SPECIALS);
    for (let b = 0; b < 256; b++) expect(tokenizer.tokenToId(BYTE_TO_CHAR[b])).toBe(2 + b);
    const [a, b] = tokenizer.getMerges()[0];
    expect(tokenizer.tokenToId(a + b)).toBe(258);
  });

  it('picks the most frequent pair and breaks ties by the smallest pair', () => {
    // Counts: (a,b)=3, then (Ġ,ab)=(Ġ,c)=(c,d)=2; 'c' < 'Ġ' and 'ab' < 'cd' decide the ties.
    const t = trainBpe(['ab ab ab cd cd'], { vocabSize: 1000, minFrequency: 1 });
    expect(t.getMerges()).toEqual([
      ['a', 'b'],
      ['c', 'd'],
      ['Ġ', 'ab'],
      ['Ġ', 'cd'],
    ]);
    expect(t.encode('ab cd')).toEqual([t.tokenToId('ab'), t.tokenToId('Ġcd')]);
  });

  it('matches a naive recount-every-step trainer exactly', () => {
    const texts = makeCorpus(120, 7).map((s) => s.replace('<|endoftext|>', ''));
    const fast = trainBpe(texts, { vocabSize: 256 + 150, minFrequency: 2 });
    expect(fast.getMerges().length).toBeGreaterThan(100); // the comparison must cover many merges
    expect(fast.getMerges().map(([a, b]) => [a, b])).toEqual(naiveTrain(texts, 256 + 150, 2));
  });

  it('is deterministic and independent of text order', () => {
    const texts = makeCorpus(200, 3);
    const a = trainBpe(texts, { vocabSize: 500, specialTokens: SPECIALS });
    const b = trainBpe([...texts].reverse(), { vocabSize: 500, specialTokens: SPECIALS });
    expect(b.getMerges()).toEqual(a.getMerges());
    expect(JSON.stringify(tokenizerToJson(b))).toBe(JSON.stringify(tokenizerToJson(a)));
  });

  it('never merges across special tokens or into a special token', () => {
    const t = trainBpe(['x<|endoftext|>y'.repeat(50)], { vocabSize: 400, specialTokens: ['<|endoftext|>'] });
    expect(t.getTokens().some((tok) => tok.includes('<|') && tok !== '<|endoftext|>')).toBe(false);
    const blocked = trainBpe(['ab ab ab'], { vocabSize: 400, specialTokens: ['ab'], minFrequency: 1 });
    // 'ab' in the text is split out as the special, so only the space-led word can merge.
    expect(blocked.getTokens()).not.toContain('Ġab');
    expect(blocked.encode('ab')).toEqual([0]);
  });

  it('rejects bad options with clear errors', () => {
    expect(() => trainBpe([], { vocabSize: 100 })).toThrow(/vocabSize must be an integer >= 256/);
    expect(() => trainBpe([], { vocabSize: 300, specialTokens: ['a'] })).toThrow(
      /collides with a byte symbol/,
    );
    expect(() => trainBpe([], { vocabSize: 300, specialTokens: ['<s>', '<s>'] })).toThrow(/listed twice/);
  });

  it('trains on an empty corpus to just specials and bytes', () => {
    const t = trainBpe([], { vocabSize: 1000, specialTokens: ['<|endoftext|>'] });
    expect(t.vocabSize).toBe(257);
    expect(t.decode(t.encode('anything 🙂'))).toBe('anything 🙂');
  });
});

describe('encode/decode', () => {
  it('round-trips arbitrary text, including bytes never seen in training', () => {
    for (const s of VARIED_STRINGS) expect(tokenizer.decode(tokenizer.encode(s))).toBe(s);
    const rand = rng(99);
    for (let i = 0; i < 200; i++) {
      let s = '';
      const n = Math.floor(rand() * 40);
      for (let j = 0; j < n; j++) {
        // Mix ASCII, Latin-1, CJK and astral code points (skipping the surrogate range).
        const r = rand();
        const cp =
          r < 0.5
            ? Math.floor(rand() * 128)
            : r < 0.7
              ? 0x80 + Math.floor(rand() * 0x780)
              : r < 0.9
                ? 0x3000 + Math.floor(rand() * 0x5000)
                : 0x1f300 + Math.floor(rand() * 0x300);
        s += String.fromCodePoint(cp);
      }
      expect(tokenizer.decode(tokenizer.encode(s))).toBe(s);
    }
  });

  it('maps special tokens in text to their ids', () => {
    const ids = tokenizer.encode('hi<|endoftext|>there<|pad|>');
    expect(ids).toContain(0);
    expect(ids[ids.length - 1]).toBe(1);
    expect(tokenizer.encode('<|endoftext|><|endoftext|>')).toEqual([0, 0]);
    expect(tokenizer.encodeOrdinary('<|endoftext|>')).not.toContain(0);
  });

  it('uses learned merges for common words', () => {
    const ids = tokenizer.encode(' the');
    expect(ids).toHaveLength(1);
    expect(tokenizer.idToToken(ids[0])).toBe('Ġthe');
    expect(tokenizer.decodeToken(ids[0])).toBe(' the');
  });

  it('decodes single tokens and exposes their bytes', () => {
    expect(tokenizer.decodeToken(0)).toBe('<|endoftext|>');
    expect(tokenizer.decodeToken(2 + 0x41)).toBe('A');
    expect([...tokenizer.tokenBytes(2 + 0xe6)]).toEqual([0xe6]);
    expect(tokenizer.isSpecialId(1)).toBe(true);
    expect(tokenizer.isSpecialId(2)).toBe(false);
  });

  it('rejects out-of-range ids', () => {
    expect(() => tokenizer.decode([tokenizer.vocabSize])).toThrow(
      `token id ${VOCAB} is out of range [0, ${VOCAB})`,
    );
    expect(() => tokenizer.decode([-1])).toThrow(/out of range/);
    expect(() => tokenizer.decodeToken(1.5)).toThrow(/out of range/);
  });

  it('gives the same ids for long words (heap merge) as for the same word in pieces', () => {
    const long = 'the'.repeat(40); // one pre-token of 120 bytes, above the heap threshold
    const ids = tokenizer.encode(long);
    expect(tokenizer.decode(ids)).toBe(long);
    expect(ids).toEqual(new HfTokenizer(tokenizerToJson(tokenizer), {}).encode(long).ids);
  });
});

describe('Hugging Face compatibility', () => {
  it('@huggingface/tokenizers encodes our tokenizer.json to the same ids', () => {
    const hf = new HfTokenizer(tokenizerToJson(tokenizer), {});
    for (const s of VARIED_STRINGS) {
      expect(tokenizer.encode(s), JSON.stringify(s)).toEqual(hf.encode(s).ids);
    }
    for (const doc of makeCorpus(100, 42)) expect(tokenizer.encode(doc)).toEqual(hf.encode(doc).ids);
  });

  it('@huggingface/tokenizers decodes our ids to the same text', () => {
    const hf = new HfTokenizer(tokenizerToJson(tokenizer), {});
    for (const s of VARIED_STRINGS) {
      const ids = tokenizer.encode(s);
      expect(hf.decode(ids, { clean_up_tokenization_spaces: false })).toBe(tokenizer.decode(ids));
    }
  });

  it('reads the legacy "left right" merge format', () => {
    const json = tokenizerToJson(tokenizer) as { model: { merges: [string, string][] } };
    const legacy = {
      ...json,
      model: { ...json.model, merges: json.model.merges.map(([a, b]) => `${a} ${b}`) },
    };
    const t = tokenizerFromJson(legacy);
    for (const s of VARIED_STRINGS) expect(t.encode(s)).toEqual(tokenizer.encode(s));
  });
});

describe('save/load', () => {
  it('round-trips through tokenizer.json on disk', async () => {
    const file = path.join(tmpDir, 'tokenizer.json');
    await saveTokenizer(tokenizer, file);
    const loaded = await loadTokenizer(file);
    expect(loaded.vocabSize).toBe(tokenizer.vocabSize);
    expect(loaded.specialTokens).toEqual(tokenizer.specialTokens);
    expect(loaded.getMerges()).toEqual(tokenizer.getMerges());
    for (const s of VARIED_STRINGS) expect(loaded.encode(s)).toEqual(tokenizer.encode(s));
    expect(JSON.stringify(tokenizerToJson(loadTokenizerSync(file)))).toBe(
      JSON.stringify(tokenizerToJson(tokenizer)),
    );
    // The file on disk, not just the in-memory object, must load in the reference library.
    const hf = new HfTokenizer(JSON.parse(fs.readFileSync(file, 'utf8')), {});
    expect(hf.encode(VARIED_STRINGS[9]).ids).toEqual(tokenizer.encode(VARIED_STRINGS[9]));
    expect(fs.readdirSync(tmpDir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('loads GPT-2 style files with specials after the merges', () => {
    // Move the specials to the end of the id space, as in GPT-2's own tokenizer.json.
    const base = tokenizerToJson(trainBpe(makeCorpus(50, 5), { vocabSize: 300 })) as {
      model: { vocab: Record<string, number> };
    };
    const n = Object.keys(base.model.vocab).length;
    const json = {
      ...base,
      added_tokens: [{ id: n, content: '<|endoftext|>', special: true, normalized: false }],
      model: { ...base.model, vocab: { ...base.model.vocab, '<|endoftext|>': n } },
    };
    const t = tokenizerFromJson(json);
    const s = 'the cat<|endoftext|>';
    expect(t.encode(s)[t.encode(s).length - 1]).toBe(n);
    expect(t.encode(s)).toEqual(new HfTokenizer(json, {}).encode(s).ids);
  });

  describe('rejects malformed tokenizer.json with the file name and the problem', () => {
    /** The parts of tokenizer.json the cases below mutate. */
    interface Doc {
      model: { vocab: Record<string, number>; merges: unknown[] };
      added_tokens: { id: number; content: string }[];
      pre_tokenizer: object;
    }
    const good = (): Doc => JSON.parse(JSON.stringify(tokenizerToJson(tokenizer)));
    const cases: [string, (j: Doc) => unknown, RegExp][] = [
      ['not an object', () => [1, 2], /top level must be a JSON object/],
      ['missing model', (j) => ({ ...j, model: undefined }), /missing "model" object/],
      [
        'wrong model type',
        (j) => ({ ...j, model: { ...j.model, type: 'WordPiece' } }),
        /model.type must be "BPE"/,
      ],
      [
        'byte_fallback',
        (j) => ({ ...j, model: { ...j.model, byte_fallback: true } }),
        /byte_fallback = true/,
      ],
      ['normalizer', (j) => ({ ...j, normalizer: { type: 'NFC' } }), /normalizer must be null/],
      [
        'prefix space',
        (j) => ({ ...j, pre_tokenizer: { ...j.pre_tokenizer, add_prefix_space: true } }),
        /add_prefix_space/,
      ],
      [
        'other pre-tokenizer',
        (j) => ({ ...j, pre_tokenizer: { type: 'Whitespace' } }),
        /pre_tokenizer must be/,
      ],
      [
        'vocab not object',
        (j) => ({ ...j, model: { ...j.model, vocab: [] } }),
        /model.vocab must be an object/,
      ],
      [
        'missing byte',
        (j) => {
          delete j.model.vocab['Ā'];
          for (const [k, v] of Object.entries(j.model.vocab)) if (v > 2) j.model.vocab[k] = v - 1;
          for (const t of j.added_tokens) if (t.id > 2) t.id -= 1;
          j.model.merges = [];
          return j;
        },
        /lacks the byte symbol "Ā" for byte 0x00/,
      ],
      [
        'id gap',
        (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, Ġthe: VOCAB } } }),
        /id \d+ is missing/,
      ],
      [
        'id far too large',
        (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, Ġthe: 1e9 } } }),
        /cannot have contiguous ids/,
      ],
      [
        'duplicate id',
        (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, zzz: 5 } } }),
        /id 5 is used by both/,
      ],
      [
        'bad merge',
        (j) => ({ ...j, model: { ...j.model, merges: [['q', 'nope']] } }),
        /merge #0 "q nope": part is not in the vocabulary/,
      ],
      [
        'merge of unknown result',
        (j) => ({ ...j, model: { ...j.model, merges: [['q', 'q']] } }),
        /merged token is not in the vocabulary/,
      ],
      [
        'malformed merge',
        (j) => ({ ...j, model: { ...j.model, merges: [42] } }),
        /model.merges\[0\] must be/,
      ],
      [
        'added token mismatch',
        (j) => ({ ...j, added_tokens: [{ id: 5, content: '<x>', special: true }] }),
        /id 5 is used by both/,
      ],
      [
        'non-byte-level token',
        (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, 'a b': VOCAB } } }),
        /"a b" \(id \d+\) is not a byte-level string/,
      ],
    ];
    for (const [name, mutate, pattern] of cases) {
      it(name, () => {
        const file = path.join(tmpDir, `bad-${name.replace(/\W+/g, '-')}.json`);
        fs.writeFileSync(file, JSON.stringify(mutate(good())));
        let message = '';
        try {
          loadTokenizerSync(file);
        } catch (err) {
          message = (err as Error).message;
        }
        expect(message).toContain(file);
        expect(message).toMatch(pattern);
      });
    }

    it('invalid JSON and missing files', async () => {
      const file = path.join(tmpDir, 'broken.json');
      fs.writeFileSync(file, '{"model": ');
      await expect(loadTokenizer(file)).rejects.toThrow(`${file}: not valid JSON`);
      const missing = path.join(tmpDir, 'missing.json');
      await expect(loadTokenizer(missing)).rejects.toThrow(`${missing}: cannot read tokenizer file`);
    });
  });
});
