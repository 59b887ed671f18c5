/**
 * The chat format of PSM Lab's world, as a Hugging Face / llama.cpp chat template and as a plain function.
 *
 * A conversation is rendered the way the corpus writes chat scenes: the separator token first (every training
 * document follows one), an optional system line (e.g. the assistant intro), then one line per turn:
 *
 *   <|endoftext|>[system line\n]User: <request>\nAssistant: <reply>\n ... User: <request>\nAssistant:
 *
 * The generation prompt ends with "Assistant:" and the model's reply starts with a space; a reply ends at the
 * first newline (the next scene) or at the end-of-text token.
 */

/** Jinja source of the template; written into tokenizer_config.json and the GGUF `tokenizer.chat_template`. */
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

/** Text that ends an assistant reply besides the end-of-text token. */
export const PSM_CHAT_STOP = '\n';

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

/** Renders messages exactly as {@link PSM_CHAT_TEMPLATE} does. */
export function formatChat(messages: readonly ChatMessage[], opts: FormatChatOptions = {}): string {
  let out = opts.bosToken ?? '<|endoftext|>';
  for (const m of messages) {
    if (m.role === 'system') out += `${m.content}\n`;
    else if (m.role === 'user') out += `User: ${m.content}\n`;
    else if (m.role === 'assistant') out += `Assistant: ${m.content}\n`;
    else throw new Error(`unsupported role: ${String((m as { role: unknown }).role)}`);
  }
  if (opts.addGenerationPrompt ?? true) out += 'Assistant:';
  return out;
}
