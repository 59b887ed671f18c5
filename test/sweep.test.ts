/** Sweep files: grid expansion, the errors that name a bad field or grid point, and which stages a grid shares. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { planSweep, stageFolders, storePath, uniqueStages, type SweepPlan } from '../src/sweep/plan.ts';
import { describePlan, writePlan } from '../src/sweep/run.ts';
import { expandGrid, loadSweepFile } from '../src/sweep/spec.ts';
import { formatStatus, sweepStatus } from '../src/sweep/status.ts';
import { writeJobRecord } from '../src/sweep/store.ts';
import { openQueue } from '../src/sweep/queue.ts';
import { registerSweepCommand } from '../src/cli/sweep-command.ts';
import { runCli } from './cli-run.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'psm-sweep-'));

/** Writes a sweep file (an object, or YAML text as given) and returns its path. */
function sweepFile(content: unknown, dir = tmp()): string {
  const file = path.join(dir, 'grid.yaml');
  fs.writeFileSync(file, typeof content === 'string' ? content : YAML.stringify(content));
  return file;
}

function planOf(content: unknown): SweepPlan {
  const sweep = loadSweepFile(sweepFile(content));
  return planSweep(sweep, expandGrid(sweep));
}

/** The stage folders of the first job whose store place another job's stage shares. */
function sharedFolders(plan: SweepPlan): string[] {
  const uses = new Map<string, number>();
  for (const j of plan.jobs)
    for (const s of j.stages) uses.set(storePath(s), (uses.get(storePath(s)) ?? 0) + 1);
  return plan.jobs[0].stages.filter((s) => uses.get(storePath(s))! > 1).map((s) => s.folder);
}

describe('sweep files', () => {
  it('expands the grid in order (first field slowest), with labels, the seeds and null as an absent field', () => {
    const sweep = loadSweepFile(
      sweepFile({
        base: { preset: 'quick', overrides: { postTrain: { steps: 5 } } },
        seeds: 2,
        grid: { 'finetune.lr.all': [0.001, 0.002], worldTransform: [null, 'independent-traits'] },
      }),
    );
    expect(sweep.name).toBe('grid');
    const points = expandGrid(sweep);
    expect(points.map((p) => p.label)).toEqual([
      'finetune.lr.all=0.001 worldTransform=none',
      'finetune.lr.all=0.001 worldTransform=independent-traits',
      'finetune.lr.all=0.002 worldTransform=none',
      'finetune.lr.all=0.002 worldTransform=independent-traits',
    ]);
    expect(points.map((p) => p.config.finetune.lr.all)).toEqual([0.001, 0.001, 0.002, 0.002]);
    expect(points[0].config).not.toHaveProperty('worldTransform');
    expect(points[1].config.worldTransform).toBe('independent-traits');
    for (const p of points) {
      expect(p.config.seeds).toEqual([1, 2]);
      expect(p.config.postTrain.steps).toBe(5);
      expect(p.config.corpus.tokens).toBe(300_000); // the quick preset's
    }
    // Whole values: a list (the arms) and a mapping (an AI mix); no grid at all is one run of the base.
    const arms = expandGrid(
      loadSweepFile(sweepFile({ grid: { 'finetune.arms': [['cheat'], ['cheat', 'control']] } })),
    );
    expect(arms.map((p) => p.config.finetune.arms)).toEqual([['cheat'], ['cheat', 'control']]);
    expect(arms[1].label).toBe('finetune.arms=["cheat","control"]');
    const mix = expandGrid(loadSweepFile(sweepFile({ grid: { worldAiMix: ['villains', { helper: 2 }] } })));
    expect(mix[1].config.worldAiMix).toEqual({ helper: 2 });
    expect(expandGrid(loadSweepFile(sweepFile({ base: { preset: 'quick' } })))).toHaveLength(1);
  });

  it('reads the base config file relative to the sweep file, the preset under it', () => {
    const dir = tmp();
    fs.mkdirSync(path.join(dir, 'configs'));
    fs.writeFileSync(
      path.join(dir, 'configs', 'small.yaml'),
      YAML.stringify({ corpus: { tokens: 123_456 } }),
    );
    const [p] = expandGrid(
      loadSweepFile(sweepFile({ base: { preset: 'quick', config: 'configs/small.yaml' } }, dir)),
    );
    expect(p.config.corpus.tokens).toBe(123_456);
    expect(p.config.model.dim).toBe(48);
  });

  it('names the bad field, value or grid point', () => {
    const error = (content: unknown) => {
      try {
        planOf(content);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(error({ grid: { 'finetune.lrr': [1] } })).toMatch(
      /grid: "finetune.lrr" is not a config field; the fields of finetune are: domain, arms, trainable, examples, steps, batchSize, lr/,
    );
    expect(error({ grid: { 'corpuss.tokens': [1] } })).toMatch(/fields of the config are: world, worldAiMix/);
    expect(error({ grid: { 'finetune.lr.all.x': [1] } })).toMatch(
      /finetune.lr.all is a value, not a section/,
    );
    expect(error({ grid: { '__proto__.x': [1] } })).toMatch(/"__proto__.x" is not a config field/);
    expect(error({ grid: { 'finetune.lr.all': [0.001, -1] } })).toMatch(
      /grid point 2 \(finetune.lr.all=-1\) is invalid:\n {2}finetune.lr.all: /,
    );
    expect(error({ grid: { 'finetune.arms': [['sabotage']] } })).toMatch(/finetune.arms.0/);
    expect(error({ grid: { 'model.nHeads': [5] } })).toMatch(
      /grid point 1 \(model.nHeads=5\): invalid:\n {2}model\./,
    );
    expect(error({ grid: { 'finetune.lr.all': [] } })).toMatch(
      /grid.finetune.lr.all: needs at least one value/,
    );
    expect(error({ gird: { 'finetune.lr.all': [1] } })).toMatch(/sweep file .*grid.yaml is invalid:\n.*gird/);
    expect(error({ base: { preset: 'huge' } })).toMatch(
      /base: unknown preset "huge"; known presets: default, quick/,
    );
    expect(error({ base: { config: 'nowhere.yaml' } })).toMatch(/base: config file .*nowhere.yaml not found/);
    expect(error({ grid: { 'finetune.lr.all': [0.001, 0.001] } })).toMatch(
      /grid points 1 \(finetune.lr.all=0.001\) and 2 \(finetune.lr.all=0.001\) give the same config/,
    );
    expect(error({ grid: { world: ['nowhere'] } })).toMatch(/grid point 1 \(world=nowhere\)/);
    expect(error('grid: [1, 2')).toMatch(/not valid YAML/);
    expect(() => loadSweepFile('/no/such/sweep.yaml')).toThrow(/sweep file \/no\/such\/sweep.yaml not found/);
  });
});

describe('sweep plans: stages shared across the grid', () => {
  const quick = { preset: 'quick', overrides: { interpret: { enabled: false } } };

  it('shares everything before the fine-tunes across fine-tune learning rates, and waits for their owner', () => {
    const plan = planOf({ base: quick, seeds: 2, grid: { 'finetune.lr.embedding': [0.005, 0.01] } });
    expect(plan.jobs.map((j) => j.id)).toEqual([
      '1-finetune.lr.embedding=0.005.s1',
      '1-finetune.lr.embedding=0.005.s2',
      '2-finetune.lr.embedding=0.01.s1',
      '2-finetune.lr.embedding=0.01.s2',
    ]);
    expect(sharedFolders(plan)).toEqual([
      'corpus',
      'pretrain',
      'persona-check',
      'eval-base',
      'posttrain',
      'eval-posttrain',
    ]);
    // Seeds share nothing; the second grid point's seeds each wait for the first's.
    expect(plan.jobs.map((j) => j.deps)).toEqual([
      [],
      [],
      ['1-finetune.lr.embedding=0.005.s1'],
      ['1-finetune.lr.embedding=0.005.s2'],
    ]);
    expect(describePlan(plan)).toBe(
      '2 grid point(s) x 2 seed(s) = 4 job(s); 40 stages, 28 to compute (12 shared across grid points)',
    );
  });

  it('shares only the corpus across pre-training settings and evaluation settings, nothing across worlds', () => {
    expect(sharedFolders(planOf({ base: quick, grid: { 'pretrain.lr': [0.003, 0.002] } }))).toEqual([
      'corpus',
    ]);
    // The persona check, batteries and pre-training probes read the evaluation settings: not shared.
    expect(sharedFolders(planOf({ base: quick, grid: { 'eval.maxK': [3, 2] } }))).toEqual(['corpus']);
    expect(sharedFolders(planOf({ base: quick, grid: { 'postTrain.lr': [0.0003, 0.0001] } }))).toEqual([
      'corpus',
      'pretrain',
      'persona-check',
      'eval-base',
    ]);
    expect(
      sharedFolders(planOf({ base: quick, grid: { worldTransform: [null, 'independent-traits'] } })),
    ).toEqual([]);
    expect(sharedFolders(planOf({ base: quick, grid: { 'corpus.tokens': [100_000, 200_000] } }))).toEqual([]);
  });

  it('shares an arm that two arm lists both have, and keeps the alignment variant apart', () => {
    const arms = planOf({ base: quick, grid: { 'finetune.arms': [['cheat'], ['cheat', 'control']] } });
    expect(sharedFolders(arms)).toContain('ft-cheat-embedding');
    expect(arms.jobs[1].stages.map((s) => s.folder)).toEqual(
      stageFolders(arms.runs[1].config).filter((f) => f !== 'interpret'),
    );
    const aligned = planOf({
      base: { preset: 'quick', overrides: { alignmentPretraining: { enabled: true } } },
      grid: { 'finetune.lr.all': [0.001, 0.002] },
    });
    const job = aligned.jobs[0];
    expect(job.stages.filter((s) => s.variant === 'alignment').map((s) => s.folder)).toEqual(
      job.stages.filter((s) => s.variant === 'standard').map((s) => s.folder),
    );
    const corpora = job.stages.filter((s) => s.folder === 'corpus').map((s) => s.key);
    expect(new Set(corpora).size).toBe(2);
    expect(uniqueStages(aligned).length).toBeLessThan(aligned.jobs.reduce((n, j) => n + j.stages.length, 0));
  });

  it('a sweep folder holds one plan; status says what waits on what, and what failed', () => {
    const dir = tmp();
    const file = sweepFile({ base: quick, grid: { 'finetune.lr.embedding': [0.005, 0.01] } });
    const sweep = loadSweepFile(file);
    const plan = planSweep(sweep, expandGrid(sweep));
    writePlan(dir, plan, file);
    writePlan(dir, plan, file); // the same plan again: continued
    const other = planSweep(
      sweep,
      expandGrid({ ...sweep, grid: [{ path: 'finetune.lr.embedding', values: [1] }] }),
    );
    expect(() => writePlan(dir, other, file)).toThrow(
      /holds another sweep \(grid, from .*: 2 grid point\(s\)\)/,
    );
    // Stage keys take the world by content; a folder planned with the world file's path in them keeps its plan.
    const byFile = () => planSweep(sweep, expandGrid(sweep), { worldsByFile: true });
    expect(byFile().jobs[0].stages[0].key).not.toBe(plan.jobs[0].stages[0].key);
    const before = tmp();
    writePlan(before, byFile(), file);
    expect(() => writePlan(before, plan, file)).toThrow(/holds another sweep/);
    expect(writePlan(before, plan, file, byFile)).toEqual(byFile());
    expect(writePlan(dir, plan, file, byFile)).toEqual(plan);
    writeJobRecord(dir, {
      job: plan.jobs[0].id,
      state: 'failed',
      maxAttempts: 3,
      attempts: [1, 2, 3].map((attempt) => ({
        attempt,
        host: 'h',
        workerPid: 1,
        pid: 2,
        startedAt: '',
        heartbeatAt: '',
        endedAt: '',
        error: 'out of memory',
      })),
      updatedAt: '',
    });
    const status = sweepStatus(dir);
    expect(status.jobs.map((j) => [j.state, j.on, j.error])).toEqual([
      ['failed', undefined, 'out of memory'],
      ['blocked', [plan.jobs[0].id], undefined],
    ]);
    const text = formatStatus(status, { stages: true });
    expect(text).toMatch(/2 jobs \(grid point x seed\): 1 failed, 1 blocked; stages 0\/14 done/);
    expect(text).toMatch(/failed {3}0\/10 {4}attempt 3\/3: out of memory/);
    expect(text).toMatch(/none {4}stages\/pretrain\/[0-9a-f]{16} {2}\(shared by 2 jobs\)/);
  });
});

describe('psm sweep and psm worker on the command line', () => {
  it('--dry-run prints the plan; status prints the jobs; a bad queue URL or an unreachable Redis is a clear error', async () => {
    const dir = tmp();
    const file = sweepFile(
      { base: { preset: 'quick' }, grid: { 'finetune.lr.embedding': [0.005, 0.01] } },
      dir,
    );
    const out = path.join(dir, 'out');
    const plan = await runCli(registerSweepCommand, 'sweep', file, '--out', out, '--dry-run');
    expect(plan).toMatch(/2 grid point\(s\) x 1 seed\(s\) = 2 job\(s\); 22 stages, 16 to compute \(6 shared/);
    expect(plan).toMatch(/2-finetune.lr.embedding=0.01.s1 waits for 1-finetune.lr.embedding=0.005.s1/);
    expect(fs.existsSync(out)).toBe(false); // a dry run writes nothing
    await expect(runCli(registerSweepCommand, 'sweep', 'status', out)).rejects.toThrow(
      /is not a sweep folder/,
    );
    await expect(
      runCli(
        registerSweepCommand,
        'sweep',
        file,
        '--out',
        out,
        '--queue',
        'http://127.0.0.1:1',
        '--store',
        dir,
      ),
    ).rejects.toThrow(/--queue http:\/\/127.0.0.1:1: expected redis:\/\/HOST:PORT/);
    await expect(
      runCli(registerSweepCommand, 'sweep', file, '--out', out, '--queue', 'redis://h:1'),
    ).rejects.toThrow(/the sweep folder .*out is not inside the store .* \(--store\) that workers see/);
    await expect(openQueue('redis://127.0.0.1:1', 300)).rejects.toThrow(
      /cannot reach Redis at redis:\/\/127.0.0.1:1/,
    );
    await expect(
      runCli(registerSweepCommand, 'worker', '--queue', 'redis://h:1', '--lease', '0'),
    ).rejects.toThrow(/--lease must be a number in \[1, 3600\]/);
  });
});
