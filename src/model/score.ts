/**
 * Batched log-probability scoring of given continuations: the measurement workhorse. Each (prompt,
 * continuation) pair becomes one sequence; sequences of similar length are batched (right-padded, which
 * causal attention makes harmless), and the unembedding runs only on the rows that predict continuation
 * tokens. Where prompts repeat (several options of one question), each prompt runs once and all its
 * continuations run after it side by side, reading its keys and values without copying them
 * (`promptBatches` / `scorePromptBatch`, which the interpretation's scorer uses too).
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import { fusedKernels } from '../tensor/matmul.ts';
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

/** Requests grouped by prompt: each prompt scored once, with its continuations as branches. */
function scoreSharedPrompts(model: LlamaModel, requests: ScoreRequest[], budget: number): ScoreResult[] {
  const groups = new Map<string, { prompt: number[]; requests: number[] }>();
  requests.forEach((r, i) => {
    const key = promptKey(r.prompt);
    const g = groups.get(key);
    if (g) g.requests.push(i);
    else groups.set(key, { prompt: r.prompt, requests: [i] });
  });
  const list = [...groups.values()].map((g) => ({
    prompt: g.prompt,
    continuations: g.requests.map((i) => requests[i].continuation),
  }));
  const members = [...groups.values()];
  const results: ScoreResult[] = new Array(requests.length);
  noGrad(() => {
    for (const batch of promptBatches(list, budget, model.config.maxSeqLen)) {
      scorePromptBatch(model, batch, list).forEach((perCont, k) => {
        members[batch.members[k]].requests.forEach((idx, c) => {
          const tokenLogprobs = perCont[c];
          results[idx] = { logprob: tokenLogprobs.reduce((a, b) => a + b, 0), tokenLogprobs };
        });
      });
    }
  });
  return results;
}

// ---------------------------------------------------------------------------------------------------------------
// Prompts with several continuations each, batched

/** A prompt and the continuations scored after it (each at least one token). */
export interface PromptContinuations {
  prompt: readonly number[];
  continuations: readonly (readonly number[])[];
}

/**
 * One batch of prompts with their continuations ({@link promptBatches}): the prompts left-padded to one length for
 * LlamaModel.forwardPrompts, and every continuation but its last token side by side for forwardBranches.
 */
export interface PromptBatch {
  /** Indices into the caller's list. */
  members: number[];
  promptLen: number;
  /** [members, promptLen]. */
  promptIds: Int32Array;
  /** Per member, its left padding. */
  padding: Int32Array;
  /** Continuations per member: the most any member has (another member's extra ones are padding). */
  branches: number;
  /** The longest continuation's length minus one (0: every continuation is one token, and no branch pass runs). */
  branchLen: number;
  /** [members, branches, branchLen] (right-padded), or null when branchLen is 0. */
  branchIds: Int32Array | null;
}

/**
 * Batches of at most `tokensPerBatch` padded prompt and continuation tokens (at least one member each). Members of
 * similar prompt and continuation lengths go together, so that little is padding. A batch's longest prompt and
 * longest continuation together fit in `maxLen` positions (the model's context): a short prompt with a long
 * continuation never joins long prompts that its continuation would push past the context once padded.
 */
export function promptBatches(
  list: readonly PromptContinuations[],
  tokensPerBatch: number,
  maxLen = Infinity,
): PromptBatch[] {
  const branchLenOf = (g: PromptContinuations) => Math.max(...g.continuations.map((c) => c.length)) - 1;
  list.forEach((g, i) => {
    if (g.prompt.length === 0) throw new Error(`score: prompt ${i} is empty`);
    if (g.continuations.length === 0) throw new Error(`score: prompt ${i} has no continuations`);
    if (g.continuations.some((c) => c.length === 0))
      throw new Error(`score: prompt ${i} has an empty continuation`);
  });
  const order = list
    .map((_, i) => i)
    .sort(
      (a, b) =>
        branchLenOf(list[a]) - branchLenOf(list[b]) || list[a].prompt.length - list[b].prompt.length || a - b,
    );
  const batches: PromptBatch[] = [];
  let start = 0;
  while (start < order.length) {
    let promptLen = 0;
    let branches = 0;
    let branchLen = 0;
    let end = start;
    while (end < order.length) {
      const g = list[order[end]];
      const p = Math.max(promptLen, g.prompt.length);
      const n = Math.max(branches, g.continuations.length);
      const c = Math.max(branchLen, branchLenOf(g));
      if (end > start && ((end - start + 1) * (p + n * c) > tokensPerBatch || p + c > maxLen)) break;
      promptLen = p;
      branches = n;
      branchLen = c;
      end++;
    }
    batches.push(promptBatch(list, order.slice(start, end), promptLen, branches, branchLen));
    start = end;
  }
  return batches;
}

function promptBatch(
  list: readonly PromptContinuations[],
  members: number[],
  promptLen: number,
  branches: number,
  branchLen: number,
): PromptBatch {
  const B = members.length;
  const promptIds = new Int32Array(B * promptLen);
  const padding = new Int32Array(B);
  const branchIds = branchLen > 0 ? new Int32Array(B * branches * branchLen) : null;
  members.forEach((idx, b) => {
    const { prompt, continuations } = list[idx];
    padding[b] = promptLen - prompt.length;
    promptIds.set(prompt, b * promptLen + padding[b]);
    if (branchIds)
      continuations.forEach((c, k) => branchIds.set(c.slice(0, -1), (b * branches + k) * branchLen));
  });
  return { members, promptLen, promptIds, padding, branches, branchLen, branchIds };
}

/** Where one batch's passes start: from the tokens, or from the residual stream after a block. */
export interface PromptBatchResume {
  afterLayer: number;
  /** [members, promptLen, dim] and [members, branches x branchLen, dim] (null without a branch pass). */
  prompt: Float32Array;
  branches: Float32Array | null;
}

/**
 * Scores one batch (call inside noGrad): its prompts in one pass, every continuation of every prompt in another
 * over the prompts' cache. Returns, per member, per continuation, its tokens' log-probabilities. Hooks act in the
 * prompt pass (`prompt`) and the continuations' (`branches`); see LlamaModel.forwardPrompts for what they see.
 */
export function scorePromptBatch(
  model: LlamaModel,
  batch: PromptBatch,
  list: readonly PromptContinuations[],
  opts: { hooks?: { prompt?: HookSet; branches?: HookSet }; resume?: PromptBatchResume } = {},
): number[][][] {
  const { dim, vocabSize: vocab } = model.config;
  const { members, promptLen: P, padding, branches, branchLen: C } = batch;
  const B = members.length;
  const resume = opts.resume;
  const { hidden, cache } = model.forwardPrompts(batch.promptIds, B, {
    padding,
    hooks: opts.hooks?.prompt,
    resume: resume && { afterLayer: resume.afterLayer, hidden: new Tensor(resume.prompt, [B, P, dim]) },
  });
  // Each continuation's first token is read at its prompt's last position, the others from the branch pass.
  const branchHidden = batch.branchIds
    ? model.forwardBranches(batch.branchIds, cache, C, {
        hooks: opts.hooks?.branches,
        resume: resume && {
          afterLayer: resume.afterLayer,
          hidden: new Tensor(resume.branches!, [B, branches * C, dim]),
        },
      }).data
    : null;
  const targets: number[] = [];
  const sources: { data: Float32Array; row: number }[] = [];
  members.forEach((idx, b) =>
    list[idx].continuations.forEach((c, k) => {
      c.forEach((tok, j) => {
        targets.push(tok);
        sources.push(
          j === 0
            ? { data: hidden.data, row: (b + 1) * P - 1 }
            : { data: branchHidden!, row: (b * branches + k) * C + j - 1 },
        );
      });
    }),
  );
  const picked = new Float32Array(sources.length * dim);
  sources.forEach(({ data, row }, i) => picked.set(data.subarray(row * dim, (row + 1) * dim), i * dim));
  const logp = tokenLogprobs(model.logits(new Tensor(picked, [sources.length, dim])).data, targets, vocab);
  let at = 0;
  return members.map((idx) =>
    list[idx].continuations.map((c) => {
      const lps = Array.from({ length: c.length }, (_, j) => logp[at + j]);
      at += c.length;
      return lps;
    }),
  );
}

/** log-softmax(logits row i)[targets[i]] for logits [targets.length, v]: the backend's kernel, else JS in float64. */
function tokenLogprobs(logits: Float32Array, targets: readonly number[], v: number): ArrayLike<number> {
  const fk = fusedKernels();
  if (fk) return fk.logSoftmaxGather(logits, Int32Array.from(targets), null, v).logp;
  return targets.map((t, i) => logits[i * v + t] - rowLogZ(logits, i * v, v));
}

/** log sum exp of logits[offset .. offset + v): the log-softmax of an entry is the entry minus this. */
function rowLogZ(logits: Float32Array, offset: number, v: number): number {
  let max = -Infinity;
  for (let j = 0; j < v; j++) if (logits[offset + j] > max) max = logits[offset + j];
  let sum = 0;
  for (let j = 0; j < v; j++) sum += Math.exp(logits[offset + j] - max);
  return max + Math.log(sum);
}
