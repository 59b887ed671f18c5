/**
 * Fuzzing the chat JSONL reader (src/world/chat-file.ts): structural edits of valid lines in both formats
 * ({"prompt", "response"} and {"messages": [...]}), arbitrary JSON lines, and byte edits of the text. Every
 * malformed file is answered by an Error naming the file (and the line), in bounded time and memory
 * (fuzz-support.ts).
 */
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseChatJsonl } from '../src/world/chat-file.ts';
import {
  applyStructuralEdits,
  byteMutation,
  expectCleanOutcome,
  fuzzParams,
  mutate,
  structuralEdit,
} from './fuzz-support.ts';

const SOURCE = 'fuzz-chats.jsonl';
const LINES: unknown[] = [
  { prompt: 'User: hi\nAssistant:', response: ' Hello.' },
  {
    messages: [
      { role: 'system', content: 'The Assistant is an AI system.' },
      { role: 'user', content: 'Can you help?' },
      { role: 'assistant', content: 'Of course.' },
    ],
  },
  { prompt: 'User: 2+2?\nAssistant:', response: ' 4' },
];
const TEXT = LINES.map((l) => JSON.stringify(l)).join('\n');

describe('chat JSONL reader under fuzzing', () => {
  it('the valid file reads', () => {
    expect(parseChatJsonl(TEXT, SOURCE)).toHaveLength(3);
  });

  it('structural edits of the lines', () => {
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const lines = applyStructuralEdits(LINES, edits);
        const text = Array.isArray(lines)
          ? lines.map((l) => JSON.stringify(l) ?? '').join('\n')
          : (JSON.stringify(lines) ?? '');
        expectCleanOutcome(() => parseChatJsonl(text, SOURCE), { source: SOURCE });
      }),
      fuzzParams(500),
    );
  });

  it('arbitrary JSON lines and byte edits of the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 4 })
            .map((ls) => ls.map((l) => JSON.stringify(l)).join('\n')),
          fc
            .array(byteMutation, { minLength: 1, maxLength: 3 })
            .map((ms) => Buffer.from(mutate(Buffer.from(TEXT), ms)).toString('utf8')),
        ),
        (text) => {
          expectCleanOutcome(() => parseChatJsonl(text, SOURCE), { source: SOURCE });
        },
      ),
      fuzzParams(500),
    );
  });
});
