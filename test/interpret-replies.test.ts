/**
 * greedyReplies (screening's and the turn traces' model replies) decodes its prompts in batches: the replies
 * are those of one generate() per prompt, as before batching.
 */
import { describe, expect, it } from 'vitest';
import { greedyReplies, replyStopIds } from '../src/interpret/monitor.ts';
import type { ModelHandle } from '../src/interpret/activations.ts';
import { generate } from '../src/model/generate.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { trainBpe } from '../src/tokenizer/index.ts';
import { END_OF_TEXT } from '../src/world/index.ts';
import { caseConfig, randomModel } from './architecture-fixtures.ts';
import { FIXTURE_TEXTS } from './serve-fixture.ts';

configureBackend();

/** The replies as greedyReplies made them before batching: one generate() per prompt. */
function oneByOne(handle: ModelHandle, prompts: string[], maxNewTokens: number): string[] {
  const stops = replyStopIds(handle.tokenizer, handle.model.config.vocabSize);
  return prompts.map((p) => {
    const ids = handle.tokenizer.encode(END_OF_TEXT + p);
    const out = generate(handle.model, ids, { maxNewTokens, temperature: 0, stopIds: stops });
    const text = handle.tokenizer.decode(out.filter((id) => !handle.tokenizer.isSpecialId(id)));
    const cut = text.indexOf('\n');
    return cut >= 0 ? text.slice(0, cut) : text;
  });
}

describe('greedyReplies', () => {
  it('gives the replies of one generate() per prompt, with progress per reply', () => {
    const tokenizer = trainBpe(FIXTURE_TEXTS, {
      vocabSize: 320,
      specialTokens: [END_OF_TEXT],
      minFrequency: 1,
    });
    const model = randomModel(caseConfig('qwen25', tokenizer.vocabSize), 4);
    const handle: ModelHandle = { model, tokenizer, hash: 'test', source: 'random' };
    // Prompts of many lengths, more than one batch of them.
    const prompts = Array.from({ length: 40 }, (_, i) => {
      const text = FIXTURE_TEXTS[i % FIXTURE_TEXTS.length];
      return `${text.slice(0, 8 + ((i * 13) % (text.length - 8)))}\nUser: question ${i}\nAssistant:`;
    });
    const done: number[] = [];
    const replies = greedyReplies(handle, prompts, 12, (n) => done.push(n));
    expect(replies).toEqual(oneByOne(handle, prompts, 12));
    expect(done).toEqual(prompts.map((_, i) => i + 1));
    // Replies differ from prompt to prompt, so a reply given to the wrong prompt would show.
    expect(new Set(replies).size).toBeGreaterThan(10);
  });
});
