/**
 * The parameter sets a fine-tune of the Assistant may change, by name: `all` parameters, a rank-r LoRA on every
 * projection (`lora1`, `lora4`, ...), or the `embedding` rows of the Assistant token only. Which set a narrow
 * fine-tune may change decides whether its effect has to pass through the persona (persona-world-notes.md, item 4).
 */
import { LORA_TARGETS } from '../model/llama.ts';
import type { TrainableSpec } from '../training/trainable.ts';

/** Token ids of the word "Assistant" as it opens a chat turn: the rows the embedding-only fine-tune may change. */
export function assistantTokenIds(tokenizer: { encode(text: string): number[] }): number[] {
  const withContext = tokenizer.encode('\nAssistant:');
  const newline = tokenizer.encode('\n');
  const colon = tokenizer.encode(':');
  const ids = withContext.filter((id) => !newline.includes(id) && !colon.includes(id));
  if (ids.length === 0) throw new Error('the tokenizer has no token for "Assistant"');
  return [...new Set(ids)];
}

/** The trainable set of a name (all, lora<r>, embedding); a clear error for any other. */
export function trainableSpec(name: string, tokenizer: { encode(text: string): number[] }): TrainableSpec {
  if (name === 'all') return { kind: 'all' };
  if (name === 'embedding') return { kind: 'embeddingRows', rows: assistantTokenIds(tokenizer) };
  const lora = /^lora([1-9]\d*)$/.exec(name);
  if (lora) return { kind: 'lora', rank: Number(lora[1]), targets: [...LORA_TARGETS] };
  throw new Error(`unknown trainable set "${name}" (all, lora<rank> such as lora1, or embedding)`);
}
