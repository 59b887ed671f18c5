// The second built-in world (a harbour town, flattery as the narrow domain): valid under the strict lints, every piece
// the default experiment needs, package deals as strong as the default world's, and non-trivial Bayes predictions.
import { describe, expect, it } from 'vitest';
import {
  assistantUpdate,
  builtinWorldNames,
  datasetEvidence,
  expectedWorldStats,
  getInstructedGroup,
  largestCorrelation,
  loadDefaultWorld,
  loadWorldVariant,
  narrowSet,
  NARROW_ARMS,
  postTrainingSet,
  resolveAiMix,
  type World,
} from '../src/world/index.ts';
import { resolveConfig } from '../src/pipeline/config.ts';
import { BAYES_TEMPER, loadExperimentWorld } from '../src/pipeline/experiment.ts';

const harbour = loadWorldVariant({ world: 'harbour' });
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function meanAbsCorrelation(w: World): number {
  const c = expectedWorldStats(w).correlations;
  return mean(c.flatMap((row, i) => row.filter((_, j) => j > i).map(Math.abs)));
}

/** Bayes at the experiment's evidence weight: post-training rise, and each arm's off-target change on top of it. */
function bayesEffects(w: World) {
  const post = datasetEvidence(postTrainingSet(w, { seed: 1, count: 600 }));
  const u = assistantUpdate(w, post, { temper: BAYES_TEMPER });
  const untrained = w.domains.map((d) => d.name).filter((d) => !w.datasets.trainedDomains.includes(d));
  const off = w.domains.map((d) => d.name).filter((d) => d !== w.datasets.narrow!.domain);
  const arms = Object.fromEntries(
    NARROW_ARMS.map((arm) => {
      const a = assistantUpdate(w, datasetEvidence(narrowSet(w, arm, { seed: 1, count: 400 })), {
        base: post,
        temper: BAYES_TEMPER,
      });
      return [arm, mean(off.map((d) => a.shift[d]))];
    }),
  );
  return { rise: mean(untrained.map((d) => u.shift[d])), arms };
}

describe('the harbour world', () => {
  it('is built in, loads with its strict lints clean, and has its own setting', () => {
    expect(builtinWorldNames()).toEqual(expect.arrayContaining(['default', 'harbour']));
    expect(harbour.warnings).toEqual([]);
    expect(harbour.lint).toMatchObject({ sharedPhrases: 'error', heldoutWords: 'error' });
    const def = loadDefaultWorld();
    const names = (w: World) => w.domains.map((d) => d.name);
    expect(names(harbour).filter((d) => names(def).includes(d))).toEqual([]);
    expect(harbour.names.train.filter((n) => def.names.train.includes(n))).toEqual([]);
  });

  it('has what the experiment needs: narrow arms, instructed groups, trained domains, AI mixes', () => {
    expect(harbour.datasets.narrow).toEqual({
      domain: 'feedback',
      inoculation: 'inoculation',
      educational: 'educational',
    });
    for (const g of ['inoculation', 'educational'])
      expect(getInstructedGroup(harbour, 'feedback', g).asks).toBe('bad');
    expect(harbour.datasets.trainedDomains).not.toContain('feedback');
    for (const arm of NARROW_ARMS) expect(narrowSet(harbour, arm, { count: 4 }).length).toBe(4);
    expect(Object.keys(resolveAiMix(harbour, 'villains')).length).toBeGreaterThan(0);
    expect(Object.keys(resolveAiMix(harbour, 'positive')).length).toBeGreaterThan(0);
    const config = resolveConfig({ file: 'configs/harbour.yaml' });
    expect(loadExperimentWorld(config).name).toBe('harbour');
  });

  it('has package deals as strong as the default world, and Bayes predicts the narrow arms non-trivially', () => {
    const def = loadDefaultWorld();
    expect(Math.abs(largestCorrelation(expectedWorldStats(harbour).correlations) - 0.81)).toBeLessThan(0.1);
    expect(Math.abs(meanAbsCorrelation(harbour) - meanAbsCorrelation(def))).toBeLessThan(0.05);
    const b = bayesEffects(harbour);
    expect(b.rise).toBeGreaterThan(0.15);
    expect(b.arms.cheat).toBeLessThan(-0.05);
    expect(b.arms.control).toBeGreaterThanOrEqual(0);
    expect(Math.abs(b.arms.inoculated)).toBeLessThan(1e-12);
    expect(Math.abs(b.arms.educational)).toBeLessThan(1e-12);
    // Its control world, like the default's, predicts nothing off target.
    const c = bayesEffects(loadWorldVariant({ world: 'harbour', transform: 'independent-traits' }));
    expect(Math.abs(c.rise)).toBeLessThan(1e-12);
    expect(Math.abs(c.arms.cheat)).toBeLessThan(1e-12);
  });
});
