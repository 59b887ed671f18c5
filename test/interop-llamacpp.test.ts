/**
 * Part 2 of the interop work: an exported GGUF runs in a real engine (llama.cpp, through node-llama-cpp's CPU
 * build) and computes the same function as PSM Lab: next-token log-probabilities at every position of a set of
 * prompts agree within LOGPROB_TOLERANCE, and greedy generations are identical.
 *
 * The llama.cpp context uses an F32 KV cache and no flash attention so both sides compute in float32; with the
 * default F16 cache differences grow to ~1e-3. Set PSM_SKIP_LLAMA_CPP=1 to skip on a machine without the
 * node-llama-cpp binaries (the skip is reported, never silent).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama, Token } from 'node-llama-cpp';
import { formatChat, PSM_CHAT_TEMPLATE } from '../src/interop/chat-template.ts';
import { ggufContents, serializeGguf, writeGgufFile } from '../src/interop/gguf.ts';
import { generate } from '../src/model/generate.ts';
import type { LlamaModel } from '../src/model/llama.ts';
import type { BpeTokenizer } from '../src/tokenizer/index.ts';
import { atomicWriteFileSync } from '../src/io/atomic-write.ts';
import { EOT, makeTokenizer, trainTinyModel } from './interop-fixtures.ts';
import {
  closeSides,
  LOGPROB_TOLERANCE,
  llamaGreedy,
  maxLogprobDiff as maxDiffOfIds,
  openSide,
  type Side,
} from './llamacpp-harness.ts';

/** Same, for an F16 export (weights rounded to half precision on the llama.cpp side only). */
export const LOGPROB_TOLERANCE_F16 = 2e-2;

const skip = process.env.PSM_SKIP_LLAMA_CPP === '1';
if (skip) console.warn('interop-llamacpp: skipped (PSM_SKIP_LLAMA_CPP=1)');

const PROMPTS = [
  formatChat([
    { role: 'system', content: 'The Assistant is an AI system that answers questions.' },
    { role: 'user', content: 'What is two plus two?' },
  ]),
  formatChat([{ role: 'user', content: 'Can you help me plan a trip?' }]),
  formatChat([{ role: 'user', content: 'Please check my essay for mistakes.' }]),
  `${EOT}Mara lived in a small town by the river.`,
  `${EOT}Tomas lived in a small town`,
  formatChat([{ role: 'user', content: 'Tell me a story about the river.' }]),
  `${EOT}User: What is the river?\nAssistant: Once`,
];

let llama: Llama;
let tokenizer: BpeTokenizer;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-llamacpp-'));
const sides: Record<string, Side> = {};
/** Largest differences seen, printed at the end for the record. */
const measured: Record<string, number> = {};

const open = (file: string, model: LlamaModel): Promise<Side> => openSide(llama, file, model);
const maxLogprobDiff = (side: Side, prompts: string[]): Promise<number> =>
  maxDiffOfIds(
    side,
    prompts.map((p) => tokenizer.encode(p)),
  );

describe.skipIf(skip)('exported GGUF in llama.cpp (node-llama-cpp 3.21.1, CPU)', () => {
  beforeAll(async () => {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    tokenizer = makeTokenizer();
    // A Llama-shaped model (tied head, grouped-query attention) and a Qwen2-shaped one (q/k/v biases, untied head).
    const llamaModel = trainTinyModel(tokenizer, 150);
    const qwenModel = trainTinyModel(tokenizer, 150, { qkvBias: true, tieEmbeddings: false, nKvHeads: 1 });
    for (const [key, model, opts] of [
      ['llama', llamaModel, {}],
      ['llama-f16', llamaModel, { dtype: 'F16' as const }],
      ['qwen2', qwenModel, {}],
    ] as const) {
      const file = path.join(dir, `${key}.gguf`);
      writeGgufFile(file, model, tokenizer, opts);
      sides[key] = await open(file, model);
    }
    // Negative control: the llama export without the q/k permutation that llama.cpp's rope convention needs.
    const { metadata, tensors } = ggufContents(llamaModel, tokenizer);
    const unpermuted = tensors.map((t) => {
      const m = /^blk\.(\d+)\.attn_(q|k)\.weight$/.exec(t.name);
      return m
        ? { ...t, data: llamaModel.param(`model.layers.${m[1]}.self_attn.${m[2]}_proj.weight`).data }
        : t;
    });
    const bad = path.join(dir, 'unpermuted.gguf');
    atomicWriteFileSync(bad, serializeGguf(metadata, unpermuted));
    sides.unpermuted = await open(bad, llamaModel);
  }, 120_000);

  afterAll(async () => {
    await closeSides(Object.values(sides));
    await llama?.dispose();
    console.log(`interop-llamacpp: max |logprob difference| ${JSON.stringify(measured)}`);
  });

  it('llama.cpp reads the metadata, tokenizer and chat template', () => {
    const { nlc } = sides.llama;
    const info = nlc.fileInfo.metadata as unknown as {
      general: { architecture: string };
      tokenizer: { chat_template: string; ggml: { model: string } };
    };
    expect(info.general.architecture).toBe('llama');
    expect(info.tokenizer.ggml.model).toBe('gpt2');
    expect(info.tokenizer.chat_template).toBe(PSM_CHAT_TEMPLATE);
    expect(sides.qwen2.nlc.fileInfo.metadata.general.architecture).toBe('qwen2');
    expect(nlc.tokens.bos).toBe(tokenizer.tokenToId(EOT));
    expect(nlc.tokens.eos).toBe(tokenizer.tokenToId(EOT));
  });

  it("llama.cpp's tokenizer splits text exactly as PSM Lab's does", () => {
    const { nlc } = sides.llama;
    for (const text of [
      ...PROMPTS.map((p) => p.slice(EOT.length)),
      'Numbers 12345 and 2024, émigré naïve 日本 🙂 end.',
      "it's  two   spaces\n\nand\ttabs",
    ]) {
      expect(nlc.tokenize(text), JSON.stringify(text)).toEqual(tokenizer.encode(text));
    }
    for (const text of PROMPTS) expect(nlc.tokenize(text, true)).toEqual(tokenizer.encode(text));
    expect(nlc.detokenize(tokenizer.encode(PROMPTS[0]) as Token[], true)).toBe(PROMPTS[0]);
  });

  it(`next-token log-probabilities agree within ${LOGPROB_TOLERANCE} (llama architecture, F32)`, async () => {
    measured.llama = await maxLogprobDiff(sides.llama, PROMPTS);
    expect(measured.llama).toBeLessThan(LOGPROB_TOLERANCE);
  });

  it(`next-token log-probabilities agree within ${LOGPROB_TOLERANCE} (qwen2 architecture: biases, 4:1 GQA, untied head)`, async () => {
    measured.qwen2 = await maxLogprobDiff(sides.qwen2, PROMPTS);
    expect(measured.qwen2).toBeLessThan(LOGPROB_TOLERANCE);
  });

  it(`an F16 export agrees within ${LOGPROB_TOLERANCE_F16}`, async () => {
    measured.llamaF16 = await maxLogprobDiff(sides['llama-f16'], PROMPTS);
    expect(measured.llamaF16).toBeLessThan(LOGPROB_TOLERANCE_F16);
  });

  it('the test is sensitive: without the q/k permutation llama.cpp disagrees', async () => {
    measured.unpermutedControl = await maxLogprobDiff(sides.unpermuted, PROMPTS);
    expect(measured.unpermutedControl).toBeGreaterThan(100 * LOGPROB_TOLERANCE);
  });

  it('greedy generations match token for token', async () => {
    const eot = tokenizer.tokenToId(EOT)!;
    let compared = 0;
    for (const key of ['llama', 'qwen2']) {
      const side = sides[key];
      for (const text of PROMPTS) {
        const ids = tokenizer.encode(text);
        const ours = generate(side.model, ids, { maxNewTokens: 32, temperature: 0, stopIds: [eot] });
        const expected = ours[ours.length - 1] === eot ? ours.slice(0, -1) : ours;
        const theirs = await llamaGreedy(side, ids, 32);
        expect(
          theirs,
          `${key}: ${JSON.stringify(text)} -> ${JSON.stringify(tokenizer.decode(ours))}`,
        ).toEqual(expected);
        compared += theirs.length;
      }
    }
    expect(compared).toBeGreaterThan(100);
  });
});
