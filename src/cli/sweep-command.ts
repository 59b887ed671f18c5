/**
 * `psm sweep SWEEP.yaml` (a grid of experiments, on a local pool of job processes or on a Redis queue),
 * `psm sweep status DIR`, `psm sweep report DIR`, and `psm worker` (takes a queue's jobs; any number of machines).
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { SweepProgress, SweepProgressState } from '../sweep/scheduler.ts';
import { intOption, numberOption } from './options.ts';

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
}

/**
 * The sweep's progress: stages done of the sweep's stages, jobs done, the rate in stages per minute (counted from the
 * first update, so a continued sweep's finished stages do not count as done in no time), the ETA at that rate, and
 * what runs now. A bar on a terminal; a line every 10 s (and when a stage ends) in logs.
 */
function sweepProgress(): SweepProgress {
  let first: { work: number; at: number } | null = null;
  const line = (s: SweepProgressState) => {
    const now = Date.now();
    first ??= { work: s.work, at: now };
    const minutes = (now - first.at) / 60000;
    const rate = minutes > 0 ? (s.work - first.work) / minutes : 0;
    const eta = rate > 0 ? ((s.stagesTotal - s.work) / rate) * 60 : Number.NaN;
    const running =
      s.running.length > 1 ? `${s.running[0]} (+${s.running.length - 1} more)` : (s.running[0] ?? '');
    return {
      fields: { jobs: `${s.jobsDone}/${s.jobsTotal}`, rate: rate.toFixed(1), left: duration(eta), running },
      text: `sweep: ${s.stagesDone}/${s.stagesTotal} stages, ${s.jobsDone}/${s.jobsTotal} jobs, ${rate.toFixed(1)} stages/min, ETA ${duration(eta)}${running ? ` | ${running}` : ''}`,
    };
  };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format:
          'sweep [{bar}] {value}/{total} stages | {jobs} jobs | {rate} stages/min | ETA {left} | {running}',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(s) {
        const { fields } = line(s);
        if (!started) bar.start(s.stagesTotal, s.stagesDone, fields);
        started = true;
        bar.update(s.stagesDone, fields);
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let printed = { at: 0, done: -1 };
  return {
    update(s) {
      const { text } = line(s);
      if (Date.now() - printed.at < 10_000 && s.stagesDone === printed.done) return;
      printed = { at: Date.now(), done: s.stagesDone };
      process.stderr.write(`${text}\n`);
    },
    stop() {},
  };
}

/** Runs `fn` with an AbortSignal that the first Ctrl-C (or SIGTERM) aborts; a second one exits at once. */
async function untilInterrupted<T>(fn: (stop: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write(`\n${signal}: stopping (again to exit at once)\n`);
    stop.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function registerSweepCommand(program: Command): void {
  const sweep = program
    .command('sweep')
    .description(
      'Run a grid of experiments (a base config and a grid of field values, docs/sweeps.md): stages shared across the grid are computed once; jobs run on a local pool or, with --queue, on psm worker processes on any number of machines; the report compares every grid point',
    )
    .argument('<file>', 'sweep file (YAML)')
    .option('--out <dir>', 'sweep folder (default sweeps/<name>); running the sweep again continues it')
    .option(
      '--jobs <n>',
      'local pool: jobs at once (default: one per two cores)',
      intOption('--jobs', 1, 256),
    )
    .option('--queue <url>', 'put the jobs on Redis (redis://HOST:PORT) for psm worker processes')
    .option(
      '--store <dir>',
      'with --queue: the folder the workers are given as --store, holding the sweep folder (default: .)',
    )
    .option('--attempts <n>', 'tries per job before it fails (default 3)', intOption('--attempts', 1, 20))
    .option('--dry-run', 'print the plan (grid points, jobs, shared stages) and stop')
    .action(
      async (
        file: string,
        o: {
          out?: string;
          jobs?: number;
          queue?: string;
          store?: string;
          attempts?: number;
          dryRun?: boolean;
        },
      ) => {
        const { describePlan, planOf, runSweep } = await import('../sweep/run.ts');
        if (o.dryRun) {
          const { plan, sweepDir } = planOf(file, o.out);
          process.stdout.write(`${sweepDir}: ${describePlan(plan)}\n`);
          for (const r of plan.runs) process.stdout.write(`  runs/${r.id}  ${r.label}\n`);
          for (const j of plan.jobs.filter((x) => x.deps.length > 0))
            process.stdout.write(`  ${j.id} waits for ${j.deps.join(', ')} (shared stages)\n`);
          return;
        }
        const t0 = Date.now();
        const r = await untilInterrupted((stop) =>
          runSweep(file, {
            ...o,
            progress: sweepProgress(),
            log: (l) => process.stderr.write(`${l}\n`),
            stop,
          }),
        );
        const { done, failed, blocked } = r.outcome;
        process.stderr.write(
          `psm sweep: ${done.length}/${r.plan.jobs.length} jobs done in ${((Date.now() - t0) / 60000).toFixed(1)} min\n`,
        );
        for (const f of failed) process.stderr.write(`  failed: ${f.job}: ${f.error}\n`);
        for (const b of blocked)
          process.stderr.write(`  not run: ${b.job} (it needs ${b.on}, which failed)\n`);
        process.stdout.write(`${r.report.files.find((f) => f.endsWith('sweep.md'))}\n`);
        if (failed.length > 0 || blocked.length > 0)
          throw new Error(
            `${failed.length} job(s) failed and ${blocked.length} could not run; psm sweep status ${r.sweepDir} shows them, and running the sweep again retries them`,
          );
        if (done.length < r.plan.jobs.length)
          throw new Error(
            `stopped with ${r.plan.jobs.length - done.length} job(s) unfinished; run it again to continue`,
          );
      },
    );

  sweep
    .command('status')
    .description(
      'Each job of a sweep: done, running where and in which stage, queued, waiting, failed with its error',
    )
    .argument('<dir>', 'sweep folder')
    .option('--stages', "also list the stage store: each stage's state and how many jobs share it")
    .option('--json', 'print the status as JSON')
    .action(async (dir: string, o: { stages?: boolean; json?: boolean }) => {
      const { formatStatus, sweepStatus } = await import('../sweep/status.ts');
      const s = sweepStatus(dir);
      process.stdout.write(`${o.json ? JSON.stringify(s, null, 2) : formatStatus(s, o)}\n`);
    });

  sweep
    .command('report')
    .description(
      "(Re)write a sweep's report from its finished jobs (runs with some seeds done are marked unfinished)",
    )
    .argument('<dir>', 'sweep folder')
    .action(async (dir: string) => {
      const { readPlan } = await import('../sweep/store.ts');
      const { writeSweepReport } = await import('../sweep/report.ts');
      const { files } = await writeSweepReport(dir, readPlan(dir));
      process.stdout.write(`${files.join('\n')}\n`);
    });

  program
    .command('worker')
    .description(
      "Take sweep jobs from a Redis queue (psm sweep --queue) until stopped; a killed worker's job goes to another worker once its lease runs out, and resumes from its checkpoints",
    )
    .requiredOption('--queue <url>', 'redis://HOST:PORT')
    .option('--store <dir>', 'the folder holding the sweep folders, as psm sweep was given it (--store)', '.')
    .option(
      '--concurrency <n>',
      'jobs at once (default: one per two cores)',
      intOption('--concurrency', 1, 256),
    )
    .option(
      '--lease <seconds>',
      "the lease on a job: a dead worker's job is taken over after this plus half of it",
      numberOption('--lease', { min: 1, max: 3600 }),
      30,
    )
    .action(async (o: { queue: string; store: string; concurrency?: number; lease: number }) => {
      const { runSweepWorker } = await import('../sweep/queue.ts');
      const { defaultPoolSize } = await import('../sweep/local-pool.ts');
      await untilInterrupted((stop) =>
        runSweepWorker(
          {
            url: o.queue,
            store: o.store,
            concurrency: o.concurrency ?? defaultPoolSize(),
            leaseMs: Math.round(o.lease * 1000),
            log: (l) => process.stderr.write(`${new Date().toISOString()} ${l}\n`),
          },
          stop,
        ),
      );
      process.exit(0);
    });
}
