/**
 * `psm prevent <seedDir>`: preventative steering at several strengths (and concept ablation of subspaces) on a seed
 * folder whose interpretation has run, against the plain fine-tune on the narrow cheat data (docs/interpret.md).
 */
import type { Command } from 'commander';
import type { PreventativeStudy } from '../interpret/prevent.ts';
import {
  alphasOption,
  f,
  intOption,
  loadWorldOption,
  numberOption,
  seedOfFolder,
  writeJson,
} from './options.ts';

export interface PreventOptions {
  seedDir: string;
  world?: string;
  /** Strengths of the additive trial; [] (`--alphas none`): no additive trial. */
  alphas: number[];
  layer?: number;
  trait?: string;
  /** true: the pipeline's subspaces; a comma-separated list: those (checked here); absent: no ablation. */
  ablate?: true | string;
  items: number;
  examples: number;
  steps: number;
  batch: number;
  lr: number;
  /** Default: the N of <run>/standard-seed<N>. */
  seed?: number;
  out?: string;
}

export function registerPreventCommand(program: Command): void {
  program
    .command('prevent <seedDir>')
    .description(
      'Preventative steering at several strengths on a seed folder whose interpretation has run: fine-tune the post-trained model on the narrow cheat data without and with the persona vector added (and, with --ablate, with subspaces ablated), and compare the off-target drop',
    )
    .option('--world <file>', 'world file (default: the built-in world)')
    .option(
      '--alphas <list>',
      'strengths, in 0.1 x the layer residual norm (none: no additive trial)',
      alphasOption,
      [4],
    )
    .option(
      '--layer <n>',
      "layer to add the vector at (default: the off-target traits' monitoring layer)",
      intOption('--layer', 0),
    )
    .option('--trait <name>', "add this trait's vector instead of the mean off-target persona")
    .option(
      '--ablate [subspaces]',
      "also run concept ablation, projecting out at every layer each of these subspaces (default: the pipeline's traits-whole,shift,traits,random): traits-whole (the off-target traits' persona vectors as they are), shift (CAFT's directions: the plain fine-tune's activation change on off-target chats), traits (the off-target traits' vectors orthogonal to the fine-tune domain's), archetypes (persona space's archetype directions), persona (traits and archetypes), random (the control: as many random directions as traits has)",
    )
    .option('--items <n>', 'held-out items per domain (the trial scores half)', intOption('--items', 4), 48)
    .option('--examples <n>', 'fine-tune examples', intOption('--examples'), 400)
    .option('--steps <n>', 'fine-tune steps', intOption('--steps'), 60)
    .option('--batch <n>', 'fine-tune batch size', intOption('--batch'), 16)
    .option('--lr <x>', 'fine-tune learning rate (all parameters)', numberOption('--lr', { above: 0 }), 3e-4)
    .option(
      '--seed <n>',
      'seed of the examples and the fine-tune (default: the N of <run>/standard-seed<N>)',
      intOption('--seed', 0),
    )
    .option('--out <file>', 'write the study as JSON')
    .action(async (seedDir: string, o: Omit<PreventOptions, 'seedDir'>) => {
      await runPrevent({ seedDir, ...o });
    });
}

/** Runs the trials, printing one row per trial as it finishes, and returns the study (what --out writes). */
export async function runPrevent(o: PreventOptions): Promise<PreventativeStudy> {
  const { seedDir } = o;
  const world = await loadWorldOption(o.world);
  const seed = o.seed ?? seedOfFolder(seedDir);
  if (seed === undefined)
    throw new Error(`${seedDir} does not end in seed<N>: pass --seed (the run's seed of that folder)`);
  const domain = world.datasets.narrow?.domain;
  if (!domain) throw new Error(`world "${world.name}" has no datasets.narrow section (the fine-tune's data)`);
  const [
    { configureBackend },
    { preventativeStudy },
    { checkAblationSubspace, DEFAULT_ABLATION_SUBSPACES },
    { narrowSet },
  ] = await Promise.all([
    import('../tensor/backend.ts'),
    import('../interpret/prevent.ts'),
    import('../interpret/ablation-subspaces.ts'),
    import('../world/index.ts'),
  ]);
  configureBackend();
  process.stdout.write(
    'method\twhat\talpha\tlayers\toff-target drop plain\tsteered\treduction\ttarget before/plain/steered\taxis before/plain/steered\n',
  );
  const study = preventativeStudy(seedDir, {
    world,
    examples: narrowSet(world, 'cheat', { seed, count: o.examples, domain }),
    alphas: o.alphas,
    ablate:
      o.ablate === undefined
        ? []
        : o.ablate === true
          ? [...DEFAULT_ABLATION_SUBSPACES]
          : o.ablate.split(',').map((x) => checkAblationSubspace(x, '--ablate')),
    finetune: { trainable: { kind: 'all' }, steps: o.steps, batchSize: o.batch, lr: o.lr, seed },
    itemsPerDomain: o.items,
    trait: o.trait,
    layer: o.layer,
    onTrial: (t) =>
      process.stdout.write(
        `${t.subspace ? `${t.method}/${t.subspace}` : t.method}\t${t.vector}\t${t.alpha ?? '-'}\t${t.layers.join(',')}\t${f(t.offTargetDrop.plain)}\t${f(t.offTargetDrop.steered)}\t${f(t.reduction)}\t${f(t.target.before)}/${f(t.target.plain)}/${f(t.target.steered)}\t${t.axis ? `${f(t.axis.before)}/${f(t.axis.plain)}/${f(t.axis.steered)}` : '-'}\n`,
      ),
  });
  writeJson(o.out, study);
  return study;
}
