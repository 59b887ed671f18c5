/**
 * Fine-tune data from a file: JSON Lines, one chat per line, either in the world's chat format,
 * `{"prompt": "...", "response": "..."}` (the prompt ends with "Assistant:", the response is the Assistant's reply),
 * or as messages, `{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}` (the format of
 * published fine-tune sets such as the emergent-misalignment ones), rendered into the world's chat format: a system
 * message as the opening line, each turn as "User: ..." or "Assistant: ...", the last assistant message as the
 * response (the messages are kept too, for models with their own chat template). The loss falls on the response
 * only. Blank lines are skipped; any other bad line is refused with its line number.
 */
import * as fs from 'node:fs';
import { z } from 'zod';

const PromptResponse = z
  .object({
    prompt: z.string(),
    response: z.string().min(1, 'must not be empty'),
  })
  .strict();

const Message = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict();

const Messages = z
  .object({ messages: z.array(Message).min(2, 'needs at least a user and an assistant message') })
  .strict()
  .refine(
    (c) => c.messages.at(-1)?.role === 'assistant',
    "the last message must be the assistant's (the response)",
  )
  .refine(
    (c) => (c.messages.at(-1)?.content.trim().length ?? 0) > 0,
    'the last (assistant) message must not be empty',
  )
  .refine(
    (c) => c.messages.every((m, i) => m.role !== 'system' || i === 0),
    'a system message may only come first',
  );

export interface ChatLine {
  prompt: string;
  response: string;
  /**
   * A messages line's conversation before the response, as given: a model with its own chat template renders these
   * (turns and multi-line text the world's one-line-per-turn format cannot tell apart).
   */
  messages?: z.infer<typeof Message>[];
}

/** A messages chat in the world's format: "User: ..." and "Assistant: ..." lines, the response after "Assistant:". */
export function messagesToChat(messages: readonly z.infer<typeof Message>[]): ChatLine {
  const before = messages.slice(0, -1);
  const lines = before.map((m) =>
    m.role === 'system' ? m.content : `${m.role === 'user' ? 'User' : 'Assistant'}: ${m.content}`,
  );
  return {
    prompt: [...lines, 'Assistant:'].join('\n'),
    response: ` ${messages.at(-1)!.content.trim()}`,
    messages: before.map((m) => ({ ...m })),
  };
}

export function parseChatJsonl(text: string, source = '<chats>'): ChatLine[] {
  const out: ChatLine[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}, line ${i + 1}: not JSON (${(e as Error).message})`);
    }
    const isMessages = typeof value === 'object' && value !== null && 'messages' in value;
    const parsed = (isMessages ? Messages : PromptResponse).safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue.path.length > 0 ? `"${issue.path.join('.')}" ` : '';
      throw new Error(
        `${source}, line ${i + 1}: ${where}${issue.message} (each line is {"prompt": "...", "response": "..."} or {"messages": [...]})`,
      );
    }
    out.push('messages' in parsed.data ? messagesToChat(parsed.data.messages) : parsed.data);
  });
  if (out.length === 0)
    throw new Error(`${source}: no chats (one {"prompt", "response"} or {"messages"} object per line)`);
  return out;
}

export function readChatJsonl(file: string): ChatLine[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: not found`);
  return parseChatJsonl(fs.readFileSync(file, 'utf8'), file);
}
