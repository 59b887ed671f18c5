/**
 * Batched log-probability scoring of given continuations: the measurement workhorse. Each (prompt,
 * continuation) pair becomes one sequence; sequences of similar length are batched (right-padded, which
 * causal attention makes harmless), and the unembedding runs only on the rows that predict continuation
 * tokens.
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import type { HookSet } from './hooks.ts';
import { KvCache, type LlamaModel } from './llama.ts';

export interface ScoreRequest {
  prompt: number[];
  continuation: number[];
}

export interface ScoreResult {
  /** Sum of the continuation tokens' log-probabilities. */
  logprob: number;
  tokenLogprobs: number[];
}

export interface ScoreOptions {
  /** Maximum number of tokens in one batch (sequences x padded length). */
  tokensPerBatch?: number;
  /** Hooks for this scoring pass; a function gets the requests of the batch to build position-specific hooks. */
  hooks?: HookSet | ((batch: ScoreRequest[]) => HookSet);
}

export function scoreContinuations(
  model: LlamaModel,
  requests: ScoreRequest[],
  opts: ScoreOptions = {},
): ScoreResult[] {
  const maxLen = model.config.maxSeqLen;
  requests.forEach((r, i) => {
    if (r.prompt.length === 0) throw new Error(`score: request ${i} has an empty prompt`);
    if (r.continuation.length === 0) throw new Error(`score: request ${i} has an empty continuation`);
    if (r.prompt.length + r.continuation.length - 1 > maxLen) {
      throw new Error(
        `score: request ${i} needs ${r.prompt.length + r.continuation.length - 1} positions, context is ${maxLen}`,
      );
    }
  });
  // Many continuations of one prompt (the usual measurement): run each prompt once and reuse its KV cache.
  // Hooks may select positions, which left padding would shift, so hooked scoring takes the plain path.
  if (!opts.hooks && sharesPrompts(requests))
    return scoreSharedPrompts(model, requests, opts.tokensPerBatch ?? 4096);
  const order = requests.map((_, i) => i).sort((a, b) => seqLen(requests[a]) - seqLen(requests[b]) || a - b);
  const results: ScoreResult[] = new Array(requests.length);
  const budget = opts.tokensPerBatch ?? 4096;
  const vocab = model.config.vocabSize;
  const dim = model.config.dim;
  noGrad(() => {
    let start = 0;
    while (start < order.length) {
      let end = start + 1;
      // Sorted ascending, so the last member sets the padded length.
      while (end < order.length && (end - start + 1) * seqLen(requests[order[end]]) <= budget) end++;
      const members = order.slice(start, end).map((i) => requests[i]);
      const len = seqLen(members[members.length - 1]);
      const ids = new Int32Array(members.length * len);
      const rows: number[] = [];
      members.forEach((r, b) => {
        const seq = [...r.prompt, ...r.continuation].slice(0, -1);
        ids.set(seq, b * len);
        for (let j = 0; j < r.continuation.length; j++) rows.push(b * len + r.prompt.length - 1 + j);
      });
      const hooks = typeof opts.hooks === 'function' ? opts.hooks(members) : opts.hooks;
      const hidden = model.forwardHidden(ids, members.length, { hooks });
      const picked = new Float32Array(rows.length * dim);
      rows.forEach((row, i) => picked.set(hidden.data.subarray(row * dim, (row + 1) * dim), i * dim));
      const logits = model.logits(new Tensor(picked, [rows.length, dim])).data;
      const logp = new Float32Array(vocab);
      let k = 0;
      members.forEach((r, b) => {
        const tokenLogprobs: number[] = [];
        for (const target of r.continuation) {
          logSoftmaxRow(logits, k * vocab, vocab, logp);
          tokenLogprobs.push(logp[target]);
          k++;
        }
        results[order[start + b]] = { logprob: tokenLogprobs.reduce((s, x) => s + x, 0), tokenLogprobs };
      });
      start = end;
    }
  });
  return results;
}

function seqLen(r: ScoreRequest): number {
  return r.prompt.length + r.continuation.length - 1;
}

function promptKey(ids: readonly number[]): string {
  return ids.join(',');
}

function sharesPrompts(requests: readonly ScoreRequest[]): boolean {
  const keys = new Set(requests.map((r) => promptKey(r.prompt)));
  return keys.size <= requests.length / 2;
}

/** log-probabilities of `targets[i]` under logits rows [rows, vocab]. */
function gatherLogprobs(logits: Float32Array, vocab: number, targets: readonly number[]): number[] {
  const logp = new Float32Array(vocab);
  return targets.map((t, i) => {
    logSoftmaxRow(logits, i * vocab, vocab, logp);
    return logp[t];
  });
}

/**
 * Prompt groups are batched with left padding (masked out through the cache's keyStart), run once to fill a
 * KV cache, which is then repeated once per continuation; the continuations run on top, right-padded.
 */
function scoreSharedPrompts(model: LlamaModel, requests: ScoreRequest[], budget: number): ScoreResult[] {
  const groups = new Map<string, number[]>();
  requests.forEach((r, i) => {
    const key = promptKey(r.prompt);
    const list = groups.get(key);
    if (list) list.push(i);
    else groups.set(key, [i]);
  });
  const ordered = [...groups.values()].sort(
    (a, b) => requests[a[0]].prompt.length - requests[b[0]].prompt.length,
  );
  const results: ScoreResult[] = new Array(requests.length);
  const { dim, vocabSize: vocab } = model.config;
  noGrad(() => {
    let start = 0;
    while (start < ordered.length) {
      let end = start + 1;
      while (end < ordered.length && (end - start + 1) * requests[ordered[end][0]].prompt.length <= budget)
        end++;
      const batch = ordered.slice(start, end);
      start = end;
      const promptLen = requests[batch[batch.length - 1][0]].prompt.length;
      const members = batch.map((g) => g.map((i) => requests[i]));
      const contLen = Math.max(...members.flat().map((r) => r.continuation.length));
      const cache = new KvCache(model.config, batch.length, promptLen + Math.max(1, contLen - 1));
      const ids = new Int32Array(batch.length * promptLen);
      members.forEach((m, b) => {
        const p = m[0].prompt;
        cache.keyStart[b] = promptLen - p.length;
        ids.set(p, b * promptLen + promptLen - p.length);
      });
      const hidden = model.forwardHidden(ids, batch.length, { cache });
      const last = new Float32Array(batch.length * dim);
      for (let b = 0; b < batch.length; b++) {
        last.set(hidden.data.subarray(((b + 1) * promptLen - 1) * dim, (b + 1) * promptLen * dim), b * dim);
      }
      const firstLogits = model.logits(new Tensor(last, [batch.length, dim])).data;
      const rows = members.flat();
      const perRow: number[][] = [];
      let row = 0;
      const logp = new Float32Array(vocab);
      members.forEach((m, b) => {
        // One distribution per prompt, read once per option's first token.
        logSoftmaxRow(firstLogits, b * vocab, vocab, logp);
        for (const r of m) perRow[row++] = [logp[r.continuation[0]]];
      });
      const restLen = contLen - 1;
      if (restLen > 0) {
        const expanded = cache.expand(members.map((m) => m.length));
        const cont = new Int32Array(rows.length * restLen);
        const pick: number[] = [];
        const targets: number[] = [];
        rows.forEach((r, i) => {
          for (let j = 0; j < r.continuation.length - 1; j++) {
            cont[i * restLen + j] = r.continuation[j];
            pick.push(i * restLen + j);
            targets.push(r.continuation[j + 1]);
          }
        });
        const h2 = model.forwardHidden(cont, rows.length, { cache: expanded });
        const picked = new Float32Array(pick.length * dim);
        pick.forEach((p, i) => picked.set(h2.data.subarray(p * dim, (p + 1) * dim), i * dim));
        const lps = gatherLogprobs(model.logits(new Tensor(picked, [pick.length, dim])).data, vocab, targets);
        let k = 0;
        rows.forEach((r, i) => {
          for (let j = 0; j < r.continuation.length - 1; j++) perRow[i].push(lps[k++]);
        });
      }
      let i = 0;
      for (const g of batch) {
        for (const idx of g) {
          const tokenLogprobs = perRow[i++];
          results[idx] = { logprob: tokenLogprobs.reduce((a, b) => a + b, 0), tokenLogprobs };
        }
      }
    }
  });
  return results;
}
