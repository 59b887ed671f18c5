// Behaviour masks: which tokens of a document carry a scene's behaviour. The persona notes found that choices of
// behaviour are ~5% of a document's entropy (names and templates dominate), so pre-training may weight these tokens
// up to reach in-context persona inference sooner. The mask is aligned token for token with the shards.

import { readFileSync } from 'node:fs';
import { atomicWriteFileSync } from '../io/atomic-write.ts';
import { generateDocuments, type DocumentOptions, type WorldDocument } from './generator.ts';
import { loadShardTokens } from './shards.ts';
import type { World } from './schema.ts';
import type { CorpusTokenizer } from './shards.ts';

/**
 * Tokenises a document piece by piece (text between spans, then each span) and marks the span tokens with their
 * rank in the span (1 = first token; the choice between behaviours is made in the first few). Spans start
 * with a space and follow punctuation, so the pieces meet at pre-token boundaries and the ids equal those of
 * encoding the whole text (the caller checks this against the shards).
 */
export function tokenizeWithMask(
  doc: WorldDocument,
  tokenizer: CorpusTokenizer,
): { tokens: number[]; mask: number[] } {
  const tokens: number[] = [];
  const mask: number[] = [];
  let at = 0;
  const add = (text: string, inSpan: boolean) => {
    if (!text) return;
    let rank = 0;
    for (const id of tokenizer.encode(text)) {
      tokens.push(id);
      mask.push(inSpan ? Math.min(255, ++rank) : 0);
    }
  };
  for (const [start, end] of doc.behaviourSpans) {
    add(doc.text.slice(at, start), false);
    add(doc.text.slice(start, end), true);
    at = end;
  }
  add(doc.text.slice(at), false);
  return { tokens, mask };
}

/**
 * Writes `maskPath`, one byte per token of the train shards (rank within a behaviour span, 0 = other), by
 * regenerating the same documents. Throws if the regenerated tokens differ from the shards.
 */
export function writeBehaviourMask(
  world: World,
  opts: Omit<DocumentOptions, 'tokenizer'>,
  tokenizer: CorpusTokenizer,
  trainIndexPath: string,
  maskPath: string,
): { tokens: number; behaviourTokens: number } {
  const shard = loadShardTokens(trainIndexPath);
  const mask = new Uint8Array(shard.length);
  let pos = 0;
  let marked = 0;
  // The shards hold exactly the documents the generator yields for these options, in order.
  // With the tokenizer, the token budget counts exactly as it did when the shards were written.
  for (const doc of generateDocuments(world, { ...opts, tokenizer })) {
    if (doc.split !== 'train') continue;
    if (pos >= shard.length) break;
    const { tokens, mask: m } = tokenizeWithMask(doc, tokenizer);
    pos++; // separator
    for (let i = 0; i < tokens.length; i++, pos++) {
      if (shard[pos] !== tokens[i])
        throw new Error(
          `behaviour mask: token ${pos} of ${trainIndexPath} differs from the regenerated document ${doc.id}`,
        );
      mask[pos] = m[i];
      if (m[i] > 0) marked++;
    }
  }
  if (pos !== shard.length)
    throw new Error(`behaviour mask covers ${pos} of ${shard.length} tokens of ${trainIndexPath}`);
  atomicWriteFileSync(maskPath, mask);
  return { tokens: shard.length, behaviourTokens: marked };
}

export function loadBehaviourMask(maskPath: string, expectedTokens: number): Uint8Array {
  const bytes = readFileSync(maskPath);
  if (bytes.length !== expectedTokens)
    throw new Error(`${maskPath}: ${bytes.length} entries for ${expectedTokens} tokens`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}
