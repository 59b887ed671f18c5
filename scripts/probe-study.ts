/**
 * The archetype-posterior probe of the interpretation under several settings, on the pre-trained model of every
 * seed folder of a run: how close each setting's probe comes to the exact Bayesian posterior over archetypes, next
 * to the evidence-free prior of the subject's kind.
 *
 *   npx tsx scripts/probe-study.ts <runDir> [--settings old,new] [--interp-seed 1] [--items-per-domain 48]
 *
 * Settings: `old` (the probe before this study: one-target persona items, 12 N of them, one layer chosen by
 * held-out KL, fixed-step Adam on standardised features with L2 0.03, no prior offset), `new` (archetypeProbe's
 * defaults), and ablations between them: `old+offset` (old with the kind prior as an offset), `items-fit` (the
 * old items with the new fit: layers concatenated, whitened, prior offset, L2 by held-out KL, L-BFGS),
 * `chains-1layer` (the new data and fit but one layer chosen by held-out KL, no concatenation).
 *
 * Prints per seed and setting, for choosing settings (never the evaluation probes): the held-out KL and TV of the
 * probe's own held-out fifth next to the kind prior's TV there, and TV on 600 independent held-out persona items
 * (personaItems, seed 9802); then for reporting: TV on the pipeline's evaluation probes (inferenceProbes, the
 * interpretation's seed 800 + interp-seed, N / 12 per (k, domain)) and on 20 per cell of the same seed (a
 * superset, less noisy), next to the prior's TV, by k, the correlation of the updates (rUpdate) and top-1
 * agreement; the probe's time (training data, fits and the pipeline's evaluation, as interpretRun calls it).
 * Choose settings on a development set (runs/default-docwindows-s3) and report on another.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { loadModelHandle } from '../src/interpret/activations.ts';
import { personaItems } from '../src/interpret/contexts.ts';
import { archetypeProbe, itemAgreement, type Agreement, type ProbeOptions } from '../src/interpret/probe.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { defaultWorldPath, inferenceProbes, loadWorld } from '../src/world/index.ts';

const program = new Command()
  .argument('<runDir>', 'a run folder whose seed folders have pretrain/model')
  .option(
    '--settings <list>',
    'settings to compare (old, old+offset, items-fit, chains-1layer, new)',
    'old,new',
  )
  .option('--interp-seed <n>', "interpretRun's seed (the pipeline uses 1; the probe's seed is 800 + it)", '1')
  .option(
    '--items-per-domain <n>',
    "interpretRun's N (the old probe's 12 N items, N / 12 probes per cell)",
    '48',
  )
  .option('--json <file>', 'also write every number as JSON')
  .parse();
const o = program.opts();
const interpSeed = Number(o.interpSeed);
const N = Number(o.itemsPerDomain);
if (!Number.isInteger(interpSeed)) throw new Error(`--interp-seed: "${o.interpSeed}" is not an integer`);
if (!Number.isInteger(N) || N < 4)
  throw new Error(`--items-per-domain: "${o.itemsPerDomain}" is not an integer >= 4`);
const runDir = program.args[0];

const oldFit: ProbeOptions = {
  solver: 'adam',
  whiten: false,
  l2: 3e-2,
  iterations: 250,
  concat: false,
  priorOffset: false,
  refit: false,
};
const SETTINGS: Record<string, ProbeOptions> = {
  old: { source: 'items', size: Math.max(120, 12 * N), ...oldFit },
  'old+offset': { source: 'items', size: Math.max(120, 12 * N), ...oldFit, priorOffset: true },
  'items-fit': { source: 'items', size: Math.max(120, 12 * N) },
  'chains-1layer': { concat: false },
  new: {},
};
const names = String(o.settings).split(',');
for (const s of names)
  if (!(s in SETTINGS))
    throw new Error(`--settings: unknown "${s}" (known: ${Object.keys(SETTINGS).join(', ')})`);

const seedDirs = fs
  .readdirSync(runDir)
  .filter((d) => /seed\d+$/.test(d) && fs.existsSync(path.join(runDir, d, 'pretrain', 'model')))
  .sort();
if (seedDirs.length === 0) throw new Error(`${runDir}: no seed folder with pretrain/model`);

configureBackend();
const world = loadWorld(defaultWorldPath());
const seed = 800 + interpSeed;
const ks = [0, 1, 2, 3, 4, 5];
// The pipeline's evaluation probes, a less noisy superset (same seed: item j of a cell does not depend on the
// number per cell), and held-out persona items like the probe's own training rows (for choosing, not reporting).
const evalPipeline = inferenceProbes(world, { seed, ks, inferencePerCell: Math.max(2, Math.round(N / 12)) });
const eval20 = inferenceProbes(world, { seed, ks, inferencePerCell: 20 });
const valItems = personaItems(world, 600, 9802, 5, 'heldout');

const f = (x: number) => x.toFixed(3);
const byK = (a: Agreement) => a.byK.map((b) => `k${b.k} ${f(b.tv)}/${f(b.tvPrior)}`).join('  ');
const results: Record<string, unknown>[] = [];
for (const dir of seedDirs) {
  const handle = loadModelHandle(path.join(runDir, dir, 'pretrain', 'model'));
  for (const name of names) {
    const t0 = performance.now();
    const pr = archetypeProbe(handle, world, { ...SETTINGS[name], seed, evalItems: evalPipeline });
    const seconds = (performance.now() - t0) / 1000;
    const val = itemAgreement(handle, world, pr.probe, valItems);
    const ev20 = itemAgreement(handle, world, pr.probe, eval20);
    const own = pr.perLayer.find((r) => r.layers.join() === pr.layers.join())!;
    const a = pr.agreement;
    console.log(
      `${dir} ${name}: ${seconds.toFixed(1)} s, layers ${pr.layers.join('+')}, L2 ${pr.l2}, ${pr.trainRows} rows\n` +
        `  choose  held-out KL ${f(own.valKL)} TV ${f(own.valTV)} (prior ${f(own.valTVPrior)}, mean target ${f(own.valTVBaseline)}); ` +
        `600 persona items KL ${f(val.kl)} TV ${f(val.tv)} (prior ${f(val.tvPrior)})\n` +
        `  report  eval ${a.n}: TV ${f(a.tv)} (prior ${f(a.tvPrior)}) KL ${f(a.kl)} rUpdate ${f(a.rUpdate)} top1 ${f(a.top1)} | ${byK(a)}\n` +
        `          eval ${ev20.n}: TV ${f(ev20.tv)} (prior ${f(ev20.tvPrior)}) KL ${f(ev20.kl)} rUpdate ${f(ev20.rUpdate)} top1 ${f(ev20.top1)} | ${byK(ev20)}`,
    );
    results.push({
      seed: dir,
      setting: name,
      seconds,
      layers: pr.layers,
      l2: pr.l2,
      trainRows: pr.trainRows,
      heldOut: own,
      grid: pr.grid,
      validation: val,
      evalPipeline: a,
      eval20: ev20,
    });
  }
}
console.log('\nMean over seeds (TV to Bayes / the prior alone):');
for (const name of names) {
  const rs = results.filter((r) => r.setting === name);
  const m = (get: (r: Record<string, unknown>) => number) => rs.reduce((s, r) => s + get(r), 0) / rs.length;
  const ag = (key: string) => (r: Record<string, unknown>) => r[key] as Agreement;
  const line = (key: string) => {
    const a = ag(key);
    return `TV ${f(m((r) => a(r).tv))}/${f(m((r) => a(r).tvPrior))}, k0 ${f(m((r) => a(r).byK[0].tv))}, k5 ${f(m((r) => a(r).byK[a(r).byK.length - 1].tv))}, rUpdate ${f(m((r) => a(r).rUpdate))}, top1 ${f(m((r) => a(r).top1))}`;
  };
  console.log(
    `  ${name.padEnd(14)} ${f(m((r) => r.seconds as number))} s | held-out KL ${f(m((r) => (r.heldOut as { valKL: number }).valKL))} | val ${line('validation')} | eval ${line('evalPipeline')} | eval20 ${line('eval20')}`,
  );
}
if (o.json) fs.writeFileSync(o.json, JSON.stringify({ runDir, interpSeed, N, results }, null, 1));
