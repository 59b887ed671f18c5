/**
 * Sweeps end to end on a tiny grid (two fine-tune learning rates, so the second grid point shares every stage up to
 * post-training with the first): on the local pool, and on a real Redis (a redis-server this test starts on a free
 * loopback port) with three `psm worker` processes, one of them killed with SIGKILL in the middle of pre-training.
 * Both must compute every stage once and reach the numbers `psm run` reaches for each grid point on its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { isProcessRunning } from '../src/io/process.ts';
import { runExperiment } from '../src/pipeline/experiment.ts';
import { silentProgress } from '../src/pipeline/progress.ts';
import type { RunResults } from '../src/pipeline/results.ts';
import { readStageRecord } from '../src/pipeline/stage.ts';
import { storePath, uniqueStages } from '../src/sweep/plan.ts';
import { planOf, runSweep, type SweepResult } from '../src/sweep/run.ts';
import { silentSweepProgress } from '../src/sweep/scheduler.ts';
import { expandGrid, loadSweepFile } from '../src/sweep/spec.ts';
import { formatStatus, sweepStatus } from '../src/sweep/status.ts';
import { jobLogFile, jobRunDir, readJobProgress, readJobRecord } from '../src/sweep/store.ts';
import { hasRedisServer, startRedisServer, type RedisServer } from './redis-server.ts';

const root = path.resolve(__dirname, '..');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'psm-sweep-run-'));

/** Seconds per run on a loaded 2-core machine: a small corpus, two post-training and fine-tune steps, no interpretation. */
const SWEEP = {
  name: 'tiny',
  base: {
    preset: 'quick',
    overrides: {
      corpus: { tokens: 60_000, valFraction: 0.05 },
      tokenizer: { trainDocuments: 600 },
      pretrain: { workers: 1, probeEvery: 1000, probeItems: 12, checkpointEvery: 5 },
      eval: { batteryItemsPerDomain: 4, probeItemsPerK: 4, packageItems: 4, maxK: 1 },
      postTrain: { examples: 16, steps: 2 },
      finetune: { arms: ['cheat'], examples: 16, steps: 2 },
      interpret: { enabled: false },
    },
  },
  seeds: 1,
  grid: { 'finetune.lr.embedding': [0.005, 0.01] },
};

/** Results without wall-clock fields and folder paths, for equality across runs. */
function stable(r: unknown): unknown {
  return JSON.parse(
    JSON.stringify(r, (k, v) => (k === 'createdAt' || k === 'seconds' || k === 'seedDir' ? undefined : v)),
  );
}

function writeSweepFile(dir: string): string {
  const file = path.join(dir, 'tiny.yaml');
  fs.writeFileSync(file, YAML.stringify(SWEEP));
  return file;
}

/** Each grid point run on its own by the pipeline, as `psm run --config` would: the numbers a sweep must reach. */
let reference: RunResults[] = [];
beforeAll(async () => {
  const points = expandGrid(loadSweepFile(writeSweepFile(tmp())));
  reference = [];
  for (const p of points)
    reference.push(await runExperiment(p.config, { runDir: tmp(), progress: silentProgress, log: () => {} }));
}, 120_000);

/** The sweep's numbers equal the separate runs'; every stage of the plan is done, in the store, once. */
function checkSweep(r: SweepResult): void {
  expect(r.outcome).toEqual({ done: r.plan.jobs.map((j) => j.id), failed: [], blocked: [] });
  r.plan.runs.forEach((run, i) => {
    const results = JSON.parse(
      fs.readFileSync(path.join(r.sweepDir, 'runs', run.id, 'results.json'), 'utf8'),
    );
    expect(stable(results)).toEqual(stable(reference[i]));
  });
  const stages = uniqueStages(r.plan);
  expect(stages.length).toBe(10); // 2 x 8 stages, the first 6 shared
  for (const s of stages) expect(readStageRecord(path.join(r.sweepDir, storePath(s)))?.status).toBe('done');
  expect(
    fs
      .readdirSync(path.join(r.sweepDir, 'stages'))
      .flatMap((f) => fs.readdirSync(path.join(r.sweepDir, 'stages', f))),
  ).toHaveLength(10);
  // Every stage folder the pipeline made is a link into the store: the plan lists the pipeline's stages exactly.
  for (const job of r.plan.jobs) {
    const seedDir = path.join(r.sweepDir, jobRunDir(job), `standard-seed${job.seed}`);
    for (const entry of fs.readdirSync(seedDir))
      expect(fs.lstatSync(path.join(seedDir, entry)).isSymbolicLink(), entry).toBe(true);
  }
  const comparison = JSON.parse(fs.readFileSync(path.join(r.sweepDir, 'report', 'compare.json'), 'utf8'));
  expect(comparison.runs.map((x: { label: string }) => x.label)).toEqual(r.plan.runs.map((x) => x.label));
  for (const f of ['sweep.md', 'compare.md', 'compare.svg', 'compare.png'])
    expect(fs.existsSync(path.join(r.sweepDir, 'report', f)), f).toBe(true);
}

describe('psm sweep on the local pool', () => {
  it("runs the grid once per stage to the separate runs' numbers, and a second run finds it done", async () => {
    const dir = tmp();
    const file = writeSweepFile(dir);
    const out = path.join(dir, 'sweep');
    // A job that cannot run (a folder where its stage link goes) fails each try, with its error; the job that needs
    // its stages is not run; the sweep says so.
    const { plan } = planOf(file, out);
    // (Paths in a job's errors are relative to the sweep folder.)
    const obstacle = path.join(jobRunDir(plan.jobs[0]), 'standard-seed1', 'corpus');
    fs.mkdirSync(path.join(out, obstacle), { recursive: true });
    const failed = await runSweep(file, {
      out,
      jobs: 1,
      attempts: 2,
      progress: silentSweepProgress,
      log: () => {},
    });
    expect(failed.outcome).toEqual({
      done: [],
      failed: [
        {
          job: plan.jobs[0].id,
          error: `${obstacle} is a folder, not a link into the sweep's stage store; remove it`,
        },
      ],
      blocked: [{ job: plan.jobs[1].id, on: plan.jobs[0].id }],
    });
    expect(readJobRecord(out, plan.jobs[0].id)).toMatchObject({ state: 'failed', attempts: [{}, {}] });
    expect(formatStatus(sweepStatus(out))).toMatch(
      /failed +0\/8 +attempt 2\/2: runs\/.* is a folder, not a link/,
    );
    expect(fs.readFileSync(path.join(out, 'report', 'sweep.md'), 'utf8')).toMatch(
      /No grid point has a finished seed/,
    );
    // Run again once the obstacle is gone: the failed job is tried anew.
    fs.rmdirSync(path.join(out, obstacle));
    const r = await runSweep(file, { out, jobs: 1, progress: silentSweepProgress, log: () => {} });
    checkSweep(r);
    // The second grid point computed only its own fine-tune and battery; the rest came from the first's.
    const second = fs.readFileSync(jobLogFile(out, r.plan.jobs[1].id), 'utf8');
    for (const stage of ['corpus', 'pretrain', 'posttrain'])
      expect(second).toMatch(new RegExp(`${stage}: cached`));
    const records = r.plan.jobs.map((j) => readJobRecord(out, j.id));
    expect(records.map((x) => [x?.state, x?.attempts.length])).toEqual([
      ['done', 1],
      ['done', 1],
    ]);
    const again = await runSweep(file, { out, jobs: 1, progress: silentSweepProgress, log: () => {} });
    expect(again.outcome.done).toHaveLength(2);
    expect(r.plan.jobs.map((j) => readJobRecord(out, j.id))).toEqual(records);
    expect(formatStatus(sweepStatus(out))).toMatch(
      /2 jobs \(grid point x seed\): 2 done; stages 10\/10 done/,
    );
  }, 180_000);
});

const hasRedis = hasRedisServer();
if (!hasRedis)
  console.warn(
    'sweep-run.test.ts: redis-server is not installed, so the queue test is skipped (apt-get install redis-server; .ci/run installs it)',
  );

describe.skipIf(!hasRedis)('psm sweep on a Redis queue with psm worker processes', () => {
  const children: ChildProcess[] = [];
  let redis: RedisServer | null = null;
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    redis?.stop();
  });

  it("hands a SIGKILLed worker's job to another, which resumes it; every stage finishes once", async () => {
    const store = tmp();
    redis = await startRedisServer();
    const url = redis.url;
    const logs: string[] = [];
    const workers = [1, 2, 3].map(() => {
      const w = spawn(
        process.execPath,
        [
          path.join(root, 'bin/psm.js'),
          'worker',
          '--queue',
          url,
          '--store',
          store,
          '--lease',
          '4',
          '--concurrency',
          '1',
        ],
        { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      w.stderr!.on('data', (b: Buffer) => logs.push(`worker ${w.pid}: ${b.toString().trim()}`));
      children.push(w);
      return w;
    });
    const file = writeSweepFile(store);
    const out = path.join(store, 'sweep');
    const sweep = runSweep(file, { out, queue: url, store, progress: silentSweepProgress, log: () => {} });

    // Watch the stage store (every stage's finish times) and kill the worker whose job is in pre-training.
    const finished = new Map<string, Set<string>>();
    let killed: { worker: number; job: number; step: number } | null = null;
    const watch = setInterval(() => {
      if (!fs.existsSync(path.join(out, 'plan.json'))) return;
      const stagesDir = path.join(out, 'stages');
      for (const f of fs.existsSync(stagesDir) ? fs.readdirSync(stagesDir) : [])
        for (const key of fs.readdirSync(path.join(stagesDir, f))) {
          let rec;
          try {
            rec = readStageRecord<unknown>(path.join(stagesDir, f, key));
          } catch {
            continue; // being written
          }
          if (rec?.status === 'done') {
            const seen = finished.get(`${f}/${key}`) ?? new Set<string>();
            finished.set(`${f}/${key}`, seen.add(rec.finishedAt!));
          }
        }
      const first = '1-finetune.lr.embedding=0.005.s1';
      const p = readJobProgress(out, first);
      const attempt = readJobRecord(out, first)?.attempts.at(-1);
      if (
        !killed &&
        attempt &&
        p?.pid === attempt.pid &&
        p.label === 'pretrain' &&
        p.done >= 6 &&
        p.done < p.total - 5
      ) {
        killed = { worker: attempt.workerPid, job: attempt.pid!, step: p.done };
        process.kill(attempt.workerPid, 'SIGKILL');
      }
    }, 100);
    let r: SweepResult;
    try {
      r = await sweep;
    } finally {
      clearInterval(watch);
    }
    expect(killed, logs.join('\n')).not.toBeNull();
    const k = killed!;
    // The job's own process died with its worker (its watchdog), so the lease and the work ended together.
    expect(isProcessRunning(k.job)).toBe(false);
    expect(workers.filter((w) => w.exitCode !== null || w.signalCode !== null).map((w) => w.pid)).toEqual([
      k.worker,
    ]);
    checkSweep(r);
    for (const [stage, times] of finished) expect(times.size, stage).toBe(1);
    expect(finished.size).toBe(10);
    const record = readJobRecord(out, r.plan.jobs[0].id)!;
    expect(record.state).toBe('done');
    // (A busy machine may delay a lease renewal past the lease: a try more, never a stage twice.)
    expect(record.attempts.length).toBeGreaterThanOrEqual(2);
    expect(record.attempts[0]).toMatchObject({
      workerPid: k.worker,
      error: expect.stringMatching(/worker stopped/),
    });
    expect(record.attempts.at(-1)!.workerPid).not.toBe(k.worker);
    expect(record.attempts.at(-1)!.error).toBeUndefined();
    expect(fs.readFileSync(jobLogFile(out, r.plan.jobs[0].id), 'utf8')).toMatch(
      /pretrain: resuming at step [1-9]/,
    );
    expect(sweepStatus(out).jobs.map((j) => j.state)).toEqual(['done', 'done']);
  }, 180_000);
});
