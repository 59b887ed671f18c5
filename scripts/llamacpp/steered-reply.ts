/**
 * A greedy chat reply from llama.cpp itself with a control vector applied, as `llama-cli -m MODEL.gguf
 * --control-vector-scaled CVEC.gguf STRENGTH --temp 0` gives it, for machines without llama.cpp's tools: it runs
 * llama.cpp's own common_control_vector_load and llama_set_adapter_cvec through the helper cvec-logits.ts builds
 * against the libraries node-llama-cpp ships. The chat is encoded as PSM Lab's engine encodes it for the model
 * folder (its chat template and tokenizer), so the reply can be set beside `psm serve`'s under the same steering.
 * Each token re-runs the whole sequence (no KV cache): meant for small models, such as the walkthrough's.
 *
 *   npx tsx scripts/llamacpp/steered-reply.ts --model-folder DIR --gguf MODEL.gguf --message TEXT
 *     [--system TEXT] [--control-vector CVEC.gguf --strength 4] [--max-tokens 32]
 *
 * Prints the reply as JSON ({"strength", "reply", "tokens"}); exits 2, with the reason, where the helper cannot
 * be built here (no g++, no prebuilt llama.cpp libraries).
 */
import { parseArgs } from 'node:util';
import { earliestStop, LocalEngine } from '../../src/providers/local-engine.ts';
import type { ChatMessage } from '../../src/interop/chat-template.ts';
import { buildCvecLogits, llamaCppLogits } from './cvec-logits.ts';

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

function main(): void {
  const { values: o } = parseArgs({
    options: {
      'model-folder': { type: 'string' },
      gguf: { type: 'string' },
      message: { type: 'string' },
      system: { type: 'string' },
      'control-vector': { type: 'string' },
      strength: { type: 'string', default: '1' },
      'max-tokens': { type: 'string', default: '32' },
    },
  });
  for (const need of ['model-folder', 'gguf', 'message'] as const)
    if (!o[need]) throw new Error(`--${need} is required`);
  const strength = Number(o.strength);
  const maxTokens = Number(o['max-tokens']);
  if (!Number.isFinite(strength)) throw new Error(`--strength ${o.strength} is not a number`);
  if (!Number.isInteger(maxTokens) || maxTokens < 1)
    throw new Error(`--max-tokens ${o['max-tokens']} is not a positive integer`);
  const helper = buildCvecLogits();
  if ('skip' in helper) {
    process.stderr.write(`llama.cpp helper unavailable: ${helper.skip}\n`);
    process.exit(2);
  }
  const engine = LocalEngine.load(o['model-folder']!);
  const messages: ChatMessage[] = [
    ...(o.system ? [{ role: 'system' as const, content: o.system }] : []),
    { role: 'user', content: o.message! },
  ];
  const ids = engine.encodeChat(messages);
  const vectors: [string, number][] = o['control-vector'] ? [[o['control-vector'], strength]] : [];
  const reply: number[] = [];
  let text = '';
  while (reply.length < maxTokens) {
    const rows = llamaCppLogits(helper, o.gguf!, [...ids, ...reply], vectors);
    const next = argmax(rows[rows.length - 1]);
    if (engine.endIds.has(next)) break;
    reply.push(next);
    text = engine.tokenizer.decode(reply);
    if (earliestStop(text, 0, engine.chatStop, -1) >= 0) break;
  }
  const stop = earliestStop(text, 0, engine.chatStop, -1);
  if (stop >= 0) text = text.slice(0, stop);
  if (engine.chat.replyLeadingSpace) text = text.replace(/^ /, '');
  process.stdout.write(
    `${JSON.stringify({ strength: vectors.length ? strength : 0, reply: text, tokens: reply })}\n`,
  );
}

main();
