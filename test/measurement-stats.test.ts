import { describe, expect, it } from 'vitest';
import { estimate, linearFit, logSumExp, meanAbsoluteError, pearson } from '../src/measurement/stats.ts';

describe('statistics', () => {
  it('estimates a mean with a t-based 95% interval', () => {
    const e = estimate([1, 2, 3, 4]);
    expect(e.mean).toBe(2.5);
    // sd = 1.291, se = 0.6455, t(3) = 3.182
    expect(e.ci95).toBeCloseTo(3.182 * 0.6455, 3);
    expect(Number.isNaN(estimate([1]).ci95)).toBe(true);
  });

  it('computes correlation, fit and errors', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1);
    expect(Number.isNaN(pearson([1, 1, 1], [1, 2, 3]))).toBe(true);
    const fit = linearFit([0, 1, 2], [1, 3, 5]);
    expect(fit.slope).toBeCloseTo(2);
    expect(fit.intercept).toBeCloseTo(1);
    expect(fit.r2).toBeCloseTo(1);
    expect(meanAbsoluteError([0, 1], [1, 1])).toBe(0.5);
    expect(logSumExp([Math.log(1), Math.log(3)])).toBeCloseTo(Math.log(4));
    expect(logSumExp([1000, 1000])).toBeCloseTo(1000 + Math.log(2));
  });
});
