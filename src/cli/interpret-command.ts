/**
 * `psm interpret <seedDir>`: the pipeline's whole interpretation of one seed folder of a finished run (vectors,
 * monitoring, steering, shift, screening, persona space, probe, and the run's trials), with the run's settings
 * (docs/interpret.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { InterpretSummary } from '../interpret/types.ts';
import { f, intOption, runOfSeedFolder, seedOfFolder } from './options.ts';

export interface InterpretOptions {
  /** A seed folder of a run, <run>/standard-seed<N>. */
  seedDir: string;
  world?: string;
  /** Held-out items per domain (default: the run's, else 48). */
  items?: number;
  /** Output folder (default <seedDir>/interpret). */
  out?: string;
  drift: boolean;
  /** Also what fine-tunes again: the trait fine-tunes, the screening and the preventative trials. */
  trials: boolean;
}

export function registerInterpretCommand(program: Command): void {
  program
    .command('interpret <seedDir>')
    .description(
      'The whole interpretation of one seed folder of a run (<run>/standard-seed<N>): vectors, monitoring, steering, shift, screening, persona space, probe',
    )
    .option(
      '--world <file>',
      "world file (default: the run's, from <run>/config.yaml, else the built-in world)",
    )
    .option('--items <n>', "held-out items per domain (default: the run's, else 48)", intOption('--items', 4))
    .option('--out <dir>', 'output folder (default <seedDir>/interpret)')
    .option('--no-drift', 'skip multi-turn drift traces')
    .option(
      '--no-trials',
      'skip what fine-tunes again (the trait fine-tunes, the screening and the preventative trials)',
    )
    .action(async (seedDir: string, o: Omit<InterpretOptions, 'seedDir'>) => {
      await runInterpret({ seedDir, ...o });
    });
}

/** The seed's arm models, in the run's order of arms and trainable sets (the pipeline's), else the folders' order. */
function armDirsOf(seedDir: string, order: { arms: readonly string[]; trainable: readonly string[] } | null) {
  const armDirs = fs
    .readdirSync(seedDir)
    .filter((d) => d.startsWith('ft-') && fs.existsSync(path.join(seedDir, d, 'model', 'model.safetensors')))
    .map((d) => {
      const m = /^ft-(.+)-([^-]+)$/.exec(d)!;
      return { arm: m[1], trainable: m[2], dir: path.join(seedDir, d, 'model') };
    });
  if (order) {
    const rank = (list: readonly string[], x: string) => (list.includes(x) ? list.indexOf(x) : list.length);
    armDirs.sort(
      (a, b) =>
        rank(order.arms, a.arm) - rank(order.arms, b.arm) ||
        rank(order.trainable, a.trainable) - rank(order.trainable, b.trainable),
    );
  }
  return armDirs;
}

/** Runs the interpretation (writing interpret.json), prints its main numbers, and returns its summary. */
export async function runInterpret(o: InterpretOptions): Promise<InterpretSummary> {
  const { seedDir } = o;
  // In a run folder, the run's config gives the world and the trials, as `psm run` ran them.
  const [{ runConfig, world }, experiment] = await Promise.all([
    runOfSeedFolder(seedDir, o.world),
    import('../pipeline/experiment.ts'),
  ]);
  const seed = seedOfFolder(seedDir);
  if (runConfig && o.trials && seed === undefined)
    throw new Error(
      `${seedDir} does not end in seed<N>: the run's trials need the seed (or pass --no-trials)`,
    );
  const studies =
    runConfig && o.trials
      ? experiment.interpretStudies(
          runConfig,
          world,
          seed!,
          runConfig.finetune.domain || world.datasets.narrow?.domain || '',
        )
      : { itemsPerDomain: runConfig?.interpret.itemsPerDomain };
  const [{ configureBackend }, { interpretRun }, { terminalProgress }] = await Promise.all([
    import('../tensor/backend.ts'),
    import('../interpret/run.ts'),
    import('./progress.ts'),
  ]);
  configureBackend();
  const post = path.join(seedDir, 'posttrain', 'model');
  const base = path.join(seedDir, 'pretrain', 'model');
  for (const d of [post, base])
    if (!fs.existsSync(d))
      throw new Error(
        `${d} not found: is ${seedDir} a seed folder of a finished run (<run>/standard-seed<N>)?`,
      );
  const armDirs = armDirsOf(seedDir, runConfig?.finetune ?? null);
  const t0 = Date.now();
  const s = await interpretRun(seedDir, {
    world,
    armDirs,
    postDir: post,
    baseDir: base,
    ...studies,
    itemsPerDomain: o.items ?? studies.itemsPerDomain,
    outDir: o.out,
    drift: o.drift,
    progress: terminalProgress,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stdout.write(
    `trait\tmethod\tlayer\tmonitor_r\trandom_|r|\tP(good) at alphas ${s.settings.alphas.join(',')}\tmonotonic\tmonotonic_coherent\n`,
  );
  for (const v of s.vectors) {
    const mo = s.monitoring.find((x) => x.trait === v.trait)!;
    const st = s.steering.find((x) => x.trait === v.trait)!;
    process.stdout.write(
      `${v.trait}\t${v.method}\t${v.bestLayer}\t${f(mo.r)}\t${f(mo.rRandom)}\t${st.pGood.map((p) => f(p)).join(' ')}\t${st.monotonic}\t${st.monotonicCoherent}\n`,
    );
  }
  process.stdout.write(
    `shift prediction r = ${f(s.shift.r)}${s.shift.rExcluding !== null ? ` (without ${s.shift.excluded.join(', ')}: ${f(s.shift.rExcluding)})` : ''} over ${s.shift.points.length} points\n`,
  );
  process.stdout.write(
    `persona space: layer ${s.space.layer}, ${s.space.componentsFor70} components for 70%, cos(axis, PC1) = ${f(s.space.axisCosPC1)}\n`,
  );
  process.stdout.write(
    `probe: TV to Bayes ${f(s.probe.tv)} (prior ${f(s.probe.tvPrior)}), r ${f(s.probe.r)}\n`,
  );
  for (const t of s.preventative ?? [])
    process.stdout.write(
      `preventative ${t.subspace ? `${t.method}/${t.subspace}` : t.method}: off-target drop ${f(t.offTargetDrop.plain)} plain, ${f(t.offTargetDrop.steered)} with it (reduction ${f(t.reduction)})\n`,
    );
  if (s.screeningTrial)
    process.stdout.write(
      `screening trial: off-target change ${s.screeningTrial.subsets.map((x) => `${x.name} ${f(x.offTargetChange)}`).join(', ')}\n`,
    );
  process.stdout.write(
    `${path.join(o.out ?? path.join(seedDir, 'interpret'), 'interpret.json')} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
  );
  return s;
}
