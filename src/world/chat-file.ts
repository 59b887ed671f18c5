/**
 * Fine-tune data from a file: JSON Lines, one chat per line, `{"prompt": "...", "response": "..."}` in the world's
 * chat format (the prompt ends with "Assistant:", the response is the Assistant's reply; the loss falls on the
 * response only). Blank lines are skipped; any other bad line is refused with its line number.
 */
import * as fs from 'node:fs';
import { z } from 'zod';

const ChatLine = z
  .object({
    prompt: z.string(),
    response: z.string().min(1, 'must not be empty'),
  })
  .strict();

export type ChatLine = z.infer<typeof ChatLine>;

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
    const parsed = ChatLine.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue.path.length > 0 ? `"${issue.path.join('.')}" ` : '';
      throw new Error(
        `${source}, line ${i + 1}: ${where}${issue.message} (each line is {"prompt": "...", "response": "..."})`,
      );
    }
    out.push(parsed.data);
  });
  if (out.length === 0) throw new Error(`${source}: no chats (one {"prompt", "response"} object per line)`);
  return out;
}

export function readChatJsonl(file: string): ChatLine[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: not found`);
  return parseChatJsonl(fs.readFileSync(file, 'utf8'), file);
}
