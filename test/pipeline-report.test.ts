/**
 * The report's pooling over seeds of preventative trials (the preventative goal: per-seed reductions, the reduction of the
 * summed drops, and which methods count, only those that ran in every seed) and of data screening.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compile } from 'vega-lite';
import { describe, expect, it } from 'vitest';
import { pearson } from '../src/measurement/stats.ts';
import { registerRunCommands } from '../src/cli/run-commands.ts';
import { runCli } from './cli-run.ts';
import type { InterpretSummary, PreventativeTrial, ScreeningTrial } from '../src/interpret/index.ts';
import {
  aggregatePreventative,
  aggregateScreening,
  screeningFigure,
  preventativeTable,
  screeningLines,
  preventativeGoal,
  preventativeKey,
  preventativeTrialsOf,
  prose,
} from '../src/pipeline/report.ts';

function trial(
  method: PreventativeTrial['method'],
  plain: number,
  steered: number,
  target: number,
  subspace?: string,
): PreventativeTrial {
  return {
    method,
    ...(subspace ? { subspace } : {}),
    vector: 'v',
    layers: method === 'add' ? [2] : [0, 1, 2, 3],
    alpha: method === 'add' ? 4 : null,
    before: {},
    plain: {},
    steered: {},
    offTargetDrop: { plain, steered },
    target: { before: 0.7, plain: 0.01, steered: target },
    reduction: 1 - steered / plain,
  };
}

describe('report prose', () => {
  it('fills each slot of a sentence in one pass, and names a slot it was not given', () => {
    expect(prose('goalBDetail', { rise: '0.20 ± 0.05', seeds: 3, bayesRise: '0.30' })).toBe(
      'rise 0.20 ± 0.05 over 3 seed(s) (Bayes 0.30)',
    );
    // A filled value is not read again for slots.
    expect(prose('goalCInoculated', { inoculated: '{x}' })).toBe(', inoculated {x}');
    expect(() => prose('goalBDetail', { rise: '0.20', seeds: 3 })).toThrow(
      /report prose "goalBDetail": no value for \{bayesRise\}/,
    );
  });
});

describe('aggregatePreventative', () => {
  it('pools the reductions over seeds, per method, and weights seeds by their drop in the pooled ratio', () => {
    const [ablate, add] = aggregatePreventative([
      { seed: 1, trials: [trial('ablate', -0.3, -0.1, 0.01), trial('add', -0.3, -0.2, 0.01)] },
      // A seed the fine-tune barely moved: its own ratio is arbitrary, the pooled one hardly notices it.
      { seed: 2, trials: [trial('add', -0.05, -0.05, 0.02), trial('ablate', -0.05, -0.07, 0.02)] },
    ]);
    expect(ablate.method).toBe('ablate');
    // Trials from before interpretation version 15 name no subspace: they ablated the traits' vectors.
    expect(ablate.key).toBe('ablate/traits');
    expect(ablate.bySeed.map((b) => b.reduction)).toEqual([1 - 0.1 / 0.3, 1 - 0.07 / 0.05]);
    expect(ablate.reduction.mean).toBeCloseTo((2 / 3 - 0.4) / 2, 9);
    expect(ablate.pooled).toBeCloseTo(1 - 0.17 / 0.35, 9);
    expect(ablate.bySeed[0].layers).toEqual([0, 1, 2, 3]);
    expect(ablate.targetLearned).toBe(true);
    expect(add.method).toBe('add');
    expect(add.pooled).toBeCloseTo(1 - 0.25 / 0.35, 9);
  });

  it('reads a reduction saved as null (NaN in JSON) as no number, not as 0', () => {
    const undefinedRatio = trial('ablate', 0, 0, 0.01);
    const saved = JSON.parse(JSON.stringify([{ seed: 1, trials: [undefinedRatio] }])) as {
      seed: number;
      trials: PreventativeTrial[];
    }[];
    expect(saved[0].trials[0].reduction).toBeNull();
    const [ablate] = aggregatePreventative(saved);
    expect(ablate.bySeed[0].reduction).toBeNaN();
    expect(ablate.reduction.mean).toBeNaN();
  });

  it('leaves out a method some seed did not run, and says when the narrow behaviour was not learned', () => {
    const out = aggregatePreventative([
      { seed: 1, trials: [trial('ablate', -0.3, -0.1, 0.6), trial('add', -0.3, -0.2, 0.01)] },
      { seed: 2, trials: [trial('ablate', -0.2, -0.1, 0.01)] },
      { seed: 3, trials: null },
    ]);
    expect(out).toEqual([]);
    const [only] = aggregatePreventative([{ seed: 1, trials: [trial('ablate', -0.3, -0.1, 0.6)] }]);
    expect(only.targetLearned).toBe(false);
  });

  it('keeps each ablated subspace apart, the whole trait subspace first and the random control after', () => {
    const seedTrials = (k: number) => [
      trial('add', -0.3, -0.2, 0.01),
      trial('ablate', -0.3, -0.25, 0.01, 'random'),
      trial('ablate', -0.3, -0.1 * k, 0.01, 'traits'),
      trial('ablate', -0.3, -0.05, 0.01, 'shift'),
      trial('ablate', -0.3, -0.02, 0.01, 'traits-whole'),
    ];
    const out = aggregatePreventative([
      { seed: 1, trials: seedTrials(1) },
      { seed: 2, trials: seedTrials(2) },
    ]);
    expect(out.map((p) => p.key)).toEqual([
      'ablate/traits-whole',
      'ablate/shift',
      'ablate/traits',
      'ablate/random',
      'add',
    ]);
    expect(out[1].pooled).toBeCloseTo(1 - 0.1 / 0.6, 9);
    expect(out[2].bySeed.map((b) => b.reduction)).toEqual([1 - 0.1 / 0.3, 1 - 0.2 / 0.3]);
    // The goal is read on the whole trait subspace; on runs from before it, on the shift (version 15), then on the
    // trait vectors orthogonal to the fine-tune domain's; else on what ran.
    expect(preventativeGoal(out)?.key).toBe('ablate/traits-whole');
    expect(preventativeGoal(out.slice(1))?.key).toBe('ablate/shift');
    expect(preventativeGoal(out.slice(2))?.key).toBe('ablate/traits');
    expect(preventativeGoal(out.slice(4))?.key).toBe('add');
    expect(preventativeGoal([])).toBeUndefined();
    expect(preventativeKey({ method: 'ablate' })).toBe('ablate/traits');
    expect(preventativeKey({ method: 'add' })).toBe('add');
  });

  it('averages where each trial left the Assistant on the assistant axis, when every seed recorded it', () => {
    const placed = (plainAxis: number, steeredAxis: number) => ({
      ...trial('ablate', -0.3, -0.05, 0.01, 'traits-whole'),
      axis: { before: 1, plain: plainAxis, steered: steeredAxis },
    });
    const [both] = aggregatePreventative([
      { seed: 1, trials: [placed(0.1, 0.9)] },
      { seed: 2, trials: [placed(0.3, 0.95)] },
    ]);
    expect(both.axis!.plain.mean).toBeCloseTo(0.2, 12);
    expect(both.axis!.steered.mean).toBeCloseTo(0.925, 12);
    const [one] = aggregatePreventative([
      { seed: 1, trials: [placed(0.1, 0.9)] },
      { seed: 2, trials: [trial('ablate', -0.3, -0.05, 0.01, 'traits-whole')] },
    ]);
    expect(one.axis).toBeNull();
  });

  it('tabulates each intervention over seeds, with the axis column only when some seed recorded it', () => {
    const placed = {
      ...trial('ablate', -0.3, -0.05, 0.01, 'traits-whole'),
      axis: { before: 1, plain: 0.1, steered: 0.9 },
    };
    const rows = preventativeTable(
      aggregatePreventative([
        { seed: 1, trials: [placed, trial('add', -0.3, -0.2, 0.01)] },
        {
          seed: 2,
          trials: [
            { ...placed, axis: { before: 1, plain: 0.3, steered: 0.95 } },
            trial('add', -0.1, -0.1, 0.5),
          ],
        },
      ]),
    );
    expect(rows[2]).toMatch(/\| assistant axis with it \(without\) \|$/);
    expect(rows).toContain(
      '| concept ablation of the off-target persona subspace, whole | 0.83 / 0.83 | 0.83 ± 0.00 | 0.83 | yes | 0.93 (0.20) |',
    );
    expect(rows.at(-1)).toMatch(
      /^\| adding the off-target persona vector \| 0\.33 \/ 0\.00 \| .* \| no \| - \|$/,
    );
    const noAxis = preventativeTable(
      aggregatePreventative([{ seed: 1, trials: [trial('add', -0.3, -0.2, 0.01)] }]),
    );
    expect(noAxis[2]).toMatch(/narrow behaviour learned in every seed \|$/);
  });

  it('reads the single additive trial that interpretations before version 11 recorded', () => {
    const { method: _m, layers: _l, ...old } = trial('add', -0.3, -0.1, 0.01);
    const summary = (preventative: unknown) => ({ preventative }) as unknown as InterpretSummary;
    expect(preventativeTrialsOf(summary({ ...old, layer: 3 }))).toEqual([
      { ...old, method: 'add', layers: [3] },
    ]);
    const now = [trial('ablate', -0.3, -0.1, 0.01, 'shift')];
    expect(preventativeTrialsOf(summary(now))).toBe(now);
    expect(preventativeTrialsOf(summary(null))).toEqual([]);
    expect(preventativeTrialsOf(undefined)).toEqual([]);
    const [agg] = aggregatePreventative([
      { seed: 1, trials: preventativeTrialsOf(summary({ ...old, layer: 3 })) },
    ]);
    expect(agg.key).toBe('add');
    expect(agg.bySeed).toEqual([{ seed: 1, layers: [3], reduction: 1 - 0.1 / 0.3 }]);
  });
});

describe('aggregateScreening', () => {
  const trialOf = (
    flagged: number,
    random: number,
    unflagged: number,
    cheatFlagged: number,
  ): ScreeningTrial => {
    const part = (name: 'flagged' | 'random' | 'unflagged', change: number, cheat: number) => ({
      name,
      indices: [],
      sources: { cheat, control: 4 - cheat },
      meanScore: 0,
      after: {},
      offTargetChange: change,
      target: 0.1,
      finalLoss: 1,
    });
    return {
      vector: 'mean off-target persona',
      hook: 'blocks.2.hook_resid_post',
      layer: 2,
      pool: 8,
      count: 4,
      sources: [
        { source: 'cheat', n: 4, meanScore: 1.5, auc: 0.9 },
        { source: 'control', n: 4, meanScore: -0.5, auc: 0.1 },
      ],
      before: {},
      targetDomain: 'coding',
      subsets: [
        part('flagged', flagged, cheatFlagged),
        part('random', random, 2),
        part('unflagged', unflagged, 4 - cheatFlagged),
      ],
    };
  };
  const summary = (auc: number, trial?: ScreeningTrial) =>
    ({
      screening: [{ trait: 'honesty', auc, topShareCheat: 0.5 }],
      ...(trial ? { screeningTrial: trial } : {}),
    }) as unknown as InterpretSummary;

  it('pools the per-trait AUCs and the trial over seeds, and counts the seeds the flagged part hurt most', () => {
    const bayes = (flagged: number, random: number, unflagged: number) => [
      { part: 'flagged', offTargetChange: flagged },
      { part: 'random', offTargetChange: random },
      { part: 'unflagged', offTargetChange: unflagged },
    ];
    const agg = aggregateScreening([
      { interpret: summary(0.8, trialOf(-0.2, -0.1, 0.0, 4)), screeningBayes: bayes(-0.3, -0.1, 0) },
      { interpret: summary(0.6, trialOf(-0.05, -0.1, 0.01, 3)), screeningBayes: bayes(-0.2, -0.1, 0) },
      {},
    ])!;
    expect(agg.aucByTrait[0].trait).toBe('honesty');
    expect(agg.aucByTrait[0].auc.mean).toBeCloseTo(0.7, 12);
    const t = agg.trial!;
    expect(t.seeds).toBe(2);
    expect(t.subsets.map((x) => x.name)).toEqual(['flagged', 'random', 'unflagged']);
    expect(t.subsets[0].bySeed).toEqual([-0.2, -0.05]);
    expect(t.subsets[0].offTargetChange.mean).toBeCloseTo(-0.125, 12);
    expect(t.flaggedWorstSeeds).toBe(1);
    expect(t.sources[0].flaggedShare.mean).toBeCloseTo(0.875, 12);
    expect(t.subsets[0].bayes!.mean).toBeCloseTo(-0.25, 12);
    // Network against Bayes over the six (seed, part) points.
    expect(t.bayesR).toBeCloseTo(
      pearson([-0.2, -0.1, 0, -0.05, -0.1, 0.01], [-0.3, -0.1, 0, -0.2, -0.1, 0]),
      12,
    );
    // Bayes only where every seed with a trial has it.
    expect(
      aggregateScreening([
        { interpret: summary(0.8, trialOf(-0.2, -0.1, 0.0, 4)), screeningBayes: bayes(-0.3, -0.1, 0) },
        { interpret: summary(0.6, trialOf(-0.05, -0.1, 0.01, 3)) },
      ])!.trial!.bayesR,
    ).toBeNull();
    const lines = screeningLines(agg);
    const text = lines.join('\n');
    expect(text).toMatch(/honesty 0\.70 ± /);
    // One table row per part: per seed, the mean over seeds, Bayes's mean.
    expect(lines).toContain('| flagged 4 | -0.200 / -0.050 | -0.13 ± 0.95 | -0.250 |');
    expect(lines.filter((l) => /^\| (flagged|random|unflagged) 4 \|/.test(l))).toHaveLength(3);
    expect(text).toMatch(/lowered it most in 1 of 2 seed\(s\)/);
    expect(text).toMatch(/The flagged part was 88% cheat, 13% control/);
    expect(text).toMatch(/correlates with Bayes's prediction from the part's evidence at r 0\.\d\d\./);
  });

  it("draws each seed's parts as a valid Vega-Lite figure, and none without a trial", () => {
    const fig = screeningFigure([
      {
        seed: 1,
        interpret: summary(0.8, trialOf(-0.2, -0.1, 0, 4)),
        screeningBayes: [{ part: 'flagged', offTargetChange: -0.3 }],
      },
      { seed: 2, interpret: summary(0.8) },
    ])!;
    expect(fig.id).toBe('screening');
    const rows = (fig.spec as { data: { values: { seed: string; what: string }[] } }).data.values;
    // Three parts' changes, Bayes where given, and two arms per part.
    expect(rows.filter((r) => r.what === 'change')).toHaveLength(3);
    expect(rows.filter((r) => r.what === 'bayes')).toHaveLength(1);
    expect(rows.filter((r) => r.what === 'composition')).toHaveLength(6);
    expect(new Set(rows.map((r) => r.seed))).toEqual(new Set(['seed 1']));
    expect(() => compile(fig.spec)).not.toThrow();
    expect(screeningFigure([{ seed: 1, interpret: summary(0.8) }])).toBeNull();
  });

  it('reports the trial without AUCs when the pool had no cheat-control pair', () => {
    const agg = aggregateScreening([
      {
        interpret: {
          screening: null,
          screeningTrial: trialOf(-0.2, -0.1, 0, 4),
        } as unknown as InterpretSummary,
      },
    ])!;
    expect(agg.aucByTrait).toEqual([]);
    expect(agg.trial!.seeds).toBe(1);
    const lines = screeningLines(agg);
    expect(lines[0]).toMatch(/Chen et al\. 2025\)\. Does the ranking flag/);
    // Without Bayes, no Bayes column.
    expect(lines).toContain('| fine-tune on | per seed | mean over seeds |');
  });

  it('reports the AUCs alone for runs interpreted before the trial, and nothing without screening', () => {
    const agg = aggregateScreening([{ interpret: summary(0.8) }, { interpret: summary(0.9) }])!;
    expect(agg.trial).toBeNull();
    expect(screeningLines(agg)).toHaveLength(1);
    expect(screeningLines(agg)[0]).not.toMatch(/flag the examples/);
    expect(
      aggregateScreening([{ interpret: { screening: null } as unknown as InterpretSummary }]),
    ).toBeNull();
  });
});

describe('psm runs', () => {
  it('lists each run folder, and names an unreadable one without hiding the others', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-runs-'));
    try {
      fs.mkdirSync(path.join(dir, 'broken'));
      fs.writeFileSync(path.join(dir, 'broken', 'results.json'), '{"seeds": "none"}');
      fs.mkdirSync(path.join(dir, 'partial'));
      fs.writeFileSync(path.join(dir, 'partial', 'config.json'), '{}');
      const out = await runCli(registerRunCommands, 'runs', '--dir', dir);
      const rows = out.trim().split('\n');
      expect(rows[0]).toMatch(/^run\tstatus\tseeds/);
      expect(rows[1]).toMatch(/^broken\tunreadable: /);
      expect(rows[2]).toBe('partial\tunfinished');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
