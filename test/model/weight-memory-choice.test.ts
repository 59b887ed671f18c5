/**
 * Which models keep their weights in a WeightMemory: by default those from 4M parameters and those whose every head
 * has its own kv head; PSM_WEIGHT_MEMORY=on|off overrides the rule, and any other value is refused by name.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { LlamaModel } from '../../src/model/llama.ts';

const small = (nKvHeads: number) =>
  parseLlamaConfig({ vocabSize: 64, dim: 32, nLayers: 1, nHeads: 4, nKvHeads, hiddenDim: 64, maxSeqLen: 16 });
const inMemory = (nKvHeads: number): boolean => new LlamaModel(small(nKvHeads)).weightMemory !== null;

describe('the WeightMemory choice', () => {
  const saved = process.env.PSM_WEIGHT_MEMORY;
  afterEach(() => {
    if (saved === undefined) delete process.env.PSM_WEIGHT_MEMORY;
    else process.env.PSM_WEIGHT_MEMORY = saved;
  });

  it('by default: a small model whose heads each have a kv head, not one with grouped heads', () => {
    delete process.env.PSM_WEIGHT_MEMORY;
    expect(inMemory(4)).toBe(true);
    expect(inMemory(2)).toBe(false);
    // Large enough, grouped heads too.
    const large = parseLlamaConfig({
      vocabSize: 4096,
      dim: 512,
      nLayers: 2,
      nHeads: 8,
      nKvHeads: 2,
      hiddenDim: 2048,
    });
    expect(new LlamaModel(large).weightMemory).not.toBeNull();
  });

  it('PSM_WEIGHT_MEMORY=on and off override it; another value is refused', () => {
    process.env.PSM_WEIGHT_MEMORY = 'on';
    expect(inMemory(2)).toBe(true);
    process.env.PSM_WEIGHT_MEMORY = 'off';
    expect(inMemory(4)).toBe(false);
    process.env.PSM_WEIGHT_MEMORY = 'yes';
    expect(() => inMemory(4)).toThrow(/PSM_WEIGHT_MEMORY must be on, off or auto, not "yes"/);
  });
});
