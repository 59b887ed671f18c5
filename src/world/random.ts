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
//
// The generator itself is tensor/random.ts's Rng (one sfc32 for the project); this module seeds it.

import { Rng } from '../tensor/random.ts';

export { Rng };

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

/** A generator for the stream identified by (seed, ...labels). */
export function createRng(seed: number, ...labels: Array<number | string>): Rng {
  return worldRng(labels.length === 0 ? mix32(seed >>> 0) : deriveSeed(seed, ...labels));
}

/**
 * The world's seeding of the generator: splitmix32 through mix32 fills the 128-bit state (the last word odd, so
 * that even seed 0 gives a well-mixed state), then the first outputs are discarded, as sfc32 needs a few rounds.
 * Every corpus, item set and dataset was drawn from streams seeded this way.
 */
function worldRng(seed: number): Rng {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    return mix32(s);
  };
  const rng = new Rng([next(), next(), next(), next() | 1]);
  for (let i = 0; i < 12; i++) rng.nextUint32();
  return rng;
}
