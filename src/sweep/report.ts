/**
 * The sweep's report. Each run's seeds (one job each) are put together into the run's own results.json and report,
 * exactly as `psm run` with all the seeds would have written them, so `psm compare`, `psm report` and `psm runs` read a
 * sweep's runs like any other; then every grid point is compared with `psm compare`'s tables (per-seed values, 95%
 * t-intervals over seeds, Bayes's value, paired and Welch differences from the first grid point) in report/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import {
  comparisonMarkdown,
  compareRuns,
  writeComparison,
  type ComparedRun,
  type Comparison,
} from '../pipeline/compare.ts';
import { renderReport } from '../pipeline/report.ts';
import type { RunResults } from '../pipeline/results.ts';
import { variantsOf, type PlannedRun, type SweepPlan } from './plan.ts';
import { findJob, isJobDone, jobRunDir } from './store.ts';

export interface AssembledRun {
  run: PlannedRun;
  /** Where its results.json is: runs/<run> when every seed is done, runs/<run>/partial before. */
  dir: string;
  partial: boolean;
  seedsDone: number;
  results: RunResults;
}

/** A run's finished seeds in the order `psm run` lists them (each seed's standard run, then the alignment ones). */
export function assembleRun(sweepDir: string, plan: SweepPlan, run: PlannedRun): AssembledRun | null {
  const done = run.jobs.map((id) => findJob(plan, id)).filter((j) => isJobDone(sweepDir, j));
  if (done.length === 0) return null;
  const perJob = done.map((j) => {
    const file = path.join(sweepDir, jobRunDir(j), 'results.json');
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8')) as RunResults;
    } catch (e) {
      throw new Error(`${file}: cannot be read (${(e as Error).message})`, { cause: e });
    }
  });
  const seeds = variantsOf(run.config).flatMap((variant) =>
    run.config.seeds.flatMap((seed) =>
      perJob.flatMap((r) => r.seeds.filter((s) => s.seed === seed && s.variant === variant)),
    ),
  );
  const partial = done.length < run.jobs.length;
  const runDir = path.join(sweepDir, 'runs', run.id);
  return {
    run,
    dir: partial ? path.join(runDir, 'partial') : runDir,
    partial,
    seedsDone: done.length,
    results: {
      version: perJob[0].version,
      createdAt: perJob.map((r) => r.createdAt).sort()[perJob.length - 1],
      config: run.config,
      world: perJob[0].world,
      seeds,
    },
  };
}

/** Writes the run's results.json and report, unless the same results are there already. */
async function writeRun(a: AssembledRun): Promise<void> {
  const file = path.join(a.dir, 'results.json');
  const text = JSON.stringify(a.results, null, 2);
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim() === text) return;
  fs.mkdirSync(a.dir, { recursive: true });
  atomicWriteJsonSync(file, a.results);
  await renderReport(a.dir, a.results);
}

export interface SweepReport {
  dir: string;
  files: string[];
  runs: AssembledRun[];
  comparison: Comparison | null;
}

function sweepMarkdown(plan: SweepPlan, runs: readonly AssembledRun[], c: Comparison | null): string {
  const out = [`# Sweep ${plan.name}`, '', `From \`${plan.source}\`: ${plan.runs.length} grid points.`, ''];
  out.push('| grid point | run folder | seeds done |', '| --- | --- | --- |');
  for (const r of plan.runs) {
    const a = runs.find((x) => x.run.id === r.id);
    out.push(`| ${r.label} | runs/${r.id} | ${a?.seedsDone ?? 0} of ${r.jobs.length} |`);
  }
  out.push('');
  if (c) out.push(comparisonMarkdown(c, 'compare.svg').replace(/^# Run comparison\n/, '## Comparison\n'));
  else out.push('No grid point has a finished seed yet.', '');
  return out.join('\n');
}

/**
 * Writes each run's results and report and the sweep's comparison (report/sweep.md, sweep.json, compare.md,
 * compare.json and the figure); runs with some seeds done are compared on those (marked unfinished).
 */
export async function writeSweepReport(sweepDir: string, plan: SweepPlan): Promise<SweepReport> {
  const runs: AssembledRun[] = [];
  for (const run of plan.runs) {
    const a = assembleRun(sweepDir, plan, run);
    if (!a) continue;
    await writeRun(a);
    runs.push(a);
  }
  const compared: ComparedRun[] = runs.flatMap((a) =>
    variantsOf(a.run.config).map((variant) => ({
      label: variant === 'standard' ? a.run.label : `${a.run.label} (${variant})`,
      dir: path.relative(sweepDir, a.dir),
      variant,
      partial: a.partial,
      results: a.results,
    })),
  );
  const comparison = compared.length > 0 ? compareRuns(compared, plan.metrics) : null;
  const dir = path.join(sweepDir, 'report');
  fs.mkdirSync(dir, { recursive: true });
  const files = comparison ? await writeComparison(dir, comparison) : [];
  atomicWriteFileSync(path.join(dir, 'sweep.md'), sweepMarkdown(plan, runs, comparison));
  atomicWriteJsonSync(path.join(dir, 'sweep.json'), {
    name: plan.name,
    source: plan.source,
    grid: plan.grid,
    runs: plan.runs.map((r) => {
      const a = runs.find((x) => x.run.id === r.id);
      return {
        id: r.id,
        label: r.label,
        values: r.values,
        seedsDone: a?.seedsDone ?? 0,
        seeds: r.jobs.length,
      };
    }),
    comparison,
  });
  files.push(path.join(dir, 'sweep.md'), path.join(dir, 'sweep.json'));
  return { dir, files, runs, comparison };
}
