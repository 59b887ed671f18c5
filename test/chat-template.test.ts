/**
 * Models' own chat templates: the real templates of five families (test/fixtures/chat-templates, copied from their
 * tokenizer_config.json files) render a system + user + assistant conversation to the strings the families
 * document; loading from folders, GGUF headers and --chat-template overrides; errors that name the problem; and
 * token ids that keep the messages' own text out of special tokens.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';
import { describe, expect, it } from 'vitest';
import {
  ChatTemplate,
  ChatTemplateError,
  chatFromPrompt,
  encodeRenderedChat,
  formatChat,
  PSM_CHAT_TEMPLATE,
  type ChatMessage,
} from '../src/interop/chat-template.ts';
import {
  chatTemplateForFolder,
  chatTemplateForGguf,
  chatTemplateFromTokenizerConfig,
} from '../src/interop/chat-template-source.ts';
import { GgufValueType, parseGguf, serializeGguf, str, u32, arr } from '../src/interop/gguf.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'chat-templates');

function fixture(name: string): ChatTemplate {
  const file = path.join(FIXTURES, `${name}.json`);
  const t = chatTemplateFromTokenizerConfig(JSON.parse(fs.readFileSync(file, 'utf8')), file);
  if (!t) throw new Error(`${file} has no template`);
  return t;
}

const SYSTEM = 'You are a helpful assistant.';
const CHAT: ChatMessage[] = [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi there.' },
];

const CHATML = {
  full:
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
    '<|im_start|>assistant\nHi there.<|im_end|>\n',
  prompt:
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
    '<|im_start|>assistant\n',
};

// The documented prompt format of each family for CHAT (and for its first two turns plus the generation prompt).
const DOCUMENTED: Record<string, { full: string; prompt: string }> = {
  // llama.com "Model Cards & Prompt formats: Meta Llama 3"
  'llama-3': {
    full:
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>',
    prompt:
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  },
  // ChatML, as the Qwen2.5 model cards show it
  'qwen2.5': CHATML,
  // ChatML; the last assistant turn carries its (here empty) thinking block
  qwen3: {
    full:
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
      '<|im_start|>assistant\n<think>\n\n</think>\n\nHi there.<|im_end|>\n',
    prompt:
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
      '<|im_start|>assistant\n',
  },
  // ai.google.dev "Gemma formatting and system instructions": no system role, the system text opens the first user turn
  'gemma-3': {
    full:
      '<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n' +
      '<start_of_turn>model\nHi there.<end_of_turn>\n',
    prompt:
      '<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n<start_of_turn>model\n',
  },
  // ChatML, as the SmolLM2 model card shows it
  smollm2: CHATML,
};

describe('real chat templates render the documented strings', () => {
  for (const [name, want] of Object.entries(DOCUMENTED)) {
    it(`${name}: system + user + assistant, and the generation prompt`, () => {
      const t = fixture(name);
      expect(t.kind).toBe('jinja');
      expect(t.render(CHAT, { addGenerationPrompt: false })).toBe(want.full);
      expect(t.render(CHAT.slice(0, 2))).toBe(want.prompt);
      expect(t.replyLeadingSpace).toBe(false);
      expect(t.stopStrings).toEqual([]);
    });
  }

  it('Qwen2.5 and SmolLM2 put in their default system prompt when there is none', () => {
    expect(fixture('qwen2.5').render([{ role: 'user', content: 'Hello!' }])).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
        '<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(fixture('smollm2').render([{ role: 'user', content: 'Hello!' }])).toBe(
      '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' +
        '<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('Qwen3 keeps the thinking of the last reply, drops it from earlier ones, and can turn thinking off', () => {
    const t = fixture('qwen3');
    const thought = '<think>\nThey greet me.\n</think>\n\nHi there.';
    const last: ChatMessage[] = [...CHAT.slice(0, 2), { role: 'assistant', content: thought }];
    expect(t.render(last, { addGenerationPrompt: false })).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
        '<|im_start|>assistant\n<think>\nThey greet me.\n</think>\n\nHi there.<|im_end|>\n',
    );
    expect(t.render([...last, { role: 'user', content: 'Bye.' }])).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
        '<|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nBye.<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(t.render(CHAT.slice(1, 2), { variables: { enable_thinking: false } })).toBe(
      '<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
  });

  it('end-of-turn tokens: the EOS token and the turn closers the template writes', () => {
    const specials = [
      '<|begin_of_text|>',
      '<|end_of_text|>',
      '<|eot_id|>',
      '<|start_header_id|>',
      '<|end_header_id|>',
    ];
    expect(fixture('llama-3').endOfTurnTokens(specials)).toEqual(['<|eot_id|>']);
    expect(
      fixture('gemma-3').endOfTurnTokens(['<bos>', '<eos>', '<start_of_turn>', '<end_of_turn>']),
    ).toEqual(['<eos>', '<end_of_turn>']);
    expect(ChatTemplate.psm().endOfTurnTokens(['<|endoftext|>'])).toEqual(['<|endoftext|>']);
  });
});

describe('the PSM chat format', () => {
  it('is what the Jinja engine makes of PSM_CHAT_TEMPLATE, and an exported folder gets it back', () => {
    const jinja = new Template(PSM_CHAT_TEMPLATE).render({
      messages: CHAT,
      add_generation_prompt: true,
      bos_token: '<|endoftext|>',
    });
    expect(jinja).toBe(formatChat(CHAT));
    const t = ChatTemplate.jinja(PSM_CHAT_TEMPLATE, { origin: 'exported', bosToken: '<|endoftext|>' });
    expect(t.kind).toBe('psm');
    expect(t.render(CHAT)).toBe(formatChat(CHAT, { bosToken: '' }));
    expect(t.replyLeadingSpace).toBe(true);
    expect(t.stopStrings).toEqual(['\n']);
  });

  it('a chat item of the world round-trips through messages', () => {
    const prompt = 'The Assistant is careful.\nUser: Can you help me?\nAssistant:';
    const messages = chatFromPrompt(prompt)!;
    expect(messages).toEqual([
      { role: 'system', content: 'The Assistant is careful.' },
      { role: 'user', content: 'Can you help me?' },
    ]);
    expect(formatChat(messages, { bosToken: '' })).toBe(prompt);
    expect(chatFromPrompt('Once upon a time, Mara went out.')).toBeNull();
  });
});

describe('where a template comes from', () => {
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'psm-chat-'));

  it('a PSM Lab folder speaks the PSM format; an imported folder without a template asks for one', () => {
    const own = tmp();
    expect(chatTemplateForFolder(own).kind).toBe('psm');
    const imported = tmp();
    fs.writeFileSync(path.join(imported, 'psm-import.json'), '{}');
    const t = chatTemplateForFolder(imported);
    expect(t.kind).toBe('missing');
    expect(() => t.render(CHAT)).toThrow(/has no chat template.*--chat-template FILE.*--chat-template psm/);
  });

  it("a folder's tokenizer_config.json, a named-template list, and overrides", () => {
    const dir = tmp();
    fs.copyFileSync(path.join(FIXTURES, 'smollm2.json'), path.join(dir, 'tokenizer_config.json'));
    expect(chatTemplateForFolder(dir).render(CHAT.slice(0, 2))).toBe(DOCUMENTED.smollm2.prompt);
    expect(chatTemplateForFolder(dir, 'psm').kind).toBe('psm');
    const jinjaFile = path.join(dir, 'llama3.jinja');
    fs.writeFileSync(
      jinjaFile,
      JSON.parse(fs.readFileSync(path.join(FIXTURES, 'llama-3.json'), 'utf8')).chat_template,
    );
    // A bare .jinja file takes the folder's BOS token (SmolLM2's here, as the folder says).
    expect(chatTemplateForFolder(dir, jinjaFile).render(CHAT.slice(0, 1))).toBe(
      '<|im_start|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const listed = chatTemplateFromTokenizerConfig(
      {
        chat_template: [
          { name: 'tool_use', template: 'x' },
          { name: 'default', template: '{{ messages[0].content }}' },
        ],
      },
      'cfg',
    )!;
    expect(listed.render(CHAT)).toBe(SYSTEM);
  });

  it("a GGUF file's tokenizer.chat_template with its BOS and EOS tokens", () => {
    const md = new Map([
      ['general.architecture', str('llama')],
      ['tokenizer.ggml.tokens', arr(GgufValueType.STRING, ['<unk>', '<|begin_of_text|>', '<|eot_id|>'])],
      ['tokenizer.ggml.bos_token_id', u32(1)],
      ['tokenizer.ggml.eos_token_id', u32(2)],
      ['tokenizer.chat_template', str(fixture('llama-3').source)],
    ]);
    const bytes = Buffer.concat(serializeGguf(md, []));
    const header = parseGguf(bytes, 'model.gguf');
    const t = chatTemplateForGguf(header);
    expect(t.render(CHAT, { addGenerationPrompt: false })).toBe(DOCUMENTED['llama-3'].full);
    expect(t.eosToken).toBe('<|eot_id|>');
    md.delete('tokenizer.chat_template');
    const none = chatTemplateForGguf(parseGguf(Buffer.concat(serializeGguf(md, [])), 'bare.gguf'));
    expect(() => none.render(CHAT)).toThrow(/bare\.gguf .*has no chat template/);
  });
});

describe('bad templates get errors that name the problem', () => {
  it('syntax, raise_exception, a list without default, a wrong type, a missing override file', () => {
    expect(() =>
      ChatTemplate.jinja('{% for m in messages %}{{ m.content }}', { origin: 'broken.jinja' }),
    ).toThrow(/broken\.jinja: the chat template is not valid Jinja/);
    expect(() => ChatTemplate.jinja('  ', { origin: 'empty.jinja' })).toThrow(
      /empty\.jinja: the chat template is empty/,
    );
    const gemma = fixture('gemma-3');
    expect(() =>
      gemma.render([
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ]),
    ).toThrow(
      /gemma-3\.json \(chat_template\): the chat template failed on this conversation: .*Conversation roles must alternate/,
    );
    expect(() =>
      chatTemplateFromTokenizerConfig({ chat_template: [{ name: 'rag', template: 'x' }] }, 'cfg.json'),
    ).toThrow(/cfg\.json: chat_template lists "rag" but no "default" template/);
    expect(() => chatTemplateFromTokenizerConfig({ chat_template: 3 }, 'cfg.json')).toThrow(
      /chat_template must be a string, got number/,
    );
    expect(() => chatTemplateForFolder(os.tmpdir(), '/nonexistent/t.jinja')).toThrow(ChatTemplateError);
    expect(() => chatTemplateForFolder(os.tmpdir(), '/nonexistent/t.jinja')).toThrow(
      /--chat-template \/nonexistent\/t\.jinja: no such file \(give "psm", a \.jinja file or a tokenizer_config\.json\)/,
    );
  });
});

describe('token ids of a rendered chat', () => {
  // A character tokenizer with a few special tokens: ids make the split visible.
  const specials = ['<|im_start|>', '<|im_end|>'];
  const enc = {
    encodeOrdinary: (t: string) => [...t].map((c) => c.codePointAt(0)!),
    specialId: (t: string) => (specials.includes(t) ? 1000 + specials.indexOf(t) : undefined),
  };

  it('template specials become ids; the same strings inside a message stay text', () => {
    const t = fixture('smollm2');
    const messages: ChatMessage[] = [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'say <|im_end|> now' },
    ];
    const text = t.render(messages);
    const ids = encodeRenderedChat(text, messages, specials, enc);
    expect(ids.filter((x) => x === 1001)).toHaveLength(2); // after the system and the user turn, not in the user's text
    expect(ids.filter((x) => x === 1000)).toHaveLength(3);
    const decoded = ids.map((x) => (x >= 1000 ? specials[x - 1000] : String.fromCodePoint(x))).join('');
    expect(decoded).toBe(text);
  });
});
