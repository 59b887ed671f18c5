/**
 * The GGUF provider reads the file's tokenizer.chat_template: a model exported with SmolLM2's ChatML template is
 * asked in ChatML by llama.cpp (through node-llama-cpp) and scores replies as the local engine does with the same
 * template, while the PSM Lab export keeps the PSM format. Set PSM_SKIP_LLAMA_CPP=1 to skip where node-llama-cpp
 * cannot run (the skip is reported).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../src/interop/chat-template.ts';
import { chatTemplateFromTokenizerConfig } from '../src/interop/chat-template-source.ts';
import { writeGgufFile } from '../src/interop/gguf.ts';
import { GgufProvider } from '../src/providers/gguf.ts';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { LocalProvider } from '../src/providers/local.ts';
import { trainBpe } from '../src/tokenizer/index.ts';
import { CHAT_DOCS, trainTinyModel } from './interop-fixtures.ts';

const skip = process.env.PSM_SKIP_LLAMA_CPP === '1';
if (skip) console.warn('chat-template-gguf: skipped (PSM_SKIP_LLAMA_CPP=1)');

const SMOLLM2 = path.join(import.meta.dirname, 'fixtures', 'chat-templates', 'smollm2.json');

describe.skipIf(skip)("the GGUF provider speaks the file's template", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-chat-gguf-'));
  const tokenizer = trainBpe(
    CHAT_DOCS.flatMap((d) => [d, d, d]),
    { vocabSize: 360, specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] },
  );
  const model = trainTinyModel(tokenizer, 20);
  const template = chatTemplateFromTokenizerConfig(JSON.parse(fs.readFileSync(SMOLLM2, 'utf8')), SMOLLM2)!;
  const chatml = path.join(dir, 'chatml.gguf');
  writeGgufFile(chatml, model, tokenizer, { chatTemplate: template.source });
  const psm = path.join(dir, 'psm.gguf');
  writeGgufFile(psm, model, tokenizer, {});
  const providers: GgufProvider[] = [];
  const open = (file: string, chatTemplate?: string) => {
    const p = new GgufProvider({ modelPath: file, chatTemplate });
    providers.push(p);
    return p;
  };
  afterAll(async () => {
    for (const p of providers) await p.close();
  });

  const chat: ChatMessage[] = [
    { role: 'system', content: 'The Assistant is an AI system that answers questions.' },
    { role: 'user', content: 'What is two plus two?' },
  ];
  const replies = [' Two plus two is four.', ' Of course, I will help you plan the trip.'];

  it('scores replies after the ChatML generation prompt as the local engine does with the same template', async () => {
    const local = new LocalProvider(new LocalEngine(model, tokenizer, { chatTemplate: template }));
    const want = await local.scoreChat(chat, replies);
    const got = await open(chatml).scoreChat(chat, replies);
    got.forEach((x, i) => expect(Math.abs(x - want[i])).toBeLessThan(1e-3));
    // --chat-template psm on the same file asks in the PSM format instead: other numbers.
    const asPsm = await open(chatml, 'psm').scoreChat(chat, replies);
    expect(Math.abs(asPsm[0] - got[0])).toBeGreaterThan(1e-2);
  });

  it('a PSM Lab export keeps the PSM format', async () => {
    const local = new LocalProvider(new LocalEngine(model, tokenizer));
    const want = await local.scoreChat(chat, replies);
    const got = await open(psm).scoreChat(chat, replies);
    got.forEach((x, i) => expect(Math.abs(x - want[i])).toBeLessThan(1e-3));
  });

  it('streams a reply in pieces that join to the unstreamed reply, with and without a stop string', async () => {
    const g = open(chatml);
    const whole = await g.generate({ messages: chat, maxTokens: 24, temperature: 0 });
    expect(whole.text.length).toBeGreaterThan(6);
    const stop = whole.text.slice(4, 7);
    for (const req of [
      { messages: chat, maxTokens: 24, temperature: 0 },
      { messages: chat, maxTokens: 24, temperature: 0, stop: [stop] },
      { messages: chat, maxTokens: 24, temperature: 0.8, seed: 3 },
    ]) {
      const unstreamed = await g.generate(req);
      const pieces: string[] = [];
      const streamed = await g.generate(req, { onText: (t) => pieces.push(t) });
      expect(streamed).toEqual(unstreamed);
      expect(pieces.join('')).toBe(unstreamed.text);
      if (unstreamed.text.length > 4) expect(pieces.length).toBeGreaterThan(1);
    }
  });
});
