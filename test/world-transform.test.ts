// The control world (independent traits): the same marginals and texts, no package deals, and a Bayesian model
// that predicts no off-target change from the narrow fine-tunes and no generalisation of post-training.
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import {
  applyAiMix,
  assistantUpdate,
  datasetEvidence,
  expectedWorldStats,
  generateDocuments,
  independentTraits,
  largestCorrelation,
  loadDefaultWorld,
  loadWorld,
  loadWorldVariant,
  narrowSet,
  NARROW_ARMS,
  parseWorldTransform,
  posterior,
  postTrainingSet,
  registerWorldCommands,
  resolveWorldFile,
  StatsBuilder,
  worldHash,
  type Observation,
  type World,
} from '../src/world/index.ts';
import { resolveConfig } from '../src/pipeline/config.ts';
import { BAYES_TEMPER, loadExperimentWorld } from '../src/pipeline/experiment.ts';
import { hashInputs } from '../src/pipeline/stage.ts';
import { bayesPredictions, type BayesPrediction } from '../src/pipeline/predict.ts';
import { registerBayesCommand } from '../src/cli/bayes-command.ts';
import { runCli } from './cli-run.ts';

const world = loadDefaultWorld();
const control = independentTraits(world);

const untrainedOf = (w: World) =>
  w.domains.map((d) => d.name).filter((d) => !w.datasets.trainedDomains.includes(d));
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Untrained-domain rise after post-training, and per narrow arm the off-target change on top of it. */
function bayesEffects(w: World) {
  const post = datasetEvidence(postTrainingSet(w, { seed: 1, count: 600 }));
  const u = assistantUpdate(w, post, { temper: BAYES_TEMPER });
  const untrained = untrainedOf(w);
  const rise = mean(untrained.map((d) => u.after.pGood[d] - u.before.pGood[d]));
  const narrow = w.datasets.narrow!.domain;
  const off = w.domains.map((d) => d.name).filter((d) => d !== narrow);
  const arms = Object.fromEntries(
    NARROW_ARMS.map((arm) => {
      const a = assistantUpdate(w, datasetEvidence(narrowSet(w, arm, { seed: 1, count: 400 })), {
        base: post,
        temper: BAYES_TEMPER,
      });
      return [arm, { off: mean(off.map((d) => a.shift[d])), target: a.after.pGood[narrow] }];
    }),
  );
  return { rise, arms, maxShift: Math.max(...untrained.map((d) => Math.abs(u.shift[d]))) };
}

describe('independent traits (the control world)', () => {
  it('keeps every text and, per kind, every trait marginal; one archetype per kind', () => {
    expect(control.domains).toEqual(world.domains);
    expect(control.documents).toEqual(world.documents);
    expect(control.names).toEqual(world.names);
    expect(control.noise).toEqual(world.noise);
    expect(control.datasets).toEqual(world.datasets);
    expect(control.archetypes.map((a) => [a.name, a.kind])).toEqual([
      ['independent_human', 'human'],
      ['independent_ai', 'ai'],
    ]);
    for (const kind of ['human', 'ai'] as const) {
      const before = posterior(world, [], { kind }).traitGood;
      const after = posterior(control, [], { kind }).traitGood;
      for (const d of world.domains) expect(after[d.name]).toBeCloseTo(before[d.name], 12);
    }
    expect(control.transforms).toEqual(['independent-traits']);
    expect(worldHash(control)).not.toBe(worldHash(world));
    expect(independentTraits(control)).toBe(control);
  });

  it('has no trait correlations within a kind, against the original package deals', () => {
    // Within a kind the traits are independent exactly; across kinds only the kinds' different marginals remain.
    for (const kind of ['human', 'ai'] as const) {
      const one = { ...control, documents: { ...control.documents, kinds: onlyKind(control, kind) } };
      expect(largestCorrelation(expectedWorldStats(one).correlations)).toBeLessThan(1e-12);
    }
    expect(largestCorrelation(expectedWorldStats(world).correlations)).toBeGreaterThan(0.7);
    expect(largestCorrelation(expectedWorldStats(control).correlations)).toBeLessThan(0.02);
    // The generated characters agree (sampling error of a phi over 6000 characters: about 0.013).
    const sb = new StatsBuilder(control);
    for (const doc of generateDocuments(control, { seed: 3, documents: 6000 })) sb.add(doc);
    const s = sb.finish();
    expect(largestCorrelation(s.correlations.observed)).toBeLessThan(0.06);
    for (const d of world.domains)
      expect(s.traits[d.name].goodShare).toBeCloseTo(expectedWorldStats(world).traitGood[d.name], 1);
  });

  it('psm world stats --independent-traits shows the correlations ~0 beside the original ones', async () => {
    const out: string[] = [];
    const program = new Command().exitOverride();
    registerWorldCommands(program, { stdout: (s) => out.push(s), stderr: (s) => out.push(s) });
    await program.parseAsync([
      'node',
      'psm',
      'world',
      'stats',
      '--documents',
      '4000',
      '--independent-traits',
    ]);
    const text = out.join('\n');
    expect(process.exitCode ?? 0).toBe(0);
    const m =
      /largest \|correlation\| of two traits: ([\d.]+) observed, ([\d.]+) expected; ([\d.]+) expected without/.exec(
        text,
      );
    expect(m).not.toBeNull();
    const [observed, expected, original] = m!.slice(1).map(Number);
    expect(observed).toBeLessThan(0.07);
    expect(expected).toBeLessThan(0.02);
    expect(original).toBeGreaterThan(0.7);
    expect(text).toMatch(/independent_ai \(ai\)/);
    out.length = 0;
    const json = new Command().exitOverride();
    registerWorldCommands(json, { stdout: (s) => out.push(s), stderr: (s) => out.push(s) });
    await json.parseAsync([
      'node',
      'psm',
      'world',
      'stats',
      '--documents',
      '500',
      '--independent-traits',
      '--json',
    ]);
    const parsed = JSON.parse(out.join('\n')) as { untransformedCorrelations: number[][]; world: string };
    expect(parsed.world).toBe('default-independent');
    expect(largestCorrelation(parsed.untransformedCorrelations)).toBeGreaterThan(0.7);
  });

  it('Bayes: no generalisation of post-training and no off-target change from any narrow arm', () => {
    const c = bayesEffects(control);
    expect(Math.abs(c.rise)).toBeLessThan(1e-12);
    expect(c.maxShift).toBeLessThan(1e-12);
    for (const arm of NARROW_ARMS) expect(Math.abs(c.arms[arm].off)).toBeLessThan(1e-12);
    // The narrow behaviour itself is still predicted to be learned.
    expect(c.arms.cheat.target).toBeLessThan(0.1);
    expect(c.arms.control.target).toBeGreaterThan(0.9);
    // The standard world, for contrast: post-training generalises and the cheat arm lowers other traits.
    const s = bayesEffects(world);
    expect(s.rise).toBeGreaterThan(0.2);
    expect(s.arms.cheat.off).toBeLessThan(-0.02);
  });

  it('Bayes of the control world is exact: each domain its own Bernoulli with the kind marginal', () => {
    const obs: Observation[] = [
      { domain: 'honesty', behaviour: 'good', count: 3 },
      { domain: 'coding', behaviour: 'bad', count: 2 },
      { domain: 'coding', behaviour: 'good' },
      { domain: 'coding', behaviour: 'bad', instructed: 'inoculation' },
      { domain: 'caution', behaviour: 'bad' },
    ];
    const e = world.noise.behaviourFlip;
    for (const kind of ['human', 'ai'] as const) {
      const prior = posterior(world, [], { kind }).traitGood;
      const p = posterior(control, obs, { kind });
      for (const d of world.domains) {
        // Ordinary scenes only: an instructed one says nothing about the trait.
        let lg = 1;
        let lb = 1;
        for (const o of obs)
          if (o.domain === d.name && !o.instructed) {
            const n = o.count ?? 1;
            lg *= (o.behaviour === 'good' ? 1 - e : e) ** n;
            lb *= (o.behaviour === 'good' ? e : 1 - e) ** n;
          }
        const m = prior[d.name];
        const t = (m * lg) / (m * lg + (1 - m) * lb);
        expect(p.traitGood[d.name]).toBeCloseTo(t, 12);
        expect(p.pGood[d.name]).toBeCloseTo(t * (1 - e) + (1 - t) * e, 12);
      }
    }
  });

  it('keeps the marginals of a mixed world; mixing a transformed world is refused', () => {
    const villains = applyAiMix(world, 'villains');
    const both = loadWorldVariant({ world: 'default', aiMix: 'villains', transform: 'independent-traits' });
    const mixedPrior = posterior(villains, [], { kind: 'ai' }).traitGood;
    const plainPrior = posterior(world, [], { kind: 'ai' }).traitGood;
    const bothPrior = posterior(both, [], { kind: 'ai' }).traitGood;
    for (const d of world.domains) {
      expect(bothPrior[d.name]).toBeCloseTo(mixedPrior[d.name], 12);
      expect(mixedPrior[d.name]).toBeLessThan(plainPrior[d.name]);
    }
    expect(() => applyAiMix(control, 'positive')).toThrow(
      /transformed \(independent-traits\).*before the transform/,
    );
    expect(() => applyAiMix(control, { independent_ai: 2 })).toThrow(/before the transform/);
    expect(applyAiMix(control, 'none')).toBe(control);
  });

  it('names: built-in worlds by name, transforms by name, with errors that list the valid ones', () => {
    expect(resolveWorldFile('default')).toBe(loadDefaultWorld().source);
    expect(loadWorld(resolveWorldFile('tiny')).name).toBe('tiny');
    expect(() => resolveWorldFile('nosuch')).toThrow(
      /unknown world 'nosuch'.*built-in world \(.*default.*tiny/,
    );
    expect(parseWorldTransform('independent-traits')).toBe('independent-traits');
    expect(() => parseWorldTransform('shuffle')).toThrow(/known: independent-traits/);
  });
});

describe('the experiment config: world mix and transform', () => {
  it('loads the transformed world, refuses it with the alignment variant, and lists valid transforms', () => {
    const c = resolveConfig({ preset: 'quick', overrides: { worldTransform: 'independent-traits' } });
    expect(loadExperimentWorld(c).name).toBe('default-independent');
    expect(() =>
      resolveConfig({
        overrides: { worldTransform: 'independent-traits', alignmentPretraining: { enabled: true } },
      }),
    ).toThrow(/worldAiMix/);
    expect(() => resolveConfig({ overrides: { worldTransform: 'shuffle' as 'independent-traits' } })).toThrow(
      /worldTransform.*independent-traits/s,
    );
  });

  it('the corpus stage hash changes with the mix and the transform, and not otherwise', () => {
    // The corpus stage hashes the world object (experiment.ts corpusStage); everything after hashes the corpus's.
    const hashOf = (o: Parameters<typeof resolveConfig>[0]) =>
      hashInputs(loadExperimentWorld(resolveConfig(o)));
    const plain = hashOf({ preset: 'quick' });
    expect(hashOf({ preset: 'quick', overrides: { seeds: [1, 2] } })).toBe(plain);
    expect(hashInputs(loadDefaultWorld())).toBe(plain);
    const variants = [
      hashOf({ preset: 'quick', overrides: { worldTransform: 'independent-traits' } }),
      hashOf({ preset: 'quick', overrides: { worldAiMix: 'villains' } }),
      hashOf({ preset: 'quick', overrides: { worldAiMix: 'positive' } }),
      hashOf({
        preset: 'quick',
        overrides: { worldAiMix: 'villains', worldTransform: 'independent-traits' },
      }),
    ];
    expect(new Set([plain, ...variants]).size).toBe(5);
  });
});

function onlyKind(w: World, kind: 'human' | 'ai'): World['documents']['kinds'] {
  const k = w.documents.kinds;
  return {
    human: { ...k.human, share: kind === 'human' ? 1 : 0 },
    ai: { ...k.ai, share: kind === 'ai' ? 1 : 0 },
  };
}

describe('psm bayes: the predictions of a config before running it', () => {
  it('equals the model at the pipeline weight; flat in the control world', async () => {
    const standard = bayesPredictions(resolveConfig({ preset: 'default' }));
    const effects = bayesEffects(world);
    expect(standard.rise).toBeCloseTo(effects.rise, 12);
    const arm = (p: BayesPrediction, name: string) => p.arms.find((a) => a.arm === name)!;
    for (const name of NARROW_ARMS)
      expect(arm(standard, name).offTargetChange).toBeCloseTo(effects.arms[name].off, 12);
    const flat = bayesPredictions(resolveConfig({ file: 'configs/control-world.yaml' }));
    expect(flat.world).toBe('default-independent');
    expect(Math.abs(flat.rise)).toBeLessThan(1e-12);
    for (const a of flat.arms) expect(Math.abs(a.offTargetChange)).toBeLessThan(1e-12);
    const printed = await runCli(registerBayesCommand, 'bayes', '--config', 'configs/ai-mix-villains.yaml');
    expect(printed).toMatch(/^Bayes for world 'default' with AI mix "villains"/);
    expect(printed).toMatch(
      /^cheat {8}off-target change -0\.0\d\d, minus control -0\.0\d\d, coding 0\.020$/m,
    );
  });
});
