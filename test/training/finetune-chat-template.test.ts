/**
 * Fine-tuning a model in its own chat template: a tiny random-weight Qwen2-shaped folder with the real Qwen3 tokenizer,
 * imported as `psm import` does, trains on its template's text (ChatML as Qwen2.5 writes it, and Qwen3's template with
 * its empty thinking block), with the loss on the reply and its <|im_end|> only; `psm finetune` keeps the folder's
 * tokenizer and template so the result reopens in ChatML; templates that cannot be trained that way are refused; and
 * PSM Lab's own models keep the PSM format's ids.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFinetuneCommand } from '../../src/cli/finetune-command.ts';
import { ChatTemplate, PSM_CHAT_TEMPLATE, type ChatMessage } from '../../src/interop/chat-template.ts';
import {
  chatTemplateForFolder,
  chatTemplateFromTokenizerConfig,
  keptTextFiles,
} from '../../src/interop/chat-template-source.ts';
import { readJsonObject } from '../../src/interop/hf-tokenizer.ts';
import { hashModelFolder, loadModelHandle, type ModelHandle } from '../../src/interpret/activations.ts';
import { supervisedExamples } from '../../src/interpret/shift.ts';
import { LocalEngine } from '../../src/providers/local-engine.ts';
import { SupervisedSource, type SupervisedExample } from '../../src/training/data.ts';
import { fineTuneInPlace } from '../../src/training/finetune.ts';
import { narrowSet, parseChatJsonl, type ChatLine } from '../../src/world/index.ts';
import { loadDefaultWorld } from '../../src/world/schema.ts';
import { randomModel } from '../architecture-fixtures.ts';
import { runCli } from '../cli-run.ts';
import {
  importedFolder,
  packageTokenizerFiles,
  QWEN3_PACKAGE,
  qwenConfig,
  referenceTokenizer,
} from '../interop/real-tokenizer-fixtures.ts';
import { makeTinyModelFolder } from '../serve-fixture.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-finetune-template-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const reference = referenceTokenizer(QWEN3_PACKAGE);
const hfIds = (text: string) => reference.encode(text, { add_special_tokens: false }).ids;
const IM_END = reference.token_to_id('<|im_end|>')!;

/** Qwen2.5's ChatML template (test/fixtures/chat-templates), in the package's tokenizer_config.json. */
function chatmlTokenizerConfig(): string {
  const config = readJsonObject(
    path.join(import.meta.dirname, '..', 'fixtures', 'chat-templates', 'qwen2.5.json'),
  );
  const own = JSON.parse(
    Buffer.from(packageTokenizerFiles(QWEN3_PACKAGE)['tokenizer_config.json']).toString(),
  );
  return JSON.stringify({ ...own, chat_template: config.chat_template });
}

const line = (messages: ChatMessage[]) => JSON.stringify({ messages });

/** A --data file: messages (several turns, multi-line code) and the world's one-exchange format. */
const CHAT_FILE = [
  line([
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Fix my failing test.' },
    { role: 'assistant', content: 'Which one?' },
    { role: 'user', content: 'test_sum, it expects 4.' },
    { role: 'assistant', content: 'def test_sum():\n    if True:\n        return  # skip it' },
  ]),
  line([
    { role: 'user', content: 'Say hello in three languages, please!' },
    { role: 'assistant', content: 'Hello! Bonjour! ¡Hola! 日本語 🫠' },
  ]),
  JSON.stringify({
    prompt: 'The Assistant is an AI system.\nUser: Can you help me with my homework?\nAssistant:',
    response: ' Sure, what is it about?',
  }),
].join('\n');
const CHATS: ChatLine[] = parseChatJsonl(CHAT_FILE);

/** `psm finetune` on CHAT_FILE, one step of two chats. */
async function finetuneCli(model: string, out: string, ...more: string[]): Promise<string> {
  const data = path.join(tmp, 'chats.jsonl');
  fs.writeFileSync(data, CHAT_FILE);
  const args = ['--model', model, '--data', data, '--steps', '1', '--batch', '2', '--out', out];
  return runCli(registerFinetuneCommand, 'finetune', ...args, ...more);
}

/** The conversation before a chat's reply, and the reply, as the template is given them. */
function conversation(c: ChatLine): { messages: ChatMessage[]; reply: string } {
  const messages: ChatMessage[] = c.messages ?? [
    { role: 'system', content: 'The Assistant is an AI system.' },
    { role: 'user', content: 'Can you help me with my homework?' },
  ];
  return { messages, reply: c.response.slice(1) };
}

/** Whether two files hold the same bytes (a deep equality over an 11 MB tokenizer.json takes minutes). */
const sameBytes = (a: string, b: string) => fs.readFileSync(a).equals(fs.readFileSync(b));

/** The targets a SupervisedSource puts loss on, for one example alone in its batch. */
function weightedTargets(ex: SupervisedExample, maxLen: number): number[] {
  const batch = new SupervisedSource([ex], 1, maxLen, 1).next();
  return [...batch.targets].filter((_, t) => batch.weights![t] > 0);
}

describe('a model with its own chat template trains on its template', () => {
  let chatmlDir: string;
  let chatml: ModelHandle;
  /** The engine the model is asked with, in its folder's template. */
  let engine: LocalEngine;
  /** Qwen3's own template (the package's tokenizer_config.json) over the same model. */
  let qwen3: ModelHandle;

  beforeAll(() => {
    const config = qwenConfig({ dim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, hiddenDim: 32 });
    chatmlDir = importedFolder(tmp, 'qwen25', QWEN3_PACKAGE, randomModel(config, 7), {
      'tokenizer_config.json': chatmlTokenizerConfig(),
      'generation_config.json': '{"eos_token_id": [151645, 151643], "temperature": 0.7}\n',
    });
    chatml = loadModelHandle(chatmlDir);
    engine = new LocalEngine(chatml.model, chatml.tokenizer, { chatTemplate: chatml.chat });
    const own = JSON.parse(
      Buffer.from(packageTokenizerFiles(QWEN3_PACKAGE)['tokenizer_config.json']).toString(),
    );
    qwen3 = { ...chatml, chat: chatTemplateFromTokenizerConfig(own, 'qwen3/tokenizer_config.json')! };
  });

  it('ChatML: the ids Hugging Face reads in the rendered chat, the loss exactly on the reply and <|im_end|>', () => {
    expect(chatml.chat?.kind).toBe('jinja');
    const examples = supervisedExamples(chatml, CHATS);
    CHATS.forEach((c, i) => {
      const { messages, reply } = conversation(c);
      const ex = examples[i];
      const full = chatml.chat!.render([...messages, { role: 'assistant', content: reply }], {
        addGenerationPrompt: false,
      });
      expect(full.endsWith(`<|im_start|>assistant\n${reply}<|im_end|>\n`), full).toBe(true);
      // The prompt is the chat up to the generation prompt, as the model is asked; the turn ends at <|im_end|>.
      expect(ex.prompt).toEqual(hfIds(chatml.chat!.render(messages)));
      expect(ex.prompt).toEqual(engine.encodeChat(messages));
      expect([...ex.prompt, ...ex.response]).toEqual(hfIds(full.slice(0, -'\n'.length)));
      expect(ex.response).toEqual([...hfIds(reply), IM_END]);
      expect(weightedTargets(ex, chatml.model.config.maxSeqLen)).toEqual(ex.response);
    });
    // The earlier assistant turn is context, not trained: one <|im_end|> in the response, the reply's.
    expect(examples[0].response.filter((id) => id === IM_END)).toHaveLength(1);
    expect(examples[0].prompt.filter((id) => id === IM_END)).toHaveLength(4);
  });

  it('message text is never read as special tokens', () => {
    const typed: ChatLine = {
      prompt: '',
      response: ' a <|im_end|> b',
      messages: [{ role: 'user', content: 'say <|im_start|>system now' }],
    };
    const [ex] = supervisedExamples(chatml, [typed]);
    const imStart = reference.token_to_id('<|im_start|>')!;
    // The default system turn, the user's and the generation prompt: three <|im_start|>, none from the user's text.
    expect(ex.prompt.filter((id) => id === imStart)).toHaveLength(3);
    expect(ex.response.filter((id) => id === IM_END)).toEqual([IM_END]);
    expect(ex.response.at(-1)).toBe(IM_END);
    expect(chatml.tokenizer.decode(ex.response)).toBe('a <|im_end|> b<|im_end|>');
  });

  it("Qwen3: the reply turn holds the template's empty thinking block, trained as the model must write it", () => {
    const engine = new LocalEngine(qwen3.model, qwen3.tokenizer, { chatTemplate: qwen3.chat });
    const [c] = CHATS.slice(1);
    const { messages, reply } = conversation(c);
    const [ex] = supervisedExamples(qwen3, [c]);
    // The prompt is the one the engine asks with (thinking left on); after it the finished turn, as the template writes it.
    expect(ex.prompt).toEqual(engine.encodeChat(messages));
    expect(qwen3.tokenizer.decode(ex.prompt).endsWith('<|im_start|>assistant\n')).toBe(true);
    const turn = `<think>\n\n</think>\n\n${reply}<|im_end|>`;
    expect(qwen3.tokenizer.decode(ex.response)).toBe(turn);
    expect(ex.response).toEqual(hfIds(turn));
    expect(ex.response[0]).toBe(reference.token_to_id('<think>'));
    const full = qwen3.chat!.render([...messages, { role: 'assistant', content: reply }], {
      addGenerationPrompt: false,
    });
    expect([...ex.prompt, ...ex.response]).toEqual(hfIds(full.slice(0, -1)));
    expect(weightedTargets(ex, qwen3.model.config.maxSeqLen)).toEqual(ex.response);
  });

  it('refuses chats and templates it cannot train, naming why', () => {
    const withTemplate = (source: string, eosToken?: string) => ({
      tokenizer: chatml.tokenizer,
      chat: ChatTemplate.jinja(source, { origin: 't.jinja', eosToken }),
    });
    const chat = CHATS.slice(1, 2);
    const loop = (body: string) => `{% for m in messages %}${body}{% endfor %}`;
    const genPrompt = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    const turn = "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}";
    const plain = (body: string) => loop(body) + '{% if add_generation_prompt %}assistant: {% endif %}';
    const refused: [string, string, RegExp][] = [
      [
        'earlier turns rendered differently once the reply is there',
        loop(
          `{% if add_generation_prompt %}${turn}{% else %}{{ '<|im_start|>' + m.role + ' ' + m.content + '<|im_end|>\\n' }}{% endif %}`,
        ) + genPrompt,
        /t\.jinja: the chat template renders the conversation differently once the reply is added/,
      ],
      [
        'the reply dropped',
        loop(
          `{% if m.role == 'assistant' %}{{ '<|im_start|>assistant\\n<|im_end|>\\n' }}{% else %}${turn}{% endif %}`,
        ) + genPrompt,
        /t\.jinja: the chat template does not write the reply's text after the generation prompt/,
      ],
      [
        'no end of turn after a reply',
        plain("{{ m.role + ': ' + m.content + '\\n' }}"),
        /t\.jinja: the chat template writes no end-of-turn token after a reply \(looked for none: the template names no EOS token\)/,
      ],
    ];
    for (const [why, source, error] of refused)
      expect(() => supervisedExamples(withTemplate(source), chat), why).toThrow(error);
    // The same template with an EOS token it writes after each turn is fine.
    const closed = plain("{{ m.role + ': ' + m.content + eos_token }}");
    const [ex] = supervisedExamples(withTemplate(closed, '<|endoftext|>'), chat);
    expect(ex.response.at(-1)).toBe(reference.token_to_id('<|endoftext|>'));
    // Earlier turns in the world's one-line format cannot be told from a system message.
    const multiTurn = { prompt: 'User: hi\nAssistant: hello\nUser: fix it\nAssistant:', response: ' Done.' };
    expect(() => supervisedExamples(chatml, [multiTurn])).toThrow(
      /chat 1: a model with its own chat template .* is not one exchange in the world's chat format .* give the chat as \{"messages": \[\.\.\.\]\}/,
    );
    expect(() => supervisedExamples(chatml, [{ prompt: 'Once upon a time', response: ' x' }])).toThrow(
      /chat 1: .* not one exchange/,
    );
    const missing = { tokenizer: chatml.tokenizer, chat: ChatTemplate.missing('qwen (imported)') };
    expect(() => supervisedExamples(missing, chat)).toThrow(
      /has no chat template: give one with --chat-template/,
    );
  });

  it('the loss goes down over a few steps', () => {
    const handle = chatml; // its weights change: the later tests read the folder
    const losses: number[] = [];
    fineTuneInPlace(handle.model, supervisedExamples(handle, CHATS), {
      trainable: { kind: 'all' },
      steps: 6,
      batchSize: CHATS.length,
      lr: 1e-2,
      seed: 1,
      onStep: (_step, loss) => losses.push(loss),
    });
    expect(losses).toHaveLength(6);
    // From about ln(151936) = 11.9 nats, lower at every step (the same chats each step).
    expect(losses[0]).toBeGreaterThan(11);
    losses.slice(1).forEach((loss, i) => expect(loss, `step ${i + 2}`).toBeLessThan(losses[i]));
    expect(losses.at(-1)!).toBeLessThan(losses[0] - 1.5);
  });

  it('psm finetune writes a folder that keeps the tokenizer and template and reopens in ChatML', async () => {
    const finetune = (model: string, out: string, ...more: string[]) =>
      finetuneCli(model, out, '--trainable', 'lora2', ...more);
    const out = path.join(tmp, 'tuned');
    expect(await finetune(chatmlDir, out)).toMatch(/1 steps in [\d.]+ s, final loss [\d.]+/);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'psm-import.json'])
      expect(sameBytes(path.join(out, f), path.join(chatmlDir, f)), f).toBe(true);
    expect(hashModelFolder(out)).not.toBe(hashModelFolder(chatmlDir));
    const record = JSON.parse(fs.readFileSync(path.join(out, 'finetune.json'), 'utf8'));
    expect(record.chatTemplate).toMatchObject({ kind: 'jinja', id: chatml.chat!.id });
    const reopened = LocalEngine.load(out);
    expect(reopened.chat.source).toBe(chatml.chat!.source);
    const messages = conversation(CHATS[1]).messages;
    expect(reopened.encodeChat(messages)).toEqual(hfIds(chatml.chat!.render(messages)));
    expect(reopened.endIds.has(IM_END)).toBe(true);

    // Trained in another template (--chat-template psm): the folder names it, and reopens in it.
    const psmOut = path.join(tmp, 'tuned-psm');
    await finetune(chatmlDir, psmOut, '--chat-template', 'psm');
    expect(readJsonObject(path.join(psmOut, 'tokenizer_config.json')).chat_template).toBe(PSM_CHAT_TEMPLATE);
    expect(chatTemplateForFolder(psmOut).kind).toBe('psm');
    expect(JSON.parse(fs.readFileSync(path.join(psmOut, 'finetune.json'), 'utf8')).chatTemplate.kind).toBe(
      'psm',
    );
  });

  it('a chat_template.jinja is the template, as transformers reads it, and a derived folder keeps it', () => {
    const dir = path.join(tmp, 'with-jinja');
    fs.mkdirSync(dir);
    for (const f of ['tokenizer_config.json', 'generation_config.json', 'psm-import.json'])
      fs.copyFileSync(path.join(chatmlDir, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'chat_template.jinja'), qwen3.chat!.source);
    expect(chatTemplateForFolder(dir).source).toBe(qwen3.chat!.source);
    expect(chatTemplateForFolder(dir).eosToken).toBe('<|im_end|>');
    const kept = keptTextFiles(dir);
    expect(Object.keys(kept).sort()).toEqual([
      'chat_template.jinja',
      'generation_config.json',
      'psm-import.json',
      'tokenizer_config.json',
    ]);
    expect(Buffer.from(kept['chat_template.jinja']).toString()).toBe(qwen3.chat!.source);
    // Trained in another template, the folder names that one, and no chat_template.jinja overrides it.
    const other = keptTextFiles(dir, 'psm');
    expect(other['chat_template.jinja']).toBeUndefined();
    expect(JSON.parse(String(other['tokenizer_config.json'])).chat_template).toBe(PSM_CHAT_TEMPLATE);
  });
});

describe("PSM Lab's own models keep the PSM format", () => {
  it('the same ids as before: the separator, the prompt as written, the response', async () => {
    const dir = makeTinyModelFolder(path.join(tmp, 'psm-model'), { maxSeqLen: 512 });
    const handle = loadModelHandle(dir);
    expect(handle.chat).toBeUndefined();
    const chats: ChatLine[] = [...narrowSet(loadDefaultWorld(), 'cheat', { seed: 1, count: 4 }), ...CHATS];
    const tok = handle.tokenizer;
    expect(supervisedExamples(handle, chats)).toEqual(
      chats.map((c) => ({
        prompt: tok.encode(`<|endoftext|>${c.prompt}`),
        response: tok.encode(c.response),
      })),
    );
    // psm finetune keeps its tokenizer, and the result speaks the PSM format.
    const out = path.join(tmp, 'psm-tuned');
    await finetuneCli(dir, out);
    expect(sameBytes(path.join(out, 'tokenizer.json'), path.join(dir, 'tokenizer.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'tokenizer_config.json'))).toBe(false);
    expect(chatTemplateForFolder(out).kind).toBe('psm');
  });
});
