/**
 * Replies of the model under study, in its own chat format, through the local engine (src/providers/local-engine.ts:
 * the sampling of src/model/generate.ts, stop strings and end-of-turn tokens), decoded together in its batch.
 * `generateReplies` is the recipe's one call into generation.
 *
 * Also the chat examples a fine-tune of the model trains on, in the same format.
 */
import { assistantTurnText, type ChatMessage } from '../interop/chat-template.ts';
import type { HookSet } from '../model/hooks.ts';
import type { ModelHandle } from '../interpret/activations.ts';
import { LocalEngine } from '../providers/local-engine.ts';
import type { SupervisedExample } from '../training/data.ts';

export interface ReplyRequest {
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  /** Interventions while generating (steering). */
  hooks?: HookSet;
}

export interface Reply {
  text: string;
  /** The reply's token ids, without the end-of-turn token or stop text. */
  ids: number[];
  finish: 'stop' | 'length';
}

/** The messages of one reply: an optional system prompt, then the question. */
export function chatOf(system: string | null, question: string): ChatMessage[] {
  return [
    ...(system !== null ? [{ role: 'system' as const, content: system }] : []),
    { role: 'user', content: question },
  ];
}

/**
 * Generates the requests' replies together, in the engine's continuous batch (its slots bound how many run at
 * once); `onReply` is called as each one is done (the caller records it), so a killed run keeps every reply finished
 * before the kill. The engine must be batch-invariant (`engineFor` makes it so): a reply is then the same whichever
 * requests share its batch, so a resumed run, which asks only for the missing ones, regenerates exactly what an
 * uninterrupted run would have.
 */
export async function generateReplies(
  engine: LocalEngine,
  requests: readonly ReplyRequest[],
  onReply: (index: number, reply: Reply) => void,
): Promise<void> {
  if (!engine.batchInvariant)
    throw new Error(
      'generateReplies: the engine must be batch-invariant (see engineFor), or replies depend on batching',
    );
  // allSettled: a failure is thrown only once the others have finished (and been recorded).
  const settled = await Promise.allSettled(
    requests.map(async (r, i) => {
      const out = await engine.generate({
        promptIds: engine.encodeChat(r.messages),
        maxTokens: r.maxTokens,
        temperature: r.temperature,
        topP: r.topP,
        seed: r.seed,
        stop: engine.chatStop,
        topLogprobs: 0,
        hooks: r.hooks,
        stripLeadingSpace: engine.chat.replyLeadingSpace,
      });
      onReply(i, { text: out.text, ids: out.tokens.map((t) => t.id), finish: out.finishReason });
    }),
  );
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * A supervised example in the model's chat format: the prompt is the chat up to its generation prompt (as replies
 * are generated), the response what the template writes for the assistant's turn after it, up to its end-of-turn
 * markup (assistantTurnText: a template that cannot be trained that way is refused), so the fine-tuned model learns
 * where a reply ends.
 */
export function chatExample(
  engine: LocalEngine,
  messages: readonly ChatMessage[],
  reply: string,
): SupervisedExample {
  const turn = assistantTurnText(engine.chat, messages, reply, engine.tokenizer.specialTokens);
  return {
    prompt: engine.encodeChat(messages),
    response: engine.encodeRendered(turn, [{ role: 'assistant', content: reply }]),
  };
}

/** An in-process engine over a handle's model, in its chat format, for the recipe's own generation loop. */
export function engineFor(handle: ModelHandle): LocalEngine {
  return new LocalEngine(handle.model, handle.tokenizer, {
    id: handle.source,
    chatTemplate: handle.chat,
    maxTokens: 1 << 20,
    maxQueue: Infinity,
    batchInvariant: true,
  });
}
