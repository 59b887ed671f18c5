/** `psm compare RUN_A RUN_B [...]`: any metric of the report across runs, per seed, with intervals and differences. */
import type { Command } from 'commander';
import { intOption, listOption } from './options.ts';

export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description(
      "Compare runs on any metric of the report: per-seed values, 95% t-intervals over seeds, Bayes's value, and each run's difference from the first (paired over the seeds both have, Welch's two-sample interval always)",
    )
    .argument('<runs...>', 'run folders; DIR:alignment for the alignment-pre-training variant of a run')
    .option(
      '--metric <names>',
      'comma-separated metric names (default: the headline metrics; --list shows all)',
    )
    .option('--labels <names>', 'comma-separated labels for the runs (default: the folder names)')
    .option('--list', 'list the metrics every given run has, and stop')
    .option(
      '--out <dir>',
      'also write compare.md, compare.json and the figure (compare.svg/.png/.vl.json) there',
    )
    .option('--json', 'print the comparison as JSON instead of a table')
    .action(
      async (
        runs: string[],
        o: { metric?: string; labels?: string; list?: boolean; out?: string; json?: boolean },
      ) => {
        const { availableMetrics, compareRuns, formatComparison, loadComparedRun, writeComparison } =
          await import('../pipeline/compare.ts');
        const split = (s: string | undefined) =>
          s
            ?.split(',')
            .map((x) => x.trim())
            .filter(Boolean);
        const labels = split(o.labels);
        if (labels && labels.length !== runs.length)
          throw new Error(`--labels: ${labels.length} label(s) for ${runs.length} run(s)`);
        const loaded = runs.map((r, i) => loadComparedRun(r, labels?.[i]));
        if (new Set(loaded.map((r) => r.label)).size !== loaded.length)
          throw new Error(
            `two runs have the same label (${loaded.map((r) => r.label).join(', ')}); give --labels`,
          );
        if (o.list) {
          for (const d of availableMetrics(loaded).shared)
            process.stdout.write(`${d.name.padEnd(32)} ${d.description}\n`);
          return;
        }
        const c = compareRuns(loaded, split(o.metric));
        process.stdout.write(`${o.json ? JSON.stringify(c, null, 2) : formatComparison(c)}\n`);
        if (o.out) {
          const files = await writeComparison(o.out, c);
          process.stderr.write(`wrote ${files.join(', ')}\n`);
        }
      },
    );
}

/** `psm diff RUN_A RUN_B`: the same-numbers check between two runs of one config. */
export function registerDiffCommand(program: Command): void {
  program
    .command('diff')
    .description(
      "Compare two runs' results number by number (the seeds both have): how many agree to the bit, the largest differences and where, and the stage timings side by side; for checking that a change leaves the science unchanged",
    )
    .argument('<runA>', 'run folder (with results.json or partial/results.json)')
    .argument('<runB>', 'run folder')
    .option(
      '--seeds <list>',
      'comma-separated seeds to compare (default: every seed both runs have)',
      listOption('--seeds', 'int'),
    )
    .option('--top <n>', 'differences listed per seed', intOption('--top'), 10)
    .option('--json', 'print the differences as JSON')
    .action(async (runA: string, runB: string, o: { seeds?: number[]; top: number; json?: boolean }) => {
      const [{ loadComparedRun }, { formatDifferences, resultsDifferences }] = await Promise.all([
        import('../pipeline/compare.ts'),
        import('../pipeline/results-diff.ts'),
      ]);
      const diffs = resultsDifferences(loadComparedRun(runA).results, loadComparedRun(runB).results, o.seeds);
      process.stdout.write(`${o.json ? JSON.stringify(diffs, null, 2) : formatDifferences(diffs, o.top)}\n`);
    });
}
