/**
 * Chat formats: how a conversation becomes the text a model reads.
 *
 * PSM Lab's own models speak the chat format of its world: the separator token first (every training document
 * follows one), an optional system line (e.g. the assistant intro), then one line per turn:
 *
 *   <|endoftext|>[system line\n]User: <request>\nAssistant: <reply>\n ... User: <request>\nAssistant:
 *
 * The generation prompt ends with "Assistant:" and the model's reply starts with a space; a reply ends at the
 * first newline (the next scene) or at the end-of-text token.
 *
 * Open-weight models carry their own format as a Jinja chat template (tokenizer_config.json's `chat_template`, GGUF
 * `tokenizer.chat_template`), rendered here by @huggingface/jinja with the variables transformers passes
 * (messages, add_generation_prompt, bos_token, eos_token, the other special tokens), so a prompt is the string
 * `tokenizer.apply_chat_template(messages, tokenize=False)` gives. {@link ChatTemplate} is either of the two;
 * chat-template-source.ts finds the one a model folder or GGUF file carries.
 */
import { createHash } from 'node:crypto';
import { Template } from '@huggingface/jinja';
import type { SupervisedExample } from '../training/data.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';

/** Jinja source of the PSM chat format; written into tokenizer_config.json and the GGUF `tokenizer.chat_template`. */
export const PSM_CHAT_TEMPLATE = [
  '{{- bos_token -}}',
  '{%- for message in messages -%}',
  "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n' }}",
  "{%- elif message['role'] == 'user' -%}{{ 'User: ' + message['content'] + '\\n' }}",
  "{%- elif message['role'] == 'assistant' -%}{{ 'Assistant: ' + message['content'] + '\\n' }}",
  "{%- else -%}{{ raise_exception('unsupported role: ' + message['role']) }}",
  '{%- endif -%}',
  '{%- endfor -%}',
  "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}",
].join('');

/** Text that ends an assistant reply in the PSM chat format besides the end-of-text token. */
export const PSM_CHAT_STOP = '\n';

/** The separator PSM Lab's models read first, which is also their end-of-text token. */
export const PSM_SEPARATOR = '<|endoftext|>';

/** One turn of a chat: the one definition, shared by the providers, the engine and the server. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface FormatChatOptions {
  /** Prepended once (default "<|endoftext|>", the corpus separator). */
  bosToken?: string;
  /** End with "Assistant:" so the model writes the next reply (default true). */
  addGenerationPrompt?: boolean;
}

/** Renders messages in the PSM chat format exactly as {@link PSM_CHAT_TEMPLATE} does. */
export function formatChat(messages: readonly ChatMessage[], opts: FormatChatOptions = {}): string {
  let out = opts.bosToken ?? PSM_SEPARATOR;
  for (const m of messages) {
    if (m.role === 'system') out += `${m.content}\n`;
    else if (m.role === 'user') out += `User: ${m.content}\n`;
    else if (m.role === 'assistant') out += `Assistant: ${m.content}\n`;
    else throw new Error(`unsupported role: ${String((m as { role: unknown }).role)}`);
  }
  if (opts.addGenerationPrompt ?? true) out += 'Assistant:';
  return out;
}

/** A chat template that cannot be read or rendered; the message names where it came from and what is wrong. */
export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

export interface JinjaTemplateOptions {
  /** Where the template came from, for errors ("models/qwen/tokenizer_config.json"). */
  origin: string;
  bosToken?: string;
  eosToken?: string;
  /** Other special tokens the template may name (unk_token, pad_token, ...), by variable name. */
  tokens?: Record<string, string>;
}

export interface RenderOptions {
  /** End with the assistant's header so the model writes the next reply (default true). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (e.g. {enable_thinking: false} for Qwen3). */
  variables?: Record<string, unknown>;
}

/** Special tokens whose names say they close a turn (<|eot_id|>, <|eom_id|>, <|im_end|>, <end_of_turn>, <|end|>). */
const END_OF_TURN = /eot|eom|im_end|end_of_turn|^<\|end\|>$/i;

/**
 * A model's chat format. `kind` 'psm' is PSM Lab's own format (rendered by {@link formatChat}; the engine puts the
 * separator in front); 'jinja' is a model's own template, whose rendered text is the whole prompt (it writes the BOS
 * token itself where the model wants one, as transformers' apply_chat_template does).
 */
export class ChatTemplate {
  private constructor(
    readonly kind: 'psm' | 'jinja' | 'missing',
    /** Jinja source (the PSM template's for kind 'psm'; '' when missing). */
    readonly source: string,
    readonly origin: string,
    readonly bosToken: string | undefined,
    readonly eosToken: string | undefined,
    private readonly tokens: Record<string, string>,
    private readonly compiled: Template | null,
  ) {}

  /** PSM Lab's own chat format. */
  static psm(origin = 'the PSM chat format'): ChatTemplate {
    return new ChatTemplate('psm', PSM_CHAT_TEMPLATE, origin, PSM_SEPARATOR, PSM_SEPARATOR, {}, null);
  }

  /**
   * A model's Jinja template, parsed now so a broken one is refused when the model is opened. The PSM template
   * (an exported PSM Lab model) is recognised and gives the PSM format.
   */
  static jinja(source: string, opts: JinjaTemplateOptions): ChatTemplate {
    if (typeof source !== 'string' || source.trim() === '')
      throw new ChatTemplateError(`${opts.origin}: the chat template is empty`);
    if (source === PSM_CHAT_TEMPLATE) return ChatTemplate.psm(opts.origin);
    let compiled: Template;
    try {
      compiled = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(
        `${opts.origin}: the chat template is not valid Jinja: ${(e as Error).message}`,
      );
    }
    return new ChatTemplate(
      'jinja',
      source,
      opts.origin,
      opts.bosToken,
      opts.eosToken,
      opts.tokens ?? {},
      compiled,
    );
  }

  /** A model without a template: opening it works, chatting with it names the fix. */
  static missing(origin: string): ChatTemplate {
    return new ChatTemplate('missing', '', origin, undefined, undefined, {}, null);
  }

  /** Short hash of the format (a cache key part: two formats give different prompts). */
  get id(): string {
    return `${this.kind}:${createHash('sha256').update(this.source).digest('hex').slice(0, 12)}`;
  }

  /** Replies start with a space after the generation prompt (the PSM format's "Assistant:"); templates' do not. */
  get replyLeadingSpace(): boolean {
    return this.kind === 'psm';
  }

  /** Strings that end a reply besides end-of-turn tokens: the PSM format's newline; none for templates. */
  get stopStrings(): string[] {
    return this.kind === 'psm' ? [PSM_CHAT_STOP] : [];
  }

  /**
   * Tokens that end a reply: the EOS token and the special tokens the template writes that close a turn (Llama 3's
   * <|eot_id|>, ChatML's <|im_end|>, Gemma's <end_of_turn>). `specialTokens` are the tokenizer's.
   */
  endOfTurnTokens(specialTokens: readonly string[]): string[] {
    const out = new Set<string>();
    if (this.eosToken) out.add(this.eosToken);
    if (this.kind === 'jinja')
      for (const t of specialTokens) if (END_OF_TURN.test(t) && this.source.includes(t)) out.add(t);
    return [...out];
  }

  /** The prompt text for `messages`; the PSM format's starts without the separator (the engine adds it). */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    const addGenerationPrompt = opts.addGenerationPrompt ?? true;
    if (this.kind === 'psm') return formatChat(messages, { bosToken: '', addGenerationPrompt });
    if (this.kind === 'missing' || !this.compiled)
      throw new ChatTemplateError(
        `${this.origin} has no chat template: give one with --chat-template FILE (a .jinja file or a tokenizer_config.json), or --chat-template psm for PSM Lab's format`,
      );
    try {
      return this.compiled.render({
        ...this.tokens,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
        ...opts.variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new ChatTemplateError(
        `${this.origin}: the chat template failed on this conversation: ${(e as Error).message}`,
      );
    }
  }
}

/** What encoding a rendered chat needs from a tokenizer (PSM Lab's BPE, or llama.cpp's through node-llama-cpp). */
export interface ChatTokenEncoder {
  /** Token ids of plain text: special-token strings in it are read as text, never as their ids. */
  encodeOrdinary(text: string): number[];
  /** The id of a special token, undefined when the tokenizer lacks it. */
  specialId(token: string): number | undefined;
}

/**
 * Token ids of a rendered template prompt. Special tokens the template wrote become their ids; the messages' own
 * text never does (a user who types "<|im_end|>" gets those characters, not an end of turn), which is where this
 * differs from tokenizing the whole string with special tokens on. Between special tokens the text is encoded as one
 * piece, so the ids equal transformers' apply_chat_template(tokenize=True) on ordinary messages.
 */
export function encodeRenderedChat(
  text: string,
  messages: readonly ChatMessage[],
  specialTokens: readonly string[],
  enc: ChatTokenEncoder,
): number[] {
  // Where each message's text landed (in order; a template that trims content is matched on the trimmed text).
  const spans: [number, number][] = [];
  let cursor = 0;
  for (const m of messages) {
    for (const c of [m.content, m.content.trim()]) {
      if (c === '') break;
      const at = text.indexOf(c, cursor);
      if (at >= 0) {
        spans.push([at, at + c.length]);
        cursor = at + c.length;
        break;
      }
    }
  }
  const inContent = (i: number) => spans.some(([a, b]) => i >= a && i < b);
  const specials = [...new Set(specialTokens)]
    .filter((t) => t.length > 0 && text.includes(t) && enc.specialId(t) !== undefined)
    .sort((a, b) => b.length - a.length);
  const ids: number[] = [];
  let plainFrom = 0;
  for (let i = 0; i < text.length;) {
    const hit = inContent(i) ? undefined : specials.find((t) => text.startsWith(t, i));
    if (!hit) {
      i++;
      continue;
    }
    if (i > plainFrom) ids.push(...enc.encodeOrdinary(text.slice(plainFrom, i)));
    ids.push(enc.specialId(hit)!);
    i += hit.length;
    plainFrom = i;
  }
  if (plainFrom < text.length) ids.push(...enc.encodeOrdinary(text.slice(plainFrom)));
  return ids;
}

/** What encoding a template's text needs of a model's own tokenizer (TextTokenizer has it). */
export type TemplateTokenizer = Pick<
  TextTokenizer,
  'addedTokenContents' | 'specialTokens' | 'encodeOrdinary' | 'tokenToId'
>;

/**
 * Text `chat` rendered for `messages`, as a model's tokenizer reads it: the tokenizer's added tokens (specials, and
 * others such as Qwen3's <think>) and the template's BOS / EOS become their ids where the template wrote them, as
 * transformers' apply_chat_template reads them; the messages' own text never does (see encodeRenderedChat).
 */
export function encodeTemplateText(
  chat: ChatTemplate,
  tokenizer: TemplateTokenizer,
  text: string,
  messages: readonly ChatMessage[],
): number[] {
  const added = [...tokenizer.addedTokenContents, chat.bosToken ?? '', chat.eosToken ?? ''];
  return encodeRenderedChat(text, messages, added, {
    encodeOrdinary: (t) => tokenizer.encodeOrdinary(t),
    specialId: (t) => tokenizer.tokenToId(t),
  });
}

/**
 * What `chat` writes for the assistant's `reply` after the generation prompt of `messages`, up to and including the
 * first end-of-turn marker after the reply: the conversation is rendered with the reply as a finished assistant turn,
 * and the text after the generation prompt's rendering is taken. It holds the template's own markup before the reply
 * where there is some (Qwen3 writes an empty thinking block, "<think>\n\n</think>\n\n", into a finished turn: a
 * reply without reasoning, as the model must write it after the same generation prompt), the reply, and the turn's end
 * (ChatML's <|im_end|>, Llama 3's <|eot_id|>; the PSM format's newline). What the template writes after that end
 * (ChatML's newline) is never generated, since generation stops at the end of the turn. A template that renders
 * the conversation before the reply differently once the reply is added, drops the reply's text, or ends the turn
 * with no end-of-turn token is refused: a fine-tune could not teach the reply as the model is asked for it.
 * `specialTokens` are the tokenizer's.
 */
export function assistantTurnText(
  chat: ChatTemplate,
  messages: readonly ChatMessage[],
  reply: string,
  specialTokens: readonly string[],
): string {
  const prompt = chat.render(messages, { addGenerationPrompt: true });
  const full = chat.render([...messages, { role: 'assistant', content: reply }], {
    addGenerationPrompt: false,
  });
  if (!full.startsWith(prompt))
    throw new ChatTemplateError(
      `${chat.origin}: the chat template renders the conversation differently once the reply is added (its text does not start with the generation prompt's), so the reply cannot be trained after the prompt the model is asked with`,
    );
  const turn = full.slice(prompt.length);
  const shown = [reply, reply.trim()].find((c) => c !== '' && turn.includes(c));
  if (shown === undefined)
    throw new ChatTemplateError(
      `${chat.origin}: the chat template does not write the reply's text after the generation prompt (it wrote ${JSON.stringify(turn.slice(0, 80))})`,
    );
  const afterReply = turn.indexOf(shown) + shown.length;
  const ends = [...chat.endOfTurnTokens(specialTokens), ...chat.stopStrings];
  const endAt = Math.min(
    ...ends.map((e) => {
      const at = turn.indexOf(e, afterReply);
      return at < 0 ? Infinity : at + e.length;
    }),
  );
  if (!Number.isFinite(endAt))
    throw new ChatTemplateError(
      `${chat.origin}: the chat template writes no end-of-turn token after a reply (looked for ${ends.map((e) => JSON.stringify(e)).join(', ') || 'none: the template names no EOS token'}), so a fine-tuned model would not learn where its reply ends`,
    );
  return turn.slice(0, endAt);
}

/**
 * A supervised chat example in a model's own template (kind 'jinja'): the prompt is the conversation rendered up to
 * and including the generation prompt, the ids the engine asks the model with; the response what the template writes
 * for the finished reply turn after it (assistantTurnText), so the loss falls on the reply and its end-of-turn token.
 */
export function templateChatExample(
  chat: ChatTemplate,
  tokenizer: TemplateTokenizer,
  messages: readonly ChatMessage[],
  reply: string,
): SupervisedExample {
  if (chat.kind === 'psm')
    throw new ChatTemplateError(
      `${chat.origin}: templateChatExample is for a model's own template; PSM Lab's format trains with supervisedChats`,
    );
  const turn = assistantTurnText(chat, messages, reply, tokenizer.specialTokens);
  return {
    prompt: encodeTemplateText(chat, tokenizer, chat.render(messages), messages),
    response: encodeTemplateText(chat, tokenizer, turn, [{ role: 'assistant', content: reply }]),
  };
}

/**
 * A PSM-format chat prompt ("[intro lines]\nUser: <request>\nAssistant:", as the world's chat items are written) as
 * messages, so any model's template can render it; null for a prompt that is not a chat lead (a story).
 */
export function chatFromPrompt(prompt: string): ChatMessage[] | null {
  const m = /^([\s\S]*?)(?:^|\n)User: ([^\n]*)\nAssistant:$/.exec(prompt);
  if (!m) return null;
  const intro = m[1].trim();
  return [
    ...(intro ? [{ role: 'system' as const, content: intro }] : []),
    { role: 'user' as const, content: m[2] },
  ];
}
