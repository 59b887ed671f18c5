import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  batteryItems,
  buildEvalSet,
  inferenceProbes,
  packageProbes,
  generateDocuments,
  loadDefaultWorld,
  loadWorld,
  meanCI,
  narrowSet,
  pGoodFromLogProbs,
  posterior,
  postTrainingSet,
  NARROW_ARMS,
  type EvalItem,
  type World,
} from '../src/world/index.ts';

const world = loadDefaultWorld();
const tiny = loadWorld(fileURLToPath(new URL('../worlds/tiny.yaml', import.meta.url)));
const evalSet = buildEvalSet(world, { seed: 0 });

function templateRegex(source: string): RegExp {
  const parts = source.split(/\{[A-Za-z_]+\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(parts.join('[A-Z][a-z]+'));
}

/** Templates of the held-out and training pools of every domain. */
function pools(w: World) {
  return w.domains.map((d) => ({
    domain: d.name,
    heldout: [
      ...d.story.contexts.slice(d.story.trainContexts),
      ...d.chat.requests.slice(d.chat.trainRequests),
    ],
    train: [
      ...d.story.contexts.slice(0, d.story.trainContexts),
      ...d.chat.requests.slice(0, d.chat.trainRequests),
    ],
  }));
}

describe('evaluation items: counts', () => {
  it('the trait battery has 400 distinct items per domain and format (95% CI half-width < 0.05)', () => {
    expect(evalSet.warnings).toEqual([]);
    for (const d of world.domains) {
      for (const format of ['chat', 'story'] as const) {
        const items = evalSet.battery.filter((i) => i.domain === d.name && i.format === format);
        expect(items).toHaveLength(400);
        expect(new Set(items.map((i) => i.prompt)).size).toBe(400);
      }
    }
    // Worst case for a fixed model: P(good) is 0 on half the items and 1 on the other half (sd = 0.5).
    const worst = Array.from({ length: 400 }, (_, i) => i % 2);
    expect(meanCI(worst).halfWidth).toBeLessThan(0.05);
  });

  it('inference probes cover k = 0..5 for every target domain; package probes every domain and valence', () => {
    expect(evalSet.inference).toHaveLength(6 * 6 * 50);
    expect(evalSet.package).toHaveLength(6 * 2 * 100);
    for (const item of evalSet.inference) {
      expect(item.evidence).toHaveLength(item.k);
      const domains = item.evidence.map((e) => e.domain);
      expect(domains).not.toContain(item.domain);
      expect(new Set(domains).size).toBe(domains.length);
    }
    for (const item of evalSet.package) {
      expect(item.evidence).toHaveLength(3);
      expect(item.evidence.every((e) => e.behaviour === item.valence && e.domain !== item.domain)).toBe(true);
    }
  });

  it('warns when the held-out pools cannot make enough distinct items', () => {
    const warnings: string[] = [];
    const items = batteryItems(tiny, { batteryPerDomain: 50, batteryFormats: ['chat'] }, warnings);
    // tiny: one held-out request per domain, 4 held-out names, one assistant intro: at most 4 distinct prompts.
    expect(items.filter((i) => i.domain === 'bravery')).toHaveLength(4);
    expect(warnings[0]).toMatch(/battery bravery\/chat: only 4 distinct items \(asked for 50\)/);
  });
});

describe('evaluation items: format and Bayesian answers', () => {
  it('prompt + option is document text: chat prompts end with "Assistant:", options start with a space', () => {
    for (const item of [...evalSet.battery, ...evalSet.inference.slice(0, 500)]) {
      const d = world.domains.find((x) => x.name === item.domain)!;
      expect(item.good).toHaveLength((item.format === 'chat' ? d.chat.good : d.story.good).length);
      expect([...item.good, ...item.bad].every((o) => o.startsWith(' ') && !o.includes('{'))).toBe(true);
      if (item.format === 'chat') expect(item.prompt.endsWith('\nAssistant:')).toBe(true);
      expect(item.prompt).not.toMatch(/[{}]/);
    }
    const chat = evalSet.battery.find((i) => i.format === 'chat')!;
    expect(chat.subject).toBe('assistant');
    expect(world.documents.assistantIntros).toContain(chat.prompt.split('\n')[0]);
  });

  it('each item carries the exact Bayesian answer for its evidence and subject', () => {
    for (const item of [
      ...evalSet.inference.filter((_, i) => i % 7 === 0),
      ...evalSet.package.filter((_, i) => i % 5 === 0),
    ]) {
      const kind = item.subject === 'human' ? 'human' : 'ai';
      expect(item.bayesPGood).toBeCloseTo(posterior(world, item.evidence, { kind }).pGood[item.domain], 12);
    }
    for (const item of evalSet.inference) {
      expect(item.consistent).toBe(item.character!.traits[item.domain]);
      expect(item.bayesPConsistent).toBeCloseTo(
        item.consistent === 'good' ? item.bayesPGood : 1 - item.bayesPGood,
        12,
      );
    }
    // Package deal: all-good evidence gives a higher Bayesian P(good) than all-bad, in every domain.
    for (const d of world.domains) {
      const mean = (v: 'good' | 'bad') => {
        const xs = evalSet.package
          .filter((i) => i.domain === d.name && i.valence === v)
          .map((i) => i.bayesPGood);
        return xs.reduce((s, x) => s + x, 0) / xs.length;
      };
      expect(mean('good')).toBeGreaterThan(mean('bad') + 0.1);
    }
    // Inference gets easier with more scenes: the mean Bayesian P(consistent) grows with k.
    const byK = [0, 5].map((k) => {
      const xs = evalSet.inference.filter((i) => i.k === k).map((i) => i.bayesPConsistent!);
      return xs.reduce((s, x) => s + x, 0) / xs.length;
    });
    expect(byK[1]).toBeGreaterThan(byK[0] + 0.1);
  });

  it('is deterministic in its seed', () => {
    const again = buildEvalSet(world, {
      seed: 0,
      batteryPerDomain: 20,
      inferencePerCell: 3,
      packagePerCell: 3,
    });
    const same = buildEvalSet(world, {
      seed: 0,
      batteryPerDomain: 20,
      inferencePerCell: 3,
      packagePerCell: 3,
    });
    const other = buildEvalSet(world, {
      seed: 1,
      batteryPerDomain: 20,
      inferencePerCell: 3,
      packagePerCell: 3,
    });
    expect(JSON.stringify(same)).toBe(JSON.stringify(again));
    expect(other.inference.map((i) => i.prompt)).not.toEqual(again.inference.map((i) => i.prompt));
  });

  it('scores: P(good) sums probability over wordings and normalises good against bad', () => {
    expect(pGoodFromLogProbs([Math.log(0.2), Math.log(0.1)], [Math.log(0.1)])).toBeCloseTo(0.75, 12);
    expect(pGoodFromLogProbs([-1000], [-1000, -1000])).toBeCloseTo(1 / 3, 12);
    expect(() => pGoodFromLogProbs([], [0])).toThrow();
    const ci = meanCI([0.2, 0.4, 0.6, 0.8]);
    expect(ci.mean).toBeCloseTo(0.5, 12);
    expect(ci.halfWidth).toBeCloseTo((1.96 * Math.sqrt(0.2 / 3)) / 2, 12);
  });
});

describe('evaluation items are held out from all training text', () => {
  const corpus = [...generateDocuments(world, { seed: 0, documents: 12_000 })].map((d) => d.text).join('\n');
  const corpusLines = new Set(corpus.split('\n'));
  const training = [
    ...postTrainingSet(world, { count: 2000 }),
    ...postTrainingSet(world, { count: 2000, behaviour: 'bad', domains: world.domains.map((d) => d.name) }),
    ...NARROW_ARMS.flatMap((arm) => narrowSet(world, arm, { count: 500 })),
  ].map((e) => e.prompt + e.response);
  const trainingText = corpus + '\n' + training.join('\n');

  it('no evaluation prompt, and no line of one, appears in the corpus or the post-training data', () => {
    // A substring search over the whole training text per item is slow; every 4th item keeps this test fast, and
    // the template-level test below covers every held-out context.
    const all = [...evalSet.battery, ...evalSet.inference, ...evalSet.package].filter((_, i) => i % 4 === 0);
    for (const item of all) {
      expect(trainingText.includes(item.prompt)).toBe(false);
      const lines = item.prompt.split('\n');
      const target =
        lines[lines.length - 1] === 'Assistant:' ? lines[lines.length - 2] : lines[lines.length - 1];
      expect(corpusLines.has(target)).toBe(false);
    }
  });

  it('held-out contexts and requests never occur in training text, training ones do', () => {
    for (const p of pools(world)) {
      for (const t of p.heldout) expect(templateRegex(t).test(trainingText)).toBe(false);
      for (const t of p.train) expect(templateRegex(t).test(trainingText)).toBe(true);
    }
  });

  it('diagnostic pools: training contexts or training names on request, the same draws otherwise', () => {
    const trainCtx = inferenceProbes(world, { seed: 0, inferencePerCell: 3, pools: { contexts: 'train' } });
    const heldout = inferenceProbes(world, { seed: 0, inferencePerCell: 3 });
    const heldoutNames = new Set(world.names.heldout);
    const lastLine = (it: EvalItem) =>
      it.prompt
        .split('\n')
        .filter((l) => l !== 'Assistant:')
        .at(-1)!;
    for (const [i, item] of trainCtx.entries()) {
      // Same character, subject and evidence; only the context pool differs.
      expect(item.character).toEqual(heldout[i].character);
      expect(item.evidence).toEqual(heldout[i].evidence);
      if (item.character?.name) expect(heldoutNames.has(item.character.name)).toBe(true);
      const d = world.domains.find((x) => x.name === item.domain)!;
      const train =
        item.format === 'story'
          ? d.story.contexts.slice(0, d.story.trainContexts)
          : d.chat.requests.slice(0, d.chat.trainRequests);
      expect(train.some((t) => templateRegex(t).test(lastLine(item)))).toBe(true);
    }
    const trainNames = packageProbes(world, { seed: 0, packagePerCell: 3, pools: { names: 'train' } });
    const named = trainNames.filter((it) => it.subject !== 'assistant');
    expect(named.length).toBeGreaterThan(0);
    for (const item of named)
      expect(world.names.train).toContain(
        item.prompt.match(/\b[A-Z][a-z]+\b/g)!.find((w) => world.names.train.includes(w)),
      );
  });

  it('held-out names never occur in training text; evaluation characters use only held-out names', () => {
    const words = new Set(trainingText.split(/[^A-Za-z]+/));
    expect(world.names.heldout.filter((n) => words.has(n))).toEqual([]);
    const heldout = new Set(world.names.heldout);
    for (const item of [...evalSet.inference, ...evalSet.package]) {
      if (item.character) expect(item.character.name === null || heldout.has(item.character.name)).toBe(true);
      const names = item.prompt.match(/\b[A-Z][a-z]+\b/g)!.filter((w) => world.names.train.includes(w));
      expect(names).toEqual([]);
    }
  });
});
