import { describe, expect, it } from 'vitest';
import {
  agreement,
  archetypePosterior,
  fitSoftmaxProbe,
  personaChains,
  probePredict,
  type SoftmaxProbe,
} from '../src/interpret/probe.ts';
import { shiftPrediction } from '../src/interpret/shift.ts';
import { rankingAUC } from '../src/interpret/screen.ts';
import { componentsFor, jacobiEigen, pca, pcaCoords } from '../src/interpret/space.ts';
import { isMonotonicDecreasing, maxPairedRiseZ, quantile, RISE_Z } from '../src/interpret/steer.ts';
import { Rng } from '../src/tensor/random.ts';
import { loadDefaultWorld } from '../src/world/index.ts';

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

  it('uncentred, finds the directions of the points themselves (a shared offset comes first)', () => {
    const rng = new Rng(5);
    const dim = 5;
    const offset = Float32Array.from([0, 0, 2, 0, 0]);
    // Every point is the offset plus a little noise: centred PCA sees only the noise, uncentred the offset.
    for (const n of [3, 12]) {
      const pts = Array.from({ length: n }, () =>
        Float32Array.from({ length: dim }, (_, j) => offset[j] + 0.05 * rng.gaussian()),
      );
      const p = pca(pts, undefined, { center: false });
      expect(Array.from(p.mean)).toEqual([0, 0, 0, 0, 0]);
      expect(Math.abs(p.components[0][2])).toBeGreaterThan(0.999);
      expect(p.explained[0]).toBeGreaterThan(0.99);
      expect(p.components.length).toBe(Math.min(n, dim));
      expect(Math.abs(pca(pts).components[0][2])).toBeLessThan(0.99);
    }
    // One point is enough without centring: its own direction.
    const [u] = pca([Float32Array.of(0, 3, 4)], 1, { center: false }).components;
    [0, 0.6, 0.8].forEach((x, j) => expect(Math.abs(u[j])).toBeCloseTo(x, 6));
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

  it('a probe with the prior offset and zero weights returns the prior exactly, 0 for the other kind', () => {
    const dim = 3;
    const logPrior = [Math.log(0.75), Math.log(0.25), -Infinity, -Infinity];
    const probe: SoftmaxProbe = {
      layer: 0,
      hook: 'x',
      archetypes: ['a', 'b', 'c', 'd'],
      dim,
      mean: new Float32Array(dim),
      std: new Float32Array(dim).fill(1),
      weights: new Float32Array(4 * dim),
      bias: new Float32Array(4),
      priorOffset: true,
    };
    const rows = Float32Array.of(1, -2, 3, 0.5, 0.5, 0.5);
    const pred = probePredict(probe, rows, Float32Array.from([...logPrior, ...logPrior]));
    expect(Array.from(pred)).toEqual([0.75, 0.25, 0, 0, 0.75, 0.25, 0, 0]);
    expect(() => probePredict(probe, rows)).toThrow(/needs 2 x 4 log priors/);
    expect(() =>
      fitSoftmaxProbe(rows, new Float32Array(8), 2, dim, 4, { offset: new Float32Array(4) }),
    ).toThrow(/offset does not match/);
  });

  // posterior = prior(kind) x likelihood(evidence): two kinds with two archetypes each, evidence e in R^3 with
  // log-likelihoods M e, features an ill-conditioned linear mix of e and noise (scales 1e-3 .. 1e2).
  function kindWorld(n: number, seed: number) {
    const rng = new Rng(seed);
    const C = 4;
    const dim = 8;
    const M = [
      [1.5, 0, -1],
      [-1.5, 0.5, 1],
      [0, 2, 0.5],
      [0.5, -2, -0.5],
    ];
    const scales = [1e2, 1, 1e-3, 10, 1e-2, 1, 1e-1, 3];
    const fixed = new Rng(20);
    const mix = Array.from({ length: dim * dim }, () => fixed.gaussian());
    const priors = [
      [0.6, 0.4, 0, 0],
      [0, 0, 0.7, 0.3],
    ];
    const X = new Float32Array(n * dim);
    const Y = new Float32Array(n * C);
    const offset = new Float32Array(n * C);
    const prior: number[][] = [];
    for (let i = 0; i < n; i++) {
      const kind = i % 3 === 0 ? 1 : 0;
      const e = [rng.gaussian(), rng.gaussian(), rng.gaussian()];
      const latent = [...e, ...Array.from({ length: dim - 3 }, () => rng.gaussian())];
      for (let j = 0; j < dim; j++) {
        let v = 0;
        for (let k = 0; k < dim; k++) v += mix[j * dim + k] * latent[k];
        X[i * dim + j] = scales[j] * v;
      }
      const logits = M.map((m, c) => Math.log(priors[kind][c]) + m.reduce((s, w, k) => s + w * e[k], 0));
      const mx = Math.max(...logits);
      const p = logits.map((l) => Math.exp(l - mx));
      const z = p.reduce((a, b) => a + b, 0);
      p.forEach((v, c) => {
        Y[i * C + c] = v / z;
        offset[i * C + c] = Math.log(priors[kind][c]);
      });
      prior.push(priors[kind]);
    }
    return { X, Y, offset, prior, n, dim, C };
  }

  it('with the prior offset, fitted on ill-conditioned features, beats the prior and the mean target held out', () => {
    const tr = kindWorld(600, 21);
    const te = kindWorld(300, 22);
    const fit = fitSoftmaxProbe(tr.X, tr.Y, tr.n, tr.dim, tr.C, { l2: 1e-4, offset: tr.offset });
    const probe: SoftmaxProbe = {
      layer: 0,
      hook: 'x',
      archetypes: ['a', 'b', 'c', 'd'],
      dim: tr.dim,
      ...fit,
      priorOffset: true,
    };
    const pred = probePredict(probe, te.X, te.offset);
    const bayes = Array.from({ length: te.n }, (_, i) => Array.from(te.Y.subarray(i * te.C, (i + 1) * te.C)));
    const a = agreement(
      pred,
      bayes,
      te.prior,
      bayes.map(() => 1),
    );
    const meanTarget = Array.from({ length: tr.C }, (_, c) => {
      let s = 0;
      for (let i = 0; i < tr.n; i++) s += tr.Y[i * tr.C + c] / tr.n;
      return s;
    });
    const base = agreement(
      Float32Array.from(bayes.flatMap(() => meanTarget)),
      bayes,
      te.prior,
      bayes.map(() => 1),
    );
    expect(a.tv).toBeLessThan(0.03);
    expect(a.tvPrior).toBeGreaterThan(0.2);
    expect(base.tv).toBeGreaterThan(0.4);
    expect(a.rUpdate).toBeGreaterThan(0.99);
    // The other kind's archetypes get exactly 0.
    for (let i = 0; i < te.n; i++)
      for (let c = 0; c < te.C; c++) if (te.prior[i][c] === 0) expect(pred[i * te.C + c]).toBe(0);
  });

  it('fitted on targets that say nothing beyond the kind, the offset probe returns the prior', () => {
    const d = kindWorld(400, 23);
    const Y = Float32Array.from(d.prior.flat());
    const fit = fitSoftmaxProbe(d.X, Y, d.n, d.dim, d.C, { offset: d.offset });
    const probe: SoftmaxProbe = { layer: 0, hook: 'x', archetypes: ['a', 'b', 'c', 'd'], dim: d.dim, ...fit };
    const pred = probePredict({ ...probe, priorOffset: true }, d.X, d.offset);
    for (let i = 0; i < d.n * d.C; i++) expect(Math.abs(pred[i] - Y[i])).toBeLessThan(1e-3);
  });

  it('persona chains: every lead follows its earlier scenes, in distinct domains, and the text ends with the lead', () => {
    const world = loadDefaultWorld();
    const chains = personaChains(world, 40, 5);
    expect(personaChains(world, 40, 5)).toEqual(chains);
    const domains = world.domains.map((d) => d.name);
    const subjects = new Set(chains.map((c) => c.subject));
    expect([...subjects].sort()).toEqual(['ai', 'assistant', 'human']);
    for (const ch of chains) {
      expect(ch.leads).toHaveLength(Math.min(domains.length, 6));
      expect(ch.kind).toBe(ch.subject === 'human' ? 'human' : 'ai');
      ch.leads.forEach((l, j) => {
        expect(l.evidence).toHaveLength(j);
        expect(new Set([...l.evidence.map((e) => e.domain), l.domain]).size).toBe(j + 1);
        if (j > 0) expect(l.evidence.slice(0, j - 1)).toEqual(ch.leads[j - 1].evidence);
        expect(ch.text.slice(0, l.end).split('\n').length).toBeGreaterThan(j + 1);
      });
      expect(ch.leads[ch.leads.length - 1].end).toBe(ch.text.length);
      // Names from the held-out pool.
      const intro = ch.text.split('\n')[0];
      if (ch.subject !== 'assistant') expect(world.names.heldout.some((n) => intro.includes(n))).toBe(true);
    }
    // At k = 0 the target is the kind prior.
    const k0 = chains[0].leads[0];
    expect(archetypePosterior(world, k0.evidence, chains[0].kind).reduce((a, b) => a + b, 0)).toBeCloseTo(
      1,
      9,
    );
    expect(personaChains(world, 3, 5, 2).every((c) => c.leads.length === 3)).toBe(true);
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
