/**
 * Sampling with a KV cache: the prompt is run once, then one token per step. Temperature 0 is greedy;
 * otherwise nucleus (top-p) sampling from a seeded generator, so a seed reproduces the text.
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import { Rng } from '../tensor/random.ts';
import type { HookSet } from './hooks.ts';
import { KvCache, type LlamaModel } from './llama.ts';

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
  const order = Array.from({ length: v }, (_, j) => j).sort((a, b) => logp[b] - logp[a] || a - b);
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

/** Generates a continuation of one prompt; returns only the new token ids. */
export function generate(model: LlamaModel, prompt: number[], opts: GenerateOptions): number[] {
  if (prompt.length === 0) throw new Error('generate: the prompt is empty');
  const temperature = opts.temperature ?? 1;
  const topP = opts.topP ?? 1;
  if (!(temperature >= 0 && temperature < Infinity))
    throw new Error(`generate: temperature ${temperature} must be a finite number >= 0`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`generate: topP ${topP} must be in (0, 1]`);
  const maxLen = model.config.maxSeqLen;
  const budget = Math.min(opts.maxNewTokens, maxLen - prompt.length);
  if (budget <= 0)
    throw new Error(`generate: prompt of ${prompt.length} tokens leaves no room in a context of ${maxLen}`);
  const rng = new Rng(opts.seed ?? 0);
  const stops = new Set(opts.stopIds ?? []);
  return noGrad(() => {
    const cache = new KvCache(model.config, 1, prompt.length + budget);
    let hidden = model.forwardHidden(Int32Array.from(prompt), 1, { cache, hooks: opts.hooks });
    const out: number[] = [];
    const dim = model.config.dim;
    for (let step = 0; step < budget; step++) {
      const last = hidden.data.subarray(hidden.size - dim);
      const logits = model.logits(new Tensor(Float32Array.from(last), [1, dim])).data;
      const id = sampleFromLogits(logits, temperature, topP, rng);
      out.push(id);
      opts.onToken?.(id);
      if (stops.has(id) || step === budget - 1) break;
      hidden = model.forwardHidden(Int32Array.of(id), 1, { cache, hooks: opts.hooks });
    }
    return out;
  });
}
