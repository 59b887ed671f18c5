/**
 * Sampling with a KV cache: the prompt is run once, then one token per step. Temperature 0 is greedy;
 * otherwise nucleus (top-p) sampling from a seeded generator, so a seed reproduces the text. Several prompts
 * decode together (continuous batching): one forward per step for all of them, each on its own cache.
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import { Rng } from '../tensor/random.ts';
import { fusedPrefill } from './fused-decode.ts';
import type { HookSet } from './hooks.ts';
import { KvCache, type DecodeSequence, type LlamaModel } from './llama.ts';

export interface GenerateOptions {
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Generation stops after emitting any of these ids (the id is included in the output). */
  stopIds?: number[];
  hooks?: HookSet;
  /** Called with each new token id as it is produced (streaming). */
  onToken?: (id: number) => void;
}

/**
 * The model's next-token scores are not finite numbers (NaN, or +Infinity from an overflow): no distribution
 * to sample from. Raised rather than sampled, so that a broken forward pass (e.g. a steering vector large
 * enough to overflow float32) is an error instead of text.
 */
export class NonFiniteLogitsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteLogitsError';
  }
}

/**
 * Throws NonFiniteLogitsError unless logits[0, count) are scores a distribution can come from: no NaN, no
 * +Infinity, and at least one finite value. -Infinity is allowed: it is a masked token (probability 0).
 */
export function checkLogits(logits: Float32Array, count = logits.length): void {
  let finite = 0;
  for (let j = 0; j < count; j++) {
    const x = logits[j];
    if (Number.isNaN(x) || x === Infinity)
      throw new NonFiniteLogitsError(`the model's next-token logits are not finite (token ${j} scores ${x})`);
    if (x !== -Infinity) finite++;
  }
  if (finite === 0)
    throw new NonFiniteLogitsError('every next-token logit is -Infinity: no token can follow');
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
  return best;
}

/**
 * One token from softmax(logits / temperature), restricted to the smallest top set whose mass reaches topP.
 * Temperature 0 is greedy, and so is any temperature too small for float32 to divide by: as the temperature
 * goes to 0 the distribution becomes the argmax, and once a finite logit divided by it overflows (|x/t| beyond
 * float32's range) the scaled scores are no longer numbers a softmax can use (Infinity - Infinity is NaN).
 * Where the quotients stay finite, the softmax itself is exact down to a one-hot distribution.
 */
export function sampleFromLogits(logits: Float32Array, temperature: number, topP: number, rng: Rng): number {
  if (!(temperature >= 0 && temperature < Infinity))
    throw new Error(`temperature must be a finite number >= 0, got ${temperature}`);
  checkLogits(logits);
  const v = logits.length;
  if (temperature === 0) return argmax(logits);
  const scaled = new Float32Array(v);
  for (let j = 0; j < v; j++) {
    scaled[j] = logits[j] / temperature;
    if (!Number.isFinite(scaled[j]) && logits[j] !== -Infinity) return argmax(logits);
  }
  const logp = new Float32Array(v);
  logSoftmaxRow(scaled, 0, v, logp);
  const order = descendingOrder(logp);
  let cum = 0;
  let cut = order.length;
  for (let i = 0; i < order.length; i++) {
    cum += Math.exp(logp[order[i]]);
    if (cum >= topP) {
      cut = i + 1;
      break;
    }
  }
  let total = 0;
  for (let i = 0; i < cut; i++) total += Math.exp(logp[order[i]]);
  let u = rng.next() * total;
  for (let i = 0; i < cut; i++) {
    u -= Math.exp(logp[order[i]]);
    if (u <= 0) return order[i];
  }
  return order[cut - 1];
}

/**
 * The indices of scores from highest to lowest, ties by lower index first: the order of
 * `sort((a, b) => s[b] - s[a] || a - b)`, which at a 150k vocabulary costs ~80 ms a token, by a stable LSD
 * radix sort on the floats' bit patterns (~10x faster). Scores must not be NaN; -0 ranks as +0, as in the
 * comparison.
 */
export function descendingOrder(scores: Float32Array): Uint32Array {
  const n = scores.length;
  const bits = new Uint32Array(scores.buffer, scores.byteOffset, n);
  let keys = new Uint32Array(n);
  let order = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const b = scores[j] === 0 ? 0 : bits[j];
    // Ascending unsigned keys for descending floats: a float's bits flipped to sort as unsigned, then inverted.
    keys[j] = b & 0x80000000 ? b : (~b >>> 0) & 0x7fffffff;
    order[j] = j;
  }
  let keysOut = new Uint32Array(n);
  let orderOut = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let j = 0; j < n; j++) counts[(keys[j] >>> shift) & 2047]++;
    let start = 0;
    for (let c = 0; c < 2048; c++) {
      const count = counts[c];
      counts[c] = start;
      start += count;
    }
    for (let j = 0; j < n; j++) {
      const at = counts[(keys[j] >>> shift) & 2047]++;
      keysOut[at] = keys[j];
      orderOut[at] = order[j];
    }
    [keys, keysOut] = [keysOut, keys];
    [order, orderOut] = [orderOut, order];
  }
  return order;
}

/** One prompt of {@link generateBatch}, with its own options (sampling, stops, budget, hooks). */
export interface BatchRequest extends GenerateOptions {
  prompt: number[];
}

export interface GenerateBatchOptions {
  /** Sequences decoded together at most (default 8); the others wait and join as earlier ones finish. */
  maxBatch?: number;
  /** Called as each request finishes, with its index and new tokens. */
  onDone?: (index: number, tokens: number[]) => void;
}

/** A reply being decoded: what it continues and what it does with each next-token distribution. */
export interface DecodeJob {
  prompt: number[];
  /** Positions its KV cache must hold: the prompt and every token the job may feed back. */
  capacity: number;
  hooks?: HookSet;
  /**
   * Receives the logits [vocab] of the next token (a view the job may change, valid during the call) and
   * returns the token to feed back, or null when the reply is done.
   */
  next(logits: Float32Array): number | null;
}

/**
 * Continuous batching on one model: each job admitted is prefilled alone on its own KV cache; then every
 * step feeds all running jobs' tokens through one {@link LlamaModel.forwardStep} (the matmuls over all rows
 * at once, attention and hooks per sequence) and hands each job its own logits. A job that finishes leaves at
 * once, so a new one can take its place before the next step.
 */
export interface DecodeBatchOptions {
  /**
   * Every job gets the same logits whatever else is decoded beside it, to the bit: a job decoded alone is
   * padded with a scratch row. ONNX Runtime's matmul sums a lone row in another order than two or more rows,
   * and from two rows on a row's sums do not depend on the others; attention and hooks are per sequence. So
   * sampled replies can be cached and a resumed run regenerates exactly what an uninterrupted one did. Costs
   * one extra row whenever a job runs alone.
   */
  batchInvariant?: boolean;
}

export class DecodeBatch {
  private running: { job: DecodeJob; seq: DecodeSequence; token: number }[] = [];
  /** The scratch row of a lone job in batch-invariant mode: a one-position cache, emptied before each use. */
  private pad: DecodeSequence | null = null;

  constructor(
    readonly model: LlamaModel,
    readonly options: DecodeBatchOptions = {},
  ) {}

  get size(): number {
    return this.running.length;
  }

  /** Prefills the job and asks it for its first token; returns false when it finished at once. */
  admit(job: DecodeJob): boolean {
    const model = this.model;
    return noGrad(() => {
      const cache = new KvCache(model.config, 1, job.capacity);
      const ids = Int32Array.from(job.prompt);
      // Without hooks, the prompt's pass may run on the fused graphs (the same numbers, fewer kernel calls).
      const hidden =
        (job.hooks ? null : fusedPrefill(model, ids, cache)) ??
        model.forwardHidden(ids, 1, { cache, hooks: job.hooks });
      const dim = model.config.dim;
      const last = new Tensor(Float32Array.from(hidden.data.subarray(hidden.size - dim)), [1, dim]);
      const token = job.next(model.logits(last).data);
      if (token === null) return false;
      this.running.push({ job, seq: { cache, hooks: job.hooks }, token });
      return true;
    });
  }

  /** One forward over every running job; returns the jobs that finished in it. */
  step(): DecodeJob[] {
    const run = this.running;
    if (run.length === 0) return [];
    const logits = noGrad(() => {
      const tokens = run.map((r) => r.token);
      const seqs = run.map((r) => r.seq);
      // The pad row goes through the unembedding too: that matmul also sums a lone row differently.
      if (this.options.batchInvariant && run.length === 1) {
        this.pad ??= { cache: new KvCache(this.model.config, 1, 1) };
        this.pad.cache.length = 0;
        tokens.push(0);
        seqs.push(this.pad);
      }
      return this.model.logits(this.model.forwardStep(Int32Array.from(tokens), seqs)).data;
    });
    const vocab = this.model.config.vocabSize;
    const done: DecodeJob[] = [];
    this.running = run.filter((r, i) => {
      const token = r.job.next(logits.subarray(i * vocab, (i + 1) * vocab));
      if (token === null) done.push(r.job);
      else r.token = token;
      return token !== null;
    });
    return done;
  }

  /** Removes jobs (a client gone, a failed step); their caches are dropped. */
  remove(jobs: ReadonlySet<DecodeJob>): void {
    this.running = this.running.filter((r) => !jobs.has(r.job));
  }

  /** The jobs running now, in the order their rows are batched. */
  jobs(): DecodeJob[] {
    return this.running.map((r) => r.job);
  }
}

/** Checks a request's options; returns its temperature, topP and token budget. */
function samplingPlan(
  model: LlamaModel,
  prompt: number[],
  opts: GenerateOptions,
  who: string,
): { temperature: number; topP: number; budget: number } {
  if (prompt.length === 0) throw new Error(`${who}: the prompt is empty`);
  const temperature = opts.temperature ?? 1;
  const topP = opts.topP ?? 1;
  if (!(temperature >= 0 && temperature < Infinity))
    throw new Error(`${who}: temperature ${temperature} must be a finite number >= 0`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`${who}: topP ${topP} must be in (0, 1]`);
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens > 0))
    throw new Error(`${who}: maxNewTokens ${opts.maxNewTokens} must be a positive integer`);
  const maxLen = model.config.maxSeqLen;
  const budget = Math.min(opts.maxNewTokens, maxLen - prompt.length);
  if (budget <= 0)
    throw new Error(`${who}: prompt of ${prompt.length} tokens leaves no room in a context of ${maxLen}`);
  return { temperature, topP, budget };
}

/**
 * Generates a continuation of each prompt, several decoded together (see {@link DecodeBatch}); returns each
 * request's new token ids, in order. Every request keeps its own options: its seed's generator, temperature,
 * topP, stop ids, budget, hooks and onToken, so it samples exactly as {@link generate} alone would. One
 * caveat on the ONNX Runtime backend: its matmul sums a single row in another order than several rows, so a
 * token on a near-tie (scores equal to float32 rounding) can differ between a request decoded alone and in a
 * batch; with the JS backend the tokens are the same to the bit.
 */
export function generateBatch(
  model: LlamaModel,
  requests: readonly BatchRequest[],
  opts: GenerateBatchOptions = {},
): number[][] {
  return decodeRequests(model, requests, opts, (i) => `generateBatch: request ${i}`);
}

/** Generates a continuation of one prompt; returns only the new token ids. */
export function generate(model: LlamaModel, prompt: number[], opts: GenerateOptions): number[] {
  return decodeRequests(model, [{ ...opts, prompt }], {}, () => 'generate')[0];
}

/** generateBatch, naming request i as who(i) in its errors. */
function decodeRequests(
  model: LlamaModel,
  requests: readonly BatchRequest[],
  opts: GenerateBatchOptions,
  who: (i: number) => string,
): number[][] {
  const maxBatch = opts.maxBatch ?? 8;
  if (!Number.isInteger(maxBatch) || maxBatch < 1)
    throw new Error(`generateBatch: maxBatch must be a positive integer, got ${maxBatch}`);
  const results: number[][] = requests.map(() => []);
  const jobs: DecodeJob[] = requests.map((req, i) => {
    const { temperature, topP, budget } = samplingPlan(model, req.prompt, req, who(i));
    const rng = new Rng(req.seed ?? 0);
    const stops = new Set(req.stopIds ?? []);
    const out = results[i];
    return {
      prompt: req.prompt,
      capacity: req.prompt.length + budget,
      hooks: req.hooks,
      next(logits) {
        let id: number;
        try {
          id = sampleFromLogits(logits, temperature, topP, rng);
        } catch (e) {
          if (e instanceof NonFiniteLogitsError && requests.length > 1)
            throw new NonFiniteLogitsError(`${who(i)}: ${e.message}`);
          throw e;
        }
        out.push(id);
        req.onToken?.(id);
        if (!stops.has(id) && out.length < budget) return id;
        opts.onDone?.(i, out);
        return null;
      },
    };
  });
  const batch = new DecodeBatch(model);
  let next = 0;
  while (next < jobs.length || batch.size > 0) {
    while (next < jobs.length && batch.size < maxBatch) batch.admit(jobs[next++]);
    batch.step();
  }
  return results;
}
