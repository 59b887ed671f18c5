/**
 * Batch sources. Each is deterministic from its seed and exposes its cursor (RNG state and position) so a
 * checkpoint can resume the exact same sequence of batches.
 */
import { Rng } from '../tensor/random.ts';

export interface Batch {
  batch: number;
  seqLen: number;
  inputs: Int32Array;
  targets: Int32Array;
  /** Per-token loss weight (0 = masked); null = every token weighs 1. */
  weights: Float32Array | null;
}

export interface BatchSource {
  next(): Batch;
  state(): Record<string, unknown>;
  restore(state: Record<string, unknown>): void;
}

/**
 * Loss weight for marked tokens (e.g. behaviour tokens of the persona world); unmarked tokens weigh 1. A mask
 * entry is 0 (unmarked) or a token's rank within its marked span; with maxRank only the first maxRank tokens of
 * each span are weighted.
 */
export interface TokenEmphasis {
  mask: Uint8Array;
  weight: number;
  maxRank?: number;
}

/**
 * Random windows of seqLen + 1 tokens from a token stream (pre-training). With a separator token, every window
 * starts at one (a document start), so each document is read from its beginning: what a late passage depends on
 * (the character's earlier scenes) is in the window, as it is when the model is measured. Windows at arbitrary
 * offsets cut most long documents, and a model trained on them learns to lean on the nearest context.
 */
export class TokenWindowSource implements BatchSource {
  private rng: Rng;
  /** Allowed window starts (positions of the separator), or null for any offset. */
  private readonly starts: Uint32Array | null;

  constructor(
    private readonly tokens: Uint16Array | Int32Array,
    private readonly batch: number,
    private readonly seqLen: number,
    seed: number,
    private readonly emphasis: TokenEmphasis | null = null,
    separator: number | null = null,
  ) {
    if (tokens.length < seqLen + 2)
      throw new Error(`token stream of ${tokens.length} tokens is shorter than one window (${seqLen + 1})`);
    if (emphasis && emphasis.mask.length !== tokens.length)
      throw new Error(`emphasis mask has ${emphasis.mask.length} entries for ${tokens.length} tokens`);
    this.rng = new Rng(seed);
    this.starts =
      separator === null ? null : separatorPositions(tokens, separator, tokens.length - seqLen - 1);
    if (this.starts && this.starts.length === 0)
      throw new Error(
        `no separator token (id ${separator}) where a window of ${seqLen + 1} tokens can start: is it the stream's document separator?`,
      );
  }

  next(): Batch {
    const { batch, seqLen } = this;
    const inputs = new Int32Array(batch * seqLen);
    const targets = new Int32Array(batch * seqLen);
    const span = this.tokens.length - seqLen - 1;
    const e = this.emphasis;
    const weights = e ? new Float32Array(batch * seqLen) : null;
    for (let b = 0; b < batch; b++) {
      const start = this.starts
        ? this.starts[this.rng.scaledInt(this.starts.length)]
        : this.rng.scaledInt(span + 1);
      for (let t = 0; t < seqLen; t++) {
        inputs[b * seqLen + t] = this.tokens[start + t];
        targets[b * seqLen + t] = this.tokens[start + t + 1];
        if (weights) {
          const rank = e!.mask[start + t + 1];
          weights[b * seqLen + t] = rank > 0 && (!e!.maxRank || rank <= e!.maxRank) ? e!.weight : 1;
        }
      }
    }
    return { batch, seqLen, inputs, targets, weights };
  }

  state(): Record<string, unknown> {
    return { rng: this.rng.state() };
  }

  restore(state: Record<string, unknown>): void {
    this.rng = new Rng(state.rng as number[]);
  }
}

function separatorPositions(tokens: Uint16Array | Int32Array, separator: number, last: number): Uint32Array {
  let n = 0;
  for (let i = 0; i <= last; i++) if (tokens[i] === separator) n++;
  const out = new Uint32Array(n);
  for (let i = 0, j = 0; i <= last; i++) if (tokens[i] === separator) out[j++] = i;
  return out;
}

/** A tokenised chat example: loss applies to the response tokens only. */
export interface SupervisedExample {
  prompt: number[];
  response: number[];
}

/**
 * Supervised examples in shuffled epochs, one example per row, right-padded to the longest row of the
 * batch; the loss mask covers the response tokens.
 */
export class SupervisedSource implements BatchSource {
  private rng: Rng;
  private order: number[] = [];
  private cursor = 0;
  private epoch = 0;

  constructor(
    private readonly examples: SupervisedExample[],
    private readonly batch: number,
    private readonly maxLen: number,
    seed: number,
    private readonly padId = 0,
  ) {
    if (examples.length === 0) throw new Error('supervised data set is empty');
    examples.forEach((e, i) => {
      if (e.response.length === 0) throw new Error(`supervised example ${i} has an empty response`);
      if (e.prompt.length + e.response.length - 1 > maxLen) {
        throw new Error(
          `supervised example ${i} has ${e.prompt.length + e.response.length} tokens, more than the context ${maxLen} + 1`,
        );
      }
    });
    this.rng = new Rng(seed);
    this.reshuffle();
  }

  private reshuffle(): void {
    this.order = this.rng.scaledShuffle(this.examples.map((_, i) => i));
    this.cursor = 0;
  }

  next(): Batch {
    const picked: SupervisedExample[] = [];
    for (let b = 0; b < this.batch; b++) {
      if (this.cursor >= this.order.length) {
        this.epoch++;
        this.reshuffle();
      }
      picked.push(this.examples[this.order[this.cursor++]]);
    }
    const seqLen = Math.max(...picked.map((e) => e.prompt.length + e.response.length - 1));
    const inputs = new Int32Array(this.batch * seqLen).fill(this.padId);
    const targets = new Int32Array(this.batch * seqLen).fill(this.padId);
    const weights = new Float32Array(this.batch * seqLen);
    picked.forEach((e, b) => {
      const seq = [...e.prompt, ...e.response];
      for (let t = 0; t < seq.length - 1; t++) {
        inputs[b * seqLen + t] = seq[t];
        targets[b * seqLen + t] = seq[t + 1];
        if (t >= e.prompt.length - 1) weights[b * seqLen + t] = 1;
      }
    });
    return { batch: this.batch, seqLen, inputs, targets, weights };
  }

  state(): Record<string, unknown> {
    return { rng: this.rng.state(), order: this.order, cursor: this.cursor, epoch: this.epoch };
  }

  restore(state: Record<string, unknown>): void {
    this.rng = new Rng(state.rng as number[]);
    this.order = [...(state.order as number[])];
    this.cursor = state.cursor as number;
    this.epoch = state.epoch as number;
  }
}
