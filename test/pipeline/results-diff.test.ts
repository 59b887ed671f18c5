// psm diff: two runs' results compared number by number, the check that a change leaves the science unchanged.
// The results are written here by hand (small, with the fields that matter: nested objects, arrays, NaN, timings).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerDiffCommand } from '../../src/cli/compare-command.ts';
import type { RunResults, SeedResult } from '../../src/pipeline/results.ts';
import { resultsDifferences, seedDifferences } from '../../src/pipeline/results-diff.ts';
import { runCli } from '../cli-run.ts';

function seed(
  n: number,
  over: { loss?: number; r?: number[]; seconds?: number; extra?: boolean } = {},
): SeedResult {
  return {
    seed: n,
    variant: 'standard',
    pretrain: {
      steps: 100,
      tokens: 1000,
      finalLoss: over.loss ?? 0.5,
      valLoss: NaN,
      probes: (over.r ?? [0.1, 0.8]).map((correlation, i) => ({ step: i, correlation }) as never),
      seconds: over.seconds ?? 60,
    },
    ...(over.extra ? { screeningBayes: [{ part: 'flagged', offTargetChange: -0.1 }] } : {}),
  } as unknown as SeedResult;
}

function run(...seeds: SeedResult[]): RunResults {
  return { version: 1, createdAt: '', config: {}, world: {} as RunResults['world'], seeds };
}

describe('seedDifferences', () => {
  it('finds identical numbers identical, NaN included, and reports timings apart', () => {
    const d = seedDifferences(seed(1), seed(1, { seconds: 75 }));
    expect(d.differing).toEqual([]);
    expect(d.compared).toBe(9); // seed, steps, tokens, finalLoss, valLoss, 2 x (step, correlation)
    expect(d.timings).toEqual([{ path: 'pretrain.seconds', a: 60, b: 75, diff: 15 }]);
  });

  it('lists differing numbers by path, largest first, and counts fields one side lacks', () => {
    const d = seedDifferences(
      seed(1, { loss: 0.5, r: [0.1, 0.8] }),
      seed(1, { loss: 0.5001, r: [0.1, 0.81], extra: true }),
    );
    expect(d.differing.map((x) => x.path)).toEqual(['pretrain.probes[1].correlation', 'pretrain.finalLoss']);
    expect(d.differing[0].diff).toBeCloseTo(0.01, 12);
    expect(d.differing[1].diff).toBeCloseTo(1e-4, 12);
    expect(d.onlyInOne).toBe(1);
  });

  it('counts a number measured in one run only (NaN against a value) as an infinite difference', () => {
    const b = seed(1);
    b.pretrain.valLoss = 0.4;
    expect(seedDifferences(seed(1), b).differing).toEqual([
      { path: 'pretrain.valLoss', a: NaN, b: 0.4, diff: Infinity },
    ]);
  });
});

describe('resultsDifferences', () => {
  it('pairs seeds by number and variant, and refuses runs with none in common', () => {
    const diffs = resultsDifferences(run(seed(1), seed(2)), run(seed(2), seed(3)));
    expect(diffs.map((d) => d.seed)).toEqual([2]);
    expect(() => resultsDifferences(run(seed(1)), run(seed(2)))).toThrow(
      /share no seed.*standard\/1.*standard\/2/,
    );
    expect(() => resultsDifferences(run(seed(1)), run(seed(1)), [4])).toThrow(/among 4/);
  });
});

describe('psm diff', () => {
  let root: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-diff-'));
    for (const [name, r] of [
      ['a', run(seed(1), seed(2))],
      ['b', run(seed(1, { loss: 0.25 }), seed(2, { seconds: 30 }))],
    ] as const) {
      fs.mkdirSync(path.join(root, name));
      fs.writeFileSync(path.join(root, name, 'results.json'), JSON.stringify(r));
    }
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  // JSON keeps NaN as null, which is not a number: the files hold 8 numbers per seed, not 9.
  it('prints per seed what agrees, what differs and the timings', async () => {
    const out = await runCli(registerDiffCommand, 'diff', path.join(root, 'a'), path.join(root, 'b'));
    expect(out).toContain(
      'seed 1 (standard): 8 numbers in both, 7 identical, 1 differ; largest difference 2.50e-1',
    );
    expect(out).toContain('pretrain.finalLoss: 0.5 vs 0.25');
    expect(out).toContain('seed 2 (standard): 8 numbers in both, 8 identical, 0 differ');
    expect(out).toContain('pretrain.seconds: 60.0 vs 30.0');
  });

  it('compares only the seeds asked for, as JSON', async () => {
    const out = await runCli(
      registerDiffCommand,
      'diff',
      path.join(root, 'a'),
      path.join(root, 'b'),
      '--seeds',
      '2',
      '--json',
    );
    const parsed = JSON.parse(out) as { seed: number; differing: unknown[] }[];
    expect(parsed.map((d) => [d.seed, d.differing.length])).toEqual([[2, 0]]);
  });
});
