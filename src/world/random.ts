// Seeded pseudo-random numbers for the persona world.
//
// Everything the world produces (corpora, evaluation items, datasets, held-out name sets) must be a pure function
// of (world, seed), on every platform and Node version, so we never touch Math.random. The generator is sfc32
// (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state, passes PractRand to many TB), seeded
// through splitmix32 so that nearby seeds (0, 1, 2, ...) give unrelated streams.
//
// Streams are derived by hashing labels into the seed (deriveSeed(seed, 'doc', 17)) instead of drawing them from
// one shared stream: then document 17 is the same whatever happened before it, a corpus of 2M tokens is a prefix of
// the corpus of 20M tokens with the same seed, and adding a new consumer of randomness does not shift the others.

/** 32-bit FNV-1a hash of a string (UTF-16 code units), used to turn labels into seed material. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32 finaliser: a bijective avalanche of 32 bits. */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** Combine a seed with any number of labels (numbers or strings) into a new 32-bit seed. */
export function deriveSeed(seed: number, ...labels: Array<number | string>): number {
  let h = mix32((seed >>> 0) ^ 0x5bd1e995);
  for (const label of labels) {
    const v = typeof label === 'number' ? label >>> 0 : hashString(label);
    // Mixing before and after the xor keeps (a, b) and (b, a) distinct.
    h = mix32(h ^ mix32(v + 0x632be5ab));
  }
  return h;
}

/** A small seeded PRNG (sfc32) with the helpers the world needs. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    // Fill the 128-bit state from splitmix32 so that even seed 0 gives a well-mixed state.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      return mix32(s);
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
    // Discard the first outputs: sfc32 needs a few rounds before its state is fully mixed.
    for (let i = 0; i < 12; i++) this.uint32();
  }

  /** Next raw 32-bit unsigned integer. */
  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform integer in [0, n). Uses rejection sampling so that there is no modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0)
      throw new RangeError(`Rng.int: n must be a positive integer, got ${n}`);
    if (n === 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return x % n;
    }
  }

  /** Uniform integer in [lo, hi] (both inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.next() < p;
  }

  /** Uniform element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Rng.pick: empty array');
    return items[this.int(items.length)];
  }

  /** Index drawn with probability proportional to weights (non-negative, not all zero). */
  weighted(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    if (!(total > 0)) throw new RangeError('Rng.weighted: weights must have a positive sum');
    let u = this.next() * total;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i];
      if (u < 0) return i;
    }
    // Floating-point leftovers land on the last index with positive weight.
    for (let i = weights.length - 1; i >= 0; i--) if (weights[i] > 0) return i;
    return weights.length - 1;
  }

  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }

  /** k distinct elements in random order (k <= items.length). */
  sample<T>(items: readonly T[], k: number): T[] {
    if (k > items.length) throw new RangeError(`Rng.sample: cannot take ${k} of ${items.length}`);
    const copy = items.slice();
    // Partial Fisher-Yates: only the first k positions are needed.
    for (let i = 0; i < k; i++) {
      const j = i + this.int(copy.length - i);
      const tmp = copy[i];
      copy[i] = copy[j];
      copy[j] = tmp;
    }
    return copy.slice(0, k);
  }
}

/** A generator for the stream identified by (seed, ...labels). */
export function createRng(seed: number, ...labels: Array<number | string>): Rng {
  return new Rng(labels.length === 0 ? mix32(seed >>> 0) : deriveSeed(seed, ...labels));
}
