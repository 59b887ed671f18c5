/**
 * Sweep benchmark (`npm run bench:sweep`): one 4-run quick sweep (the quick preset with four fine-tune learning rates,
 * one seed: the runs share every stage up to post-training) run twice, through the local pool (its default size)
 * and through Redis (Debian's redis-server, started here on a free loopback port) with 2 `psm worker` processes.
 * Prints each wall time, checks that both reach the same numbers, and measures the queue's own overhead from the jobs'
 * records: for each job, the time from being on the queue with a worker free to that worker starting it, plus the
 * time from its dependencies' results to its being on the queue; summed, and divided by the stages the sweep computed.
 * The last line is `queue_overhead_per_stage_s=X` (the goal is under 1 s).
 *
 * Options: --workers N (psm worker processes, default 2), --runs N (grid points, default 4).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { defaultPoolSize } from '../src/sweep/local-pool.ts';
import { uniqueStages, type SweepPlan } from '../src/sweep/plan.ts';
import { openQueue } from '../src/sweep/queue.ts';
import { runSweep, type SweepResult } from '../src/sweep/run.ts';
import type { SweepProgress } from '../src/sweep/scheduler.ts';
import { findJob, jobRunDir, readJobRecord, type JobRecord } from '../src/sweep/store.ts';
import { hasRedisServer, startRedisServer } from '../test/redis-server.ts';

function argNumber(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const n = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

const WORKERS = argNumber('workers', 2);
const RUNS = argNumber('runs', 4);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LEARNING_RATES = [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];

/** A line every 15 s: long, but not silent. */
function lines(label: string): SweepProgress {
  let last = 0;
  return {
    update(s) {
      if (Date.now() - last < 15_000) return;
      last = Date.now();
      process.stderr.write(
        `  ${label}: ${s.stagesDone}/${s.stagesTotal} stages, ${s.jobsDone}/${s.jobsTotal} jobs${s.running[0] ? ` | ${s.running[0]}` : ''}\n`,
      );
    },
    stop() {},
  };
}

/** Results without wall-clock fields and folder paths. */
function stable(file: string): string {
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  return JSON.stringify(r, (k, v) =>
    k === 'createdAt' || k === 'seconds' || k === 'seedDir' ? undefined : v,
  );
}

/** The queue's latencies per job, from the records: [on the queue with a worker free -> started, deps done -> queued]. */
function queueLatencies(
  sweepDir: string,
  plan: SweepPlan,
  start: number,
): { dispatch: number; deps: number }[] {
  const records = new Map(plan.jobs.map((j) => [j.id, readJobRecord(sweepDir, j.id) as JobRecord]));
  const t = (iso: string | undefined) => Date.parse(iso ?? '');
  const attempts = [...records.values()].flatMap((r) => r.attempts);
  return plan.jobs.map((job) => {
    const r = records.get(job.id)!;
    const a = r.attempts[0];
    // When its worker was free: the end of that worker's previous attempt, or the sweep's start.
    const free = Math.max(
      start,
      ...attempts
        .filter((x) => x.workerPid === a.workerPid && t(x.endedAt) <= t(a.startedAt))
        .map((x) => t(x.endedAt)),
    );
    // Ready when its dependencies' results were written (their processes go on to render their reports).
    const ready = Math.max(
      start,
      ...job.deps.map(
        (d) => fs.statSync(path.join(sweepDir, jobRunDir(findJob(plan, d)), 'results.json')).mtimeMs,
      ),
    );
    return {
      dispatch: (t(a.startedAt) - Math.max(t(r.queuedAt), free)) / 1000,
      deps: (t(r.queuedAt) - ready) / 1000,
    };
  });
}

async function main(): Promise<void> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (apt-get install redis-server)');
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-bench-sweep-'));
  const file = path.join(store, 'bench.yaml');
  fs.writeFileSync(
    file,
    YAML.stringify({
      name: 'bench',
      base: { preset: 'quick' },
      seeds: 1,
      grid: { 'finetune.lr.embedding': LEARNING_RATES.slice(0, RUNS) },
    }),
  );
  const children: ChildProcess[] = [];
  const redis = await startRedisServer();
  try {
    process.stderr.write(
      `sweep benchmark in ${store}: ${RUNS} quick runs, local pool then ${WORKERS} Redis workers\n`,
    );
    let t0 = Date.now();
    const local = await runSweep(file, {
      out: path.join(store, 'local'),
      progress: lines('local'),
      log: (l) => process.stderr.write(`  ${l}\n`),
    });
    const localWall = (Date.now() - t0) / 1000;

    for (let i = 0; i < WORKERS; i++) {
      const w = spawn(
        process.execPath,
        [
          path.join(root, 'bin/psm.js'),
          'worker',
          '--queue',
          redis.url,
          '--store',
          store,
          '--concurrency',
          '1',
        ],
        { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
      );
      children.push(w);
    }
    // The workers' start-up (loading the engine) is not the queue's: wait until all are connected.
    const queue = await openQueue(redis.url);
    while ((await queue.getWorkersCount()) < WORKERS) await new Promise((r) => setTimeout(r, 200));
    await queue.close();
    t0 = Date.now();
    const queued: SweepResult = await runSweep(file, {
      out: path.join(store, 'queue'),
      queue: redis.url,
      store,
      progress: lines('queue'),
      log: (l) => process.stderr.write(`  ${l}\n`),
    });
    const queueWall = (Date.now() - t0) / 1000;

    for (const r of [local, queued])
      if (r.outcome.done.length !== r.plan.jobs.length)
        throw new Error(`${r.sweepDir}: not every job finished (${JSON.stringify(r.outcome)})`);
    const same = local.plan.runs.every(
      (run) =>
        stable(path.join(local.sweepDir, 'runs', run.id, 'results.json')) ===
        stable(path.join(queued.sweepDir, 'runs', run.id, 'results.json')),
    );
    const stages = uniqueStages(queued.plan).length;
    const latencies = queueLatencies(queued.sweepDir, queued.plan, t0);
    const total = latencies.reduce((s, l) => s + l.dispatch + l.deps, 0);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const f = (x: number) => x.toFixed(3);
    process.stdout.write(
      [
        `sweep: ${RUNS} quick runs (finetune.lr.embedding), 1 seed: ${queued.plan.jobs.length} jobs, ${stages} stages computed`,
        `local pool of ${defaultPoolSize()} job process(es): wall ${localWall.toFixed(1)} s`,
        `Redis, ${WORKERS} psm worker processes: wall ${queueWall.toFixed(1)} s`,
        `results identical: ${same ? 'yes' : 'NO'}`,
        `queue latency per job: dispatch ${f(mean(latencies.map((l) => l.dispatch)))} s, dependencies ${f(mean(latencies.map((l) => l.deps)))} s (mean over ${latencies.length} jobs)`,
        `queue_overhead_per_stage_s=${f(total / stages)}`,
      ].join('\n') + '\n',
    );
    if (!same) process.exitCode = 1;
  } finally {
    for (const c of children) c.kill('SIGTERM');
    redis.stop();
  }
}

await main();
