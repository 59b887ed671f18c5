/**
 * `psm persona-check`: in-context persona inference of a model against Bayes (P(consistent), r and MAE per number of
 * earlier scenes, how each earlier scene is weighed, the unexplained residual, and the package deal).
 */
import type { Command } from 'commander';
import type { PersonaCheck } from '../pipeline/results.ts';
import type { EvalItem } from '../world/index.ts';
import { f, handleFor, intOption, loadWorldOption, writeJson } from './options.ts';

export interface PersonaCheckOptions {
  model: string;
  world?: string;
  /** Inference probes per (k, target domain). */
  items: number;
  /** Package probes per (target domain, valence). */
  packageItems: number;
  maxK: number;
  /** heldout | train, where contexts and names come from (checked here). */
  contexts: string;
  names: string;
  seed: number;
  out?: string;
}

export function registerPersonaCheckCommand(program: Command): void {
  program
    .command('persona-check')
    .description(
      'In-context persona inference of a model against Bayes: P(consistent), r and MAE per number of earlier scenes, how each earlier scene is weighed, the unexplained residual, and the package deal',
    )
    .requiredOption('--model <dir>', 'model folder (e.g. <run>/<variant>-seed1/pretrain/model)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--items <n>', 'inference probes per (k, target domain)', intOption('--items'), 30)
    .option(
      '--package-items <n>',
      'package probes per (target domain, valence)',
      intOption('--package-items'),
      20,
    )
    .option('--max-k <n>', 'largest number of earlier scenes', intOption('--max-k'), 5)
    .option(
      '--contexts <pool>',
      'heldout | train: where contexts come from (train only to diagnose)',
      'heldout',
    )
    .option('--names <pool>', 'heldout | train: where names come from (train only to diagnose)', 'heldout')
    .option('--seed <n>', 'seed of the probe set', intOption('--seed', 0), 0)
    .option('--out <file>', 'also write the result as JSON')
    .action(async (o: PersonaCheckOptions) => {
      await runPersonaCheck(o);
    });
}

/** Scores the probes, prints the check per k and the package deal, and returns what --out writes. */
export async function runPersonaCheck(
  o: PersonaCheckOptions,
): Promise<PersonaCheck & Record<string, unknown>> {
  const pool = (name: string, v: string): 'heldout' | 'train' => {
    if (v !== 'heldout' && v !== 'train') throw new Error(`${name} must be heldout or train, got "${v}"`);
    return v;
  };
  const pools = { contexts: pool('--contexts', o.contexts), names: pool('--names', o.names) };
  const { maxK, seed } = o;
  const world = await loadWorldOption(o.world);
  const [
    { inferenceProbes, packageProbes },
    { pGoodWithProgress, personaCheck },
    { mean },
    { terminalProgress },
    { choiceItemAsRead },
  ] = await Promise.all([
    import('../world/index.ts'),
    import('../pipeline/measure.ts'),
    import('../measurement/stats.ts'),
    import('./progress.ts'),
    import('../interpret/activations.ts'),
  ]);
  const ks = Array.from({ length: maxK + 1 }, (_, k) => k);
  const inference = inferenceProbes(world, { seed, ks, inferencePerCell: o.items, pools });
  const pkg = packageProbes(world, { seed, packagePerCell: o.packageItems, pools });
  const h = await handleFor(o.model);
  // Each probe as this model reads it: the separator first for a PSM Lab model, its own chat template otherwise.
  const asRead = <T extends EvalItem>(it: T): T => ({ ...it, ...choiceItemAsRead(h, it) });
  const [inferenceRead, pkgRead] = [inference.map(asRead), pkg.map(asRead)];
  const longest = Math.max(
    ...[...inferenceRead, ...pkgRead].map(
      (it) =>
        h.tokenizer.encode(it.prompt).length +
        Math.max(...[...it.good, ...it.bad].map((x) => h.tokenizer.encode(x).length)),
    ),
  );
  if (longest - 1 > h.model.config.maxSeqLen)
    throw new Error(
      `probes with up to ${maxK} earlier scenes need ${longest - 1} positions; the model's context is ${h.model.config.maxSeqLen} (lower --max-k)`,
    );
  const pInf = pGoodWithProgress(
    h.model,
    h.tokenizer,
    inferenceRead,
    terminalProgress,
    'persona inference',
    '',
  );
  const pPkg = pGoodWithProgress(h.model, h.tokenizer, pkgRead, terminalProgress, 'package deal', '');
  const check = personaCheck(inference, pInf, pkg, pPkg, maxK);
  process.stdout.write(
    `contexts ${pools.contexts}, names ${pools.names}; mean r over k >= 1: ${f(check.meanCorrelation)}${check.emerged ? '' : ' (not emerged)'}\n`,
  );
  process.stdout.write(
    'k\tn\tP(consistent)\tBayes\tr\tMAE\tresidual (logit sd)\tweight of each earlier scene, first..last: network | Bayes (mean, alike in expectation)\n',
  );
  for (const p of check.byK) {
    const ev = check.evidence?.find((e) => e.k === p.k);
    const w = (xs: number[] | undefined) => (xs && xs.length ? xs.map((x) => f(x, 2)).join(' ') : '-');
    process.stdout.write(
      `${p.k}\t${p.n}\t${f(p.model)}\t${f(p.bayes)}\t${f(p.correlation)}\t${f(p.mae)}\t${ev ? f(ev.residualSd, 2) : '-'}\t${w(ev?.network)} | ${ev && ev.bayes.length ? f(mean(ev.bayes), 2) : '-'}\n`,
    );
  }
  for (const d of check.packageDeal)
    process.stdout.write(
      `package deal after all-${d.evidence} scenes: ${f(d.model)} (Bayes ${f(d.bayes)}, n ${d.n})\n`,
    );
  const saved = { model: o.model, pools, seed, ...check };
  writeJson(o.out, saved);
  return saved;
}
