// psm compare: any metric of the report across runs, per seed, with t-intervals, paired and Welch differences. The
// runs are made here (two seeds each, small): the standard world and the control world without package deals.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compareRuns,
  loadComparedRun,
  metricDefs,
  pairedInterval,
  welchInterval,
  type Comparison,
} from '../src/pipeline/compare.ts';
import type { RunResults } from '../src/pipeline/results.ts';
import { estimate, tQuantile975 } from '../src/measurement/stats.ts';
import { registerCompareCommand } from '../src/cli/compare-command.ts';
import { runCli } from './cli-run.ts';

const repo = path.resolve(__dirname, '..');
const small = `seeds: [1, 2]
corpus: { tokens: 120000 }
postTrain: { steps: 4 }
finetune: { steps: 4 }
interpret: { enabled: false }
pretrain: { workers: 1 }
`;

let root: string;
let standard: string;
let control: string;
let readResults: (dir: string) => RunResults;

/** `psm run --preset quick --config FILE --out DIR` in a child process (the test worker stays responsive). */
function psmRun(dir: string, config: string): Promise<void> {
  const file = `${dir}.yaml`;
  fs.writeFileSync(file, config);
  const args = [path.join(repo, 'bin/psm.js'), 'run', '--preset', 'quick', '--config', file, '--out', dir];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psm run failed: ${err}`))));
  });
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-compare-'));
  standard = path.join(root, 'standard');
  control = path.join(root, 'control');
  await Promise.all([
    psmRun(standard, small),
    psmRun(control, `${small}worldTransform: independent-traits\n`),
  ]);
  readResults = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as RunResults;
}, 300_000);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the statistics', () => {
  it("Welch's interval: the Welch-Satterthwaite df, t at the df rounded down", () => {
    const w = welchInterval([1, 2, 3, 4], [2, 4, 6, 8])!;
    expect(w.mean).toBeCloseTo(-2.5, 12);
    // va/na = 5/12, vb/nb = 20/12: df = (25/12)^2 / ((5/12)^2/3 + (20/12)^2/3) = 4.4118
    expect(w.df).toBeCloseTo(4.41176, 4);
    expect(w.ci95).toBeCloseTo(tQuantile975(4) * Math.sqrt(25 / 12), 12);
    expect(welchInterval([1], [2, 3])).toBeNull();
    expect(welchInterval([1, 1], [2, 2])).toEqual({ mean: -1, ci95: 0, df: 2 });
  });

  it('the paired interval pairs the seeds both runs have (at least two)', () => {
    const m = (seeds: number[], values: number[]) => ({
      run: 'x',
      seeds,
      values,
      estimate: estimate(values),
      bayes: null,
    });
    const p = pairedInterval(m([1, 2, 3], [1, 2, 4]), m([3, 1, 2], [1, 0, 0]))!;
    // Seed by seed: 1-0, 2-0, 4-1.
    const e = estimate([1, 2, 3]);
    expect(p).toEqual({ mean: e.mean, ci95: e.ci95, df: 2, seeds: [1, 2, 3] });
    expect(pairedInterval(m([1, 2], [1, 2]), m([2, 3], [1, 2]))).toBeNull();
    // Five seeds against three: the three in common.
    const common = pairedInterval(m([1, 2, 3, 4, 5], [5, 6, 7, 8, 9]), m([3, 2, 1], [1, 1, 2]))!;
    expect(common.seeds).toEqual([1, 2, 3]);
    expect(common.mean).toBeCloseTo(estimate([3, 5, 6]).mean, 12);
  });
});

describe('psm compare on two small runs (standard and control world)', () => {
  it('reads every metric per seed; differences are paired where the seeds match and Welch always', () => {
    const a = loadComparedRun(standard);
    const b = loadComparedRun(control);
    expect(b.results.world.name).toBe('default-independent');
    const c: Comparison = compareRuns([a, b], ['post.rise', 'cheat/embedding.vsControl', 'post.coding']);
    const ra = readResults(standard);
    const rb = readResults(control);
    const rise = (r: RunResults) => r.seeds.map((s) => s.posttrained.untrainedMean - s.base.untrainedMean);
    const [m] = c.metrics;
    expect(m.runs.map((r) => r.seeds)).toEqual([
      [1, 2],
      [1, 2],
    ]);
    m.runs[0].values.forEach((v, i) => expect(v).toBeCloseTo(rise(ra)[i], 12));
    expect(m.runs[0].estimate).toEqual(estimate(m.runs[0].values));
    const paired = estimate(rise(rb).map((v, i) => v - rise(ra)[i]));
    expect(m.differences[0].paired!.mean).toBeCloseTo(paired.mean, 12);
    expect(m.differences[0].paired!.ci95).toBeCloseTo(paired.ci95, 12);
    expect(m.differences[0].welch).toEqual(welchInterval(m.runs[1].values, m.runs[0].values));
    // Bayes beside the network: post-training generalises in the standard world, not at all in the control world.
    expect(m.runs[0].bayes!).toBeGreaterThan(0.2);
    expect(Math.abs(m.runs[1].bayes!)).toBeLessThan(1e-12);
    // The pipeline's Bayes for the control world: no off-target difference between the cheat and control arms.
    const vs = c.metrics[1];
    expect(vs.runs[0].bayes!).toBeLessThan(-0.05);
    expect(Math.abs(vs.runs[1].bayes!)).toBeLessThan(1e-12);
    const cheatMinusControl = (r: RunResults) =>
      r.seeds.map((s) => {
        const arm = (name: string) => s.arms.find((x) => x.arm === name && x.trainable === 'embedding')!;
        return arm('cheat').battery.offTargetMean - arm('control').battery.offTargetMean;
      });
    vs.runs[1].values.forEach((v, i) => expect(v).toBeCloseTo(cheatMinusControl(rb)[i], 12));
    const coding = (r: RunResults) =>
      r.seeds.map((s) => s.posttrained.domains.find((d) => d.domain === 'coding')!.pGood.mean);
    expect(c.metrics[2].runs[1].values).toEqual(coding(rb));
  });

  it('a run with other seeds gets only the Welch interval; an unfinished run is read from its partial results', () => {
    const other = path.join(root, 'other-seeds');
    const partialRun = path.join(root, 'unfinished');
    const ra = readResults(standard);
    fs.mkdirSync(other);
    fs.writeFileSync(
      path.join(other, 'results.json'),
      JSON.stringify({ ...ra, seeds: ra.seeds.map((s) => ({ ...s, seed: s.seed + 4 })) }),
    );
    fs.mkdirSync(path.join(partialRun, 'partial'), { recursive: true });
    fs.writeFileSync(
      path.join(partialRun, 'partial', 'results.json'),
      JSON.stringify({ ...ra, seeds: ra.seeds.slice(0, 1) }),
    );
    const c = compareRuns(
      [standard, other, partialRun].map((d) => loadComparedRun(d)),
      ['post.rise'],
    );
    const [d1, d2] = c.metrics[0].differences;
    expect(d1.paired).toBeNull();
    expect(d1.welch!.mean).toBeCloseTo(0, 12);
    expect(c.runs[2].partial).toBe(true);
    expect(c.runs[2].seeds).toEqual([1]);
    expect(d2.welch).toBeNull();
  });

  it("reads each run's metrics with its own world (other domain names)", () => {
    // The standard run as if its world named every domain differently: the same numbers must come out.
    const renamed = path.join(root, 'renamed');
    const rename = (d: string) => `x_${d}`;
    const ra = readResults(standard);
    const battery = (b: RunResults['seeds'][number]['base']) => ({
      ...b,
      domains: b.domains.map((d) => ({ ...d, domain: rename(d.domain) })),
    });
    const w = ra.world;
    fs.mkdirSync(renamed);
    fs.writeFileSync(
      path.join(renamed, 'results.json'),
      JSON.stringify({
        ...ra,
        world: {
          ...w,
          domains: w.domains.map(rename),
          trainedDomains: w.trainedDomains.map(rename),
          untrainedDomains: w.untrainedDomains.map(rename),
          finetuneDomain: rename(w.finetuneDomain),
        },
        seeds: ra.seeds.map((s) => ({
          ...s,
          base: battery(s.base),
          posttrained: battery(s.posttrained),
          arms: s.arms.map((a) => ({ ...a, battery: battery(a.battery) })),
        })),
      }),
    );
    const names = ['base.untrained', 'cheat/embedding.vsControl', 'cheat/embedding.offTargetChange'];
    const c = compareRuns(
      [standard, renamed].map((d) => loadComparedRun(d)),
      names,
    );
    for (const m of c.metrics) {
      expect(m.runs[1].values).toEqual(m.runs[0].values);
      expect(m.runs[1].bayes).not.toBeNull();
      expect(m.runs[1].bayes).toBeCloseTo(m.runs[0].bayes!, 12);
    }
    expect(() =>
      compareRuns(
        [standard, renamed].map((d) => loadComparedRun(d)),
        ['base.coding'],
      ),
    ).toThrow(/"base\.coding" exists in some of the runs only/);
  });

  it('the CLI prints the table, writes MD, JSON and the figure, and names the valid metrics on a typo', async () => {
    const out = path.join(root, 'cmp');
    const table = await runCli(
      registerCompareCommand,
      'compare',
      standard,
      control,
      '--labels',
      'standard,control',
      '--metric',
      'post.rise,cheat/embedding.vsControl',
      '--out',
      out,
    );
    expect(table).toMatch(/^post\.rise: post-training generalisation/m);
    expect(table).toMatch(/run\s+seeds\s+per seed\s+mean ± 95% CI\s+Bayes\s+net\/Bayes\s+Δ paired\s+Δ Welch/);
    expect(table).toMatch(/^ {2}control\s+1,2\s/m);
    for (const f of ['compare.md', 'compare.json', 'compare.svg', 'compare.png', 'compare.vl.json'])
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8')) as Comparison;
    expect(json.metrics.map((m) => m.metric)).toEqual(['post.rise', 'cheat/embedding.vsControl']);
    expect(fs.readFileSync(path.join(out, 'compare.md'), 'utf8')).toMatch(/!\[.*\]\(compare\.svg\)/);
    expect(fs.readFileSync(path.join(out, 'compare.svg'), 'utf8')).toMatch(/^<svg/);

    const list = await runCli(registerCompareCommand, 'compare', standard, control, '--list');
    const names = metricDefs(readResults(standard)).map((d) => d.name);
    expect(list.trim().split('\n').length).toBe(names.length);
    for (const n of ['persona.r', 'post.rise', 'base.coding', 'cheat/embedding.offTargetChange', 'psm.r2'])
      expect(names).toContain(n);

    await expect(
      runCli(registerCompareCommand, 'compare', standard, control, '--metric', 'post.rize'),
    ).rejects.toThrow(/unknown metric "post\.rize"; metrics every run has: persona\.r, .*post\.rise/);
    await expect(runCli(registerCompareCommand, 'compare', path.join(root, 'nowhere'))).rejects.toThrow(
      /no results\.json/,
    );
  });
});
