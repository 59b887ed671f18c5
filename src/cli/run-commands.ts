/** The experiment commands: `psm run`, `psm report`, `psm runs`, and the world commands. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { registerWorldCommands } from '../world/cli.ts';
import { intOption } from './options.ts';

function defaultRunDir(preset: string | undefined, seeds: number): string {
  const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..+/, '');
  return path.join('runs', `${preset ?? 'default'}-s${seeds}-${stamp}`);
}

export function registerRunCommands(program: Command): void {
  program
    .command('run')
    .description(
      'Run the PSM experiment end to end (corpus, pre-training, persona check, post-training, narrow fine-tunes, report)',
    )
    .option('--preset <name>', 'default | quick (a few minutes, effects not expected)')
    .option('--config <file>', 'experiment config (YAML), merged over the preset')
    .option('--seeds <n>', 'number of seeds (1..n), overriding the config', intOption('--seeds', 1, 50))
    .option(
      '--out <dir>',
      'run folder (default runs/<preset>-s<n>-<time>); an existing one resumes, one psm run at a time',
    )
    .option('--force', 'overwrite stages whose inputs changed')
    .action(
      async (o: { preset?: string; config?: string; seeds?: number; out?: string; force?: boolean }) => {
        const { resolveConfig } = await import('../pipeline/config.ts');
        const { runExperiment } = await import('../pipeline/experiment.ts');
        const { lockFolder } = await import('../io/folder-lock.ts');
        const { terminalProgress } = await import('./progress.ts');
        let seeds: number[] | undefined;
        if (o.seeds !== undefined) seeds = Array.from({ length: o.seeds }, (_, i) => i + 1);
        const config = resolveConfig({ preset: o.preset, file: o.config, overrides: seeds ? { seeds } : {} });
        const runDir = o.out ?? defaultRunDir(o.preset, config.seeds.length);
        // One writer per run folder: a second psm run on it is refused while this one runs (or until it is killed).
        const release = lockFolder(runDir);
        const t0 = Date.now();
        process.stderr.write(
          `psm run: ${runDir} (world ${config.world}, ${config.seeds.length} seed(s), ${config.corpus.tokens} pre-training tokens)\n`,
        );
        try {
          await runExperiment(config, {
            runDir,
            force: o.force,
            progress: terminalProgress,
            log: (l) => process.stderr.write(`${l}\n`),
          });
        } finally {
          release();
        }
        process.stderr.write(`done in ${((Date.now() - t0) / 60000).toFixed(1)} min\n`);
        process.stdout.write(`${path.join(runDir, 'report.html')}\n`);
      },
    );

  program
    .command('report <run>')
    .description('Re-render the report of a finished run from its results.json')
    .action(async (run: string) => {
      const { renderReport } = await import('../pipeline/report.ts');
      const file = path.join(run, 'results.json');
      if (!fs.existsSync(file)) throw new Error(`${file} not found: is ${run} a finished run folder?`);
      const results = JSON.parse(fs.readFileSync(file, 'utf8'));
      process.stdout.write(`${await renderReport(run, results)}\n`);
    });

  program
    .command('runs')
    .description('List runs with their key numbers')
    .option('--dir <dir>', 'folder holding run folders', 'runs')
    .action(async (o: { dir: string }) => {
      const { summarize } = await import('../pipeline/report.ts');
      if (!fs.existsSync(o.dir)) {
        process.stdout.write(`no runs in ${o.dir}\n`);
        return;
      }
      process.stdout.write('run\tstatus\tseeds\tpersona_r\tpost_rise\tcheat-control(all)\n');
      for (const name of fs.readdirSync(o.dir).sort()) {
        const dir = path.join(o.dir, name);
        const file = path.join(dir, 'results.json');
        if (!fs.existsSync(file)) {
          if (fs.existsSync(path.join(dir, 'config.json'))) process.stdout.write(`${name}\tunfinished\n`);
          continue;
        }
        // One unreadable folder should not hide the others.
        let s: ReturnType<typeof summarize>;
        try {
          s = summarize(JSON.parse(fs.readFileSync(file, 'utf8')));
        } catch (e) {
          process.stdout.write(`${name}\tunreadable: ${(e as Error).message}\n`);
          continue;
        }
        const cheat = s.arms.find((a) => a.arm === 'cheat' && a.vsControl);
        const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
        process.stdout.write(
          `${name}\tdone\t${s.seeds}\t${f(s.personaInference.meanCorrelation.mean)}\t${f(s.postTraining.rise.mean)}\t${cheat?.vsControl ? f(cheat.vsControl.mean) : 'n/a'}\n`,
        );
      }
    });

  // `psm world generate --tokenizer FILE` reads a Hugging Face tokenizer.json (e.g. one a run trained).
  registerWorldCommands(program, {
    loadTokenizer: async (spec) => {
      const { loadTokenizerSync } = await import('../tokenizer/index.ts');
      return loadTokenizerSync(spec);
    },
  });
}
