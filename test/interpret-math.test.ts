import { describe, expect, it } from 'vitest';
import { agreement, fitSoftmaxProbe, probePredict, type SoftmaxProbe } from '../src/interpret/probe.ts';
import { rankingAUC, shiftPrediction } from '../src/interpret/shift.ts';
import { componentsFor, jacobiEigen, pca, pcaCoords } from '../src/interpret/space.ts';
import { isMonotonicDecreasing, maxPairedRiseZ, quantile, RISE_Z } from '../src/interpret/steer.ts';
import { Rng } from '../src/tensor/random.ts';

describe('Jacobi eigendecomposition and PCA', () => {
  it('diagonalises a symmetric matrix (A v = lambda v), largest first', () => {
    const rng = new Rng(3);
    const n = 6;
    const b = Array.from({ length: n * n }, () => rng.gaussian());
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) a[i * n + j] += b[i * n + k] * b[j * n + k];
    const { values, vectors } = jacobiEigen(a, n);
    for (let c = 0; c < n; c++) {
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += a[i * n + j] * vectors[c][j];
        expect(av).toBeCloseTo(values[c] * vectors[c][i], 6);
      }
      if (c > 0) expect(values[c]).toBeLessThanOrEqual(values[c - 1] + 1e-9);
    }
  });

  it('finds a planted direction and its share of variance, with the Gram and the covariance route alike', () => {
    const rng = new Rng(7);
    const dim = 5;
    const dir = Float32Array.from([3, 4, 0, 0, 0].map((x) => x / 5));
    const make = (n: number) =>
      Array.from({ length: n }, () => {
        const t = rng.gaussian() * 10;
        return Float32Array.from({ length: dim }, (_, j) => t * dir[j] + 0.1 * rng.gaussian());
      });
    for (const pts of [make(4), make(40)]) {
      const p = pca(pts);
      expect(Math.abs(p.components[0][0] * dir[0] + p.components[0][1] * dir[1])).toBeGreaterThan(0.999);
      expect(p.explained[0]).toBeGreaterThan(0.99);
      expect(p.explained.reduce((s, x) => s + x, 0)).toBeLessThanOrEqual(1 + 1e-6);
      expect(componentsFor(p.explained, 0.7)).toBe(1);
      // Coordinates reconstruct the centred points along the kept components.
      const c = pcaCoords(p, pts[0]);
      const rec = p.mean.map((m, j) => m + p.components.reduce((s, u, k) => s + c[k] * u[j], 0));
      if (p.components.length === Math.min(pts.length - 1, dim))
        rec.forEach((x, j) => expect(x).toBeCloseTo(pts[0][j], 3));
    }
    expect(() => pca([new Float32Array(3)])).toThrow(/at least 2 points/);
  });
});

describe('softmax probe', () => {
  it('recovers soft targets that are a softmax of a linear map of the features', () => {
    const rng = new Rng(11);
    const n = 300;
    const dim = 4;
    const C = 3;
    const W = [
      [2, 0, 0, 1],
      [0, 2, 0, -1],
      [0, 0, 2, 0],
    ];
    const X = new Float32Array(n * dim);
    const Y = new Float32Array(n * C);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < dim; j++) X[i * dim + j] = rng.gaussian();
      const logits = W.map((w) => w.reduce((s, x, j) => s + x * X[i * dim + j], 0));
      const m = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - m));
      const z = e.reduce((a, b) => a + b, 0);
      e.forEach((v, c) => (Y[i * C + c] = v / z));
    }
    const fit = fitSoftmaxProbe(X, Y, n, dim, C, { l2: 0, iterations: 400, lr: 0.05 });
    const probe: SoftmaxProbe = { layer: 0, hook: 'x', archetypes: ['a', 'b', 'c'], dim, ...fit };
    const pred = probePredict(probe, X);
    const bayes = Array.from({ length: n }, (_, i) => Array.from(Y.subarray(i * C, (i + 1) * C)));
    const priors = bayes.map(() => [1 / 3, 1 / 3, 1 / 3]);
    const a = agreement(
      pred,
      bayes,
      priors,
      bayes.map(() => 1),
    );
    expect(a.tv).toBeLessThan(0.05);
    expect(a.tvPrior).toBeGreaterThan(0.2);
    expect(a.r).toBeGreaterThan(0.98);
    expect(a.top1).toBeGreaterThan(0.95);
  });

  it('agreement of a prediction with itself is perfect', () => {
    const bayes = [
      [0.2, 0.8],
      [0.6, 0.4],
      [0.5, 0.5],
    ];
    const a = agreement(
      Float32Array.from(bayes.flat()),
      bayes,
      bayes.map(() => [0.5, 0.5]),
      [0, 1, 1],
    );
    expect(a.tv).toBeCloseTo(0, 6);
    expect(a.kl).toBeCloseTo(0, 5);
    expect(a.byK.map((b) => b.n)).toEqual([1, 2]);
  });
});

describe('small statistics of the interpret tools', () => {
  it('AUC, quantiles, monotonicity', () => {
    expect(rankingAUC([3, 2, 1, 0], [true, true, false, false])).toBe(1);
    expect(rankingAUC([0, 1, 2, 3], [true, true, false, false])).toBe(0);
    expect(rankingAUC([1, 1], [true, false])).toBe(0.5);
    expect(rankingAUC([1, 2], [true, true])).toBeNaN();
    expect(quantile([4, 1, 3, 2], 0.25)).toBeCloseTo(1.75);
    expect(isMonotonicDecreasing([0.9, 0.8, 0.8, 0.1])).toBe(true);
    expect(isMonotonicDecreasing([0.9, 0.95, 0.1])).toBe(false);
  });

  it('a rise between doses counts only beyond its paired sampling noise', () => {
    // Four items at three doses. Dose 1 -> 2: items move +0.01, -0.01, +0.02, -0.01 (mean +0.0025, mostly noise).
    const noisy = [
      [0.99, 0.98, 0.97, 0.99],
      [0.9, 0.9, 0.8, 0.9],
      [0.91, 0.89, 0.82, 0.89],
    ];
    const d = [0.01, -0.01, 0.02, -0.01];
    const m = d.reduce((a, b) => a + b, 0) / 4;
    const sd = Math.sqrt(d.reduce((a, x) => a + (x - m) ** 2, 0) / 3);
    expect(maxPairedRiseZ(noisy)).toBeCloseTo(m / (sd / 2), 6);
    expect(maxPairedRiseZ(noisy)).toBeLessThan(RISE_Z);
    expect(isMonotonicDecreasing(noisy.map((p) => p.reduce((a, b) => a + b, 0) / 4))).toBe(false);
    // Every item rises by the same amount: no spread, the largest z there is (capped, JSON has no infinities).
    expect(
      maxPairedRiseZ([
        [0.5, 0.6],
        [0.7, 0.8],
      ]),
    ).toBe(1000);
    // Always falling: the largest change is negative.
    expect(
      maxPairedRiseZ([
        [0.9, 0.8],
        [0.5, 0.3],
        [0.2, 0.1],
      ]),
    ).toBeLessThan(0);
    expect(maxPairedRiseZ([[0.5]])).toBeNaN();
  });

  it('shift prediction correlates projection shifts with expression shifts, with and without excluded traits', () => {
    const logit = (p: number) => Math.log(p / (1 - p));
    const state = (projection: Record<string, number>, pBad: Record<string, number>) => ({
      projection,
      pBad,
      logOddsBad: Object.fromEntries(Object.entries(pBad).map(([t, p]) => [t, logit(p)])),
    });
    const before = state({ a: 0, b: 0, c: 0 }, { a: 0.1, b: 0.2, c: 0.3 });
    const afters = [1, 2, 3].map((k) => ({
      label: `arm${k}`,
      state: state({ a: k, b: 2 * k, c: -k }, { a: 0.1 + 0.05 * k, b: 0.2 + 0.1 * k, c: 0.3 - 0.05 * k }),
    }));
    const s = shiftPrediction(before, afters, ['c']);
    expect(s.points).toHaveLength(9);
    expect(s.r).toBeCloseTo(1, 6);
    expect(s.rExcluding).toBeCloseTo(1, 6);
    expect(s.perTrait.a).toBeCloseTo(1, 6);
    expect(s.points[0].logOddsShift).toBeCloseTo(logit(0.15) - logit(0.1), 9);
    // A trait saturated near P(bad) = 0: the log-odds follow the projection linearly, the probability hardly moves
    // and is swamped by item noise, so only the log-odds reading recovers the relation.
    const sat = (k: number, noise: number) => 1 / (1 + Math.exp(-(-9 + k))) + noise;
    const floor = shiftPrediction(
      { projection: { t: 0 }, pBad: { t: sat(0, 0) }, logOddsBad: { t: -9 } },
      [1, 2, 3, 4].map((k) => ({
        label: `m${k}`,
        state: {
          projection: { t: k },
          pBad: { t: sat(k, [0.01, -0.01, 0.01, -0.012][k - 1]) },
          logOddsBad: { t: -9 + k },
        },
      })),
    );
    expect(floor.perTraitLogOdds.t).toBeCloseTo(1, 9);
    expect(floor.perTrait.t).toBeLessThan(0.5);
  });
});
