/**
 * Batched log-probability scoring of given continuations: the measurement workhorse. Each (prompt,
 * continuation) pair becomes one sequence; sequences of similar length are batched (right-padded, which
 * causal attention makes harmless), and the unembedding runs only on the rows that predict continuation
 * tokens.
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import type { HookSet } from './hooks.ts';
import type { LlamaModel } from './llama.ts';

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
