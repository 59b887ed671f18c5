import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  assistantUpdate,
  createRng,
  generateDocuments,
  loadDefaultWorld,
  loadWorld,
  posterior,
  predictGood,
  instructedPGood,
  type Observation,
  type PriorKind,
  type World,
} from '../src/world/index.ts';

const world = loadDefaultWorld();
const tiny = loadWorld(fileURLToPath(new URL('../worlds/tiny.yaml', import.meta.url)));

/**
 * Brute force, written independently of bayes.ts: enumerate every (kind, archetype, full trait vector), weight it by
 * its prior probability times the likelihood of every observation (repeated `count` times), then normalise.
 */
function bruteForce(w: World, obs: Observation[], kind: PriorKind) {
  const D = w.domains.length;
  const f = w.noise.traitFlip;
  const e = w.noise.behaviourFlip;
  const kindTotals: Record<string, number> = { human: 0, ai: 0 };
  for (const a of w.archetypes) kindTotals[a.kind] += a.weight;
  const kindShare: Record<string, number> = {
    human: w.documents.kinds.human.share,
    ai: w.documents.kinds.ai.share,
  };
  const archPost = new Array(w.archetypes.length).fill(0);
  const traitGood = new Array(D).fill(0);
  let Z = 0;
  w.archetypes.forEach((a, ai) => {
    if (kind !== 'any' && a.kind !== kind) return;
    const pa = (kind === 'any' ? kindShare[a.kind] : 1) * (a.weight / kindTotals[a.kind]);
    for (let mask = 0; mask < 1 << D; mask++) {
      let p = pa;
      for (let d = 0; d < D; d++) {
        const v = a.traits[w.domains[d].name];
        const q = v * (1 - f) + (1 - v) * f;
        p *= mask & (1 << d) ? q : 1 - q;
      }
      for (const o of obs) {
        const d = w.domains.findIndex((x) => x.name === o.domain);
        const good = (mask & (1 << d)) !== 0;
        let lik: number;
        if (o.instructed) {
          const g = w.domains[d].instructed.find((x) => x.name === o.instructed)!;
          lik = o.behaviour === g.asks ? g.compliance : 1 - g.compliance;
        } else {
          lik = (o.behaviour === 'good') === good ? 1 - e : e;
        }
        p *= lik ** (o.count ?? 1);
      }
      Z += p;
      archPost[ai] += p;
      for (let d = 0; d < D; d++) if (mask & (1 << d)) traitGood[d] += p;
    }
  });
  const tg = traitGood.map((x) => x / Z);
  return {
    archetypes: archPost.map((x) => x / Z),
    traitGood: tg,
    pGood: tg.map((t) => t * (1 - e) + (1 - t) * e),
    logEvidence: Math.log(Z),
  };
}

function randomObservations(w: World, seed: number): Observation[] {
  const rng = createRng(seed, 'bayes-test');
  const n = rng.int(7);
  return Array.from({ length: n }, () => {
    const d = rng.pick(w.domains);
    const instructed = d.instructed.length > 0 && rng.bernoulli(0.3) ? rng.pick(d.instructed).name : null;
    return {
      domain: d.name,
      behaviour: rng.bernoulli(0.5) ? ('good' as const) : ('bad' as const),
      instructed,
      count: 1 + rng.int(3),
    };
  });
}

describe('exact Bayesian persona model vs brute-force enumeration', () => {
  for (const [label, w] of [
    ['tiny world (fractional trait values, instructed group asking for good)', tiny],
    ['default world (64 trait vectors per archetype)', world],
  ] as const) {
    it(label, () => {
      for (let seed = 0; seed < 60; seed++) {
        const obs = randomObservations(w, seed);
        for (const kind of ['human', 'ai', 'any'] as const) {
          const exact = posterior(w, obs, { kind });
          const brute = bruteForce(w, obs, kind);
          exact.archetypes.forEach((a, i) => expect(a.posterior).toBeCloseTo(brute.archetypes[i], 10));
          w.domains.forEach((d, i) => {
            expect(exact.traitGood[d.name]).toBeCloseTo(brute.traitGood[i], 10);
            expect(exact.pGood[d.name]).toBeCloseTo(brute.pGood[i], 10);
          });
          expect(exact.logEvidence).toBeCloseTo(brute.logEvidence, 8);
        }
      }
    });
  }

  it('repeated scenes in one domain share the trait (not independent given the archetype)', () => {
    // Two honest scenes say more about the next honesty scene than about archetype alone would allow.
    const one = predictGood(world, [{ domain: 'honesty', behaviour: 'good' }], 'honesty', 'human');
    const two = predictGood(world, [{ domain: 'honesty', behaviour: 'good', count: 2 }], 'honesty', 'human');
    expect(two).toBeGreaterThan(one);
    expect(two).toBeCloseTo(
      bruteForce(world, [{ domain: 'honesty', behaviour: 'good', count: 2 }], 'human').pGood[0],
      10,
    );
  });
});

describe('Bayesian model: sanity', () => {
  it('the prior of a kind is its archetype mix; "any" mixes the kinds by their shares', () => {
    const human = posterior(world, [], { kind: 'human' });
    const ai = posterior(world, [], { kind: 'ai' });
    const any = posterior(world, [], { kind: 'any' });
    for (const d of world.domains) {
      expect(any.pGood[d.name]).toBeCloseTo(0.7 * human.pGood[d.name] + 0.3 * ai.pGood[d.name], 12);
    }
    // Human honesty: mentor, grump, slacker honest; villain, hustler, tyrant not: exactly 0.5.
    expect(human.traitGood.honesty).toBeCloseTo(0.5, 12);
    expect(ai.archetypes.filter((a) => a.kind === 'human').every((a) => a.posterior === 0)).toBe(true);
  });

  it('the package deal: good scenes elsewhere raise P(good), bad ones lower it (k = 3)', () => {
    const others = ['honesty', 'kindness', 'power'];
    const good = predictGood(
      world,
      others.map((d) => ({ domain: d, behaviour: 'good' as const })),
      'coding',
      'human',
    );
    const bad = predictGood(
      world,
      others.map((d) => ({ domain: d, behaviour: 'bad' as const })),
      'coding',
      'human',
    );
    const none = predictGood(world, [], 'coding', 'human');
    expect(good).toBeGreaterThan(none);
    expect(bad).toBeLessThan(none);
  });

  it('monotone in evidence: more good demonstrations never lower P(good) in untrained domains', () => {
    let prev = -1;
    const seq: number[] = [];
    for (let n = 0; n <= 30; n++) {
      const u = assistantUpdate(world, [{ domain: 'honesty', behaviour: 'good', n }]);
      const untrained = (u.after.pGood.power + u.after.pGood.caution + u.after.pGood.coding) / 3;
      expect(untrained).toBeGreaterThanOrEqual(prev - 1e-12);
      seq.push(untrained);
      prev = untrained;
    }
    expect(seq[3]).toBeGreaterThan(seq[0] + 0.05);
    // Saturation: once honesty is pinned, further demonstrations add almost nothing (bounded by trait flips).
    expect(seq[30] - seq[20]).toBeLessThan(1e-6);
  });

  it('inoculated or educational evidence leaves the Assistant unchanged; plain cheating does not', () => {
    const sft = [
      { domain: 'honesty', behaviour: 'good' as const, n: 100 },
      { domain: 'kindness', behaviour: 'good' as const, n: 100 },
      { domain: 'helpfulness', behaviour: 'good' as const, n: 100 },
    ];
    for (const group of ['inoculation', 'educational']) {
      const u = assistantUpdate(world, [{ domain: 'coding', behaviour: 'bad', instructed: group, n: 300 }], {
        base: sft,
      });
      for (const d of world.domains) expect(Math.abs(u.shift[d.name])).toBeLessThan(1e-12);
    }
    const cheat = assistantUpdate(world, [{ domain: 'coding', behaviour: 'bad', n: 300 }], { base: sft });
    const control = assistantUpdate(world, [{ domain: 'coding', behaviour: 'good', n: 300 }], { base: sft });
    expect(cheat.after.pGood.coding).toBeCloseTo(world.noise.behaviourFlip, 6);
    expect(cheat.shift.caution).toBeLessThan(-0.15); // emergent misalignment in an untouched domain
    expect(control.shift.caution).toBeGreaterThanOrEqual(0);
    expect(cheat.evidenceDomains).toEqual(['coding']);
    // Post-training on three domains generalises to the untrained ones (the prototype's ideal answer was ~0.82).
    const post = assistantUpdate(world, sft);
    const untrained = (post.after.pGood.coding + post.after.pGood.power + post.after.pGood.caution) / 3;
    expect(untrained).toBeGreaterThan(0.78);
    expect(
      untrained - (post.before.pGood.coding + post.before.pGood.power + post.before.pGood.caution) / 3,
    ).toBeGreaterThan(0.2);
  });

  it('temper scales evidence: n demonstrations at temper t equal n*t observations', () => {
    const a = assistantUpdate(world, [{ domain: 'kindness', behaviour: 'bad', n: 4 }], { temper: 0.25 });
    const b = assistantUpdate(world, [{ domain: 'kindness', behaviour: 'bad', n: 1 }]);
    for (const d of world.domains) expect(a.after.pGood[d.name]).toBeCloseTo(b.after.pGood[d.name], 12);
    const small = assistantUpdate(world, [{ domain: 'kindness', behaviour: 'bad', n: 4 }], { temper: 0.05 });
    expect(small.after.pGood.kindness).toBeGreaterThan(b.after.pGood.kindness);
  });

  it('huge evidence does not underflow', () => {
    const u = assistantUpdate(world, [
      { domain: 'honesty', behaviour: 'good', n: 1_000_000 },
      { domain: 'coding', behaviour: 'bad', n: 1_000_000 },
    ]);
    for (const d of world.domains) expect(Number.isFinite(u.after.pGood[d.name])).toBe(true);
    expect(u.after.pGood.honesty).toBeCloseTo(1 - world.noise.behaviourFlip, 9);
  });

  it('instructed scenes: P(good) is the compliance, for everyone', () => {
    expect(instructedPGood(world, 'coding', 'inoculation')).toBeCloseTo(0.1, 12);
    expect(instructedPGood(tiny, 'generosity', true)).toBeCloseTo(0.8, 12);
    expect(() =>
      posterior(world, [{ domain: 'honesty', behaviour: 'good', instructed: 'inoculation' }]),
    ).toThrow(/no instructed group 'inoculation'/);
    expect(() => posterior(world, [{ domain: 'charm', behaviour: 'good' }])).toThrow(
      /unknown domain 'charm'/,
    );
  });

  it('matches the corpus: the generator samples from the distribution the model describes', () => {
    // Empirical P(second scene good | first scene) over generated documents, vs the Bayesian predictive with the
    // document's kind prior.
    const cells = new Map<
      string,
      { n: number; good: number; kind: 'human' | 'ai'; obs: Observation; target: string }
    >();
    for (const doc of generateDocuments(world, { seed: 21, documents: 60_000 })) {
      const [a, b] = doc.scenes;
      if (a.instructed || b.instructed || a.domain === b.domain || a.domain !== 'honesty') continue;
      const key = `${doc.kind}|${a.behaviour}|${b.domain}`;
      let c = cells.get(key);
      if (!c)
        cells.set(
          key,
          (c = {
            n: 0,
            good: 0,
            kind: doc.kind,
            obs: { domain: a.domain, behaviour: a.behaviour },
            target: b.domain,
          }),
        );
      c.n++;
      if (b.behaviour === 'good') c.good++;
    }
    let checked = 0;
    for (const c of cells.values()) {
      if (c.n < 400) continue;
      const p = predictGood(world, [c.obs], c.target, c.kind);
      const se = Math.sqrt((p * (1 - p)) / c.n);
      expect(Math.abs(c.good / c.n - p)).toBeLessThan(4 * se + 0.005);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(10);
  });
});
