/**
 * Two-way choices scored by log-probability: P(good) of an item is the probability mass of its good
 * wordings over that of all its wordings, each wording's probability being the model's probability of the
 * whole continuation after the prompt.
 */
import type { HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import { scoreContinuations, type ScoreRequest } from '../model/score.ts';
import { logSumExp } from './stats.ts';

export interface ChoiceItem {
  prompt: string;
  good: readonly string[];
  bad: readonly string[];
}

export interface Encoder {
  encode(text: string): number[];
}

/** `tokenizer.encode` that encodes each distinct text once (choice items repeat their prompts and wordings). */
export function memoEncode(tokenizer: Encoder): (text: string) => number[] {
  const cache = new Map<string, number[]>();
  return (text) => {
    let ids = cache.get(text);
    if (!ids) cache.set(text, (ids = tokenizer.encode(text)));
    return ids;
  };
}

export interface ChoiceOptions {
  hooks?: HookSet;
  tokensPerBatch?: number;
}

/** P(good) for each item. */
export function choiceProbabilities(model: LlamaModel, tokenizer: Encoder, items: readonly ChoiceItem[], opts: ChoiceOptions = {}): number[] {
  const requests: ScoreRequest[] = [];
  const spans: { good: [number, number]; bad: [number, number] }[] = [];
  const enc = memoEncode(tokenizer);
  items.forEach((item, i) => {
    if (item.good.length === 0 || item.bad.length === 0) throw new Error(`choice item ${i} needs at least one good and one bad wording`);
    const prompt = enc(item.prompt);
    const g0 = requests.length;
    for (const w of item.good) requests.push({ prompt, continuation: enc(w) });
    const b0 = requests.length;
    for (const w of item.bad) requests.push({ prompt, continuation: enc(w) });
    spans.push({ good: [g0, b0], bad: [b0, requests.length] });
  });
  const scores = scoreContinuations(model, requests, { hooks: opts.hooks, tokensPerBatch: opts.tokensPerBatch });
  return spans.map(({ good, bad }) => {
    const lg = logSumExp(scores.slice(good[0], good[1]).map((s) => s.logprob));
    const lb = logSumExp(scores.slice(bad[0], bad[1]).map((s) => s.logprob));
    return 1 / (1 + Math.exp(lb - lg));
  });
}
