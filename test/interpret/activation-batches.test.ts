/**
 * The recording pass's default token budget: unchanged (4096) for the persona world's models, whose numbers must not
 * move, and smaller for wide imported models, whose per-pass intermediates would otherwise take GBs.
 */
import { describe, expect, it } from 'vitest';
import { defaultTokensPerBatch } from '../../src/interpret/activations.ts';
import { DEFAULT_CONFIG } from '../../src/pipeline/config.ts';

describe('defaultTokensPerBatch', () => {
  it('is 4096 for the default experiment and the larger PSM Lab presets', () => {
    expect(defaultTokensPerBatch(DEFAULT_CONFIG.model)).toBe(4096);
    expect(defaultTokensPerBatch({ dim: 256, hiddenDim: 1024 })).toBe(4096);
  });

  it('keeps the widest intermediate near 16 MB for wide models, and at least 256 tokens', () => {
    const qwen05 = defaultTokensPerBatch({ dim: 896, hiddenDim: 4864 });
    expect(qwen05).toBe(862);
    expect(qwen05 * 4864 * 4).toBeLessThanOrEqual(16 * 2 ** 20);
    expect(defaultTokensPerBatch({ dim: 8192, hiddenDim: 28672 })).toBe(256);
  });
});
