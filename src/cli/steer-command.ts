/**
 * `psm steer`: dose-response of the held-out trait battery under steering with persona vectors (alpha x vector added),
 * their ablation, or capping on the assistant axis (docs/interpret.md).
 */
import type { Command } from 'commander';
import { itemSeedOf } from '../interpret/item-seeds.ts';
import {
  CHAT_TEMPLATE_OPTION,
  f,
  handleFor,
  intOption,
  listOption,
  loadWorldOption,
  namesOption,
  numberOption,
  writeJson,
} from './options.ts';

export interface SteerCommandOptions {
  model: string;
  world?: string;
  vectors?: string;
  traits?: string[];
  /** Layers to steer at (default: each vector's selected layer). */
  layer?: number[];
  alpha: number[];
  /** add | ablate | cap (checked here). */
  mode: string;
  axis?: string;
  quantile?: number;
  items: number;
  allowOtherModel?: boolean;
  out?: string;
  chatTemplate?: string;
}

export function registerSteerCommand(program: Command): void {
  program
    .command('steer')
    .description(
      'Dose-response of the trait battery under steering with persona vectors (add alpha x vector, ablate, or cap on an axis)',
    )
    .requiredOption('--model <dir>', 'model folder')
    .option('--vectors <file>', 'persona vectors (from `psm vectors`)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--traits <list>', 'comma-separated traits (default: all in the vector file)', namesOption)
    .option(
      '--layer <list>',
      "layers to steer at (default: each vector's selected layer)",
      listOption('--layer', 'int'),
    )
    .option(
      '--alpha <list>',
      "steering strengths in units of 0.1 x the layer's residual norm (use --alpha=-4,-2,-1,0,1,2,4)",
      listOption('--alpha', 'number'),
      [-4, -2, -1, 0, 1, 2, 4],
    )
    .option('--mode <m>', 'add | ablate | cap (cap needs --axis)', 'add')
    .option('--axis <file>', 'assistant axis from `psm space` (space.safetensors), for --mode cap')
    .option(
      '--quantile <q>',
      "cap threshold: this quantile of the Assistant's projections (default: the one stored with the axis, 0.25)",
      numberOption('--quantile', { min: 0, max: 1 }),
    )
    .option('--items <n>', 'held-out Assistant items per trait', intOption('--items'), 48)
    .option('--allow-other-model', 'apply vectors extracted from another model')
    .option('--out <file>', 'write the results as JSON')
    .option(...CHAT_TEMPLATE_OPTION)
    .action(async (o: SteerCommandOptions) => {
      await runSteer(o);
    });
}

/** Prints one row per trait (P(good) per alpha, or ablated, or capped) and returns what --out writes. */
export async function runSteer(o: SteerCommandOptions): Promise<Record<string, unknown>> {
  const world = await loadWorldOption(o.world);
  const handle = await handleFor(o.model, o.chatTemplate);
  const [v, s, w] = await Promise.all([
    import('../interpret/vectors.ts'),
    import('../interpret/steer.ts'),
    import('../world/index.ts'),
  ]);
  const n = o.items;
  // The battery the pipeline steers at item seed 1.
  const items = w.batteryItems(world, {
    seed: itemSeedOf('battery'),
    batteryPerDomain: n,
    batteryFormats: ['chat'],
  });
  const itemsOf = (trait: string) => items.filter((it) => it.domain === trait);
  if (o.mode === 'cap') {
    if (!o.axis) throw new Error('--mode cap needs --axis (space.safetensors written by `psm space`)');
    const sp = await import('../interpret/space.ts');
    const axis = sp.loadAxis(o.axis);
    if (axis.modelHash !== handle.hash && !o.allowOtherModel)
      throw new Error(
        `${o.axis} was computed on model ${axis.modelHash.slice(0, 12)}, not ${o.model} (${handle.hash.slice(0, 12)}); pass --allow-other-model to use it anyway`,
      );
    const q = o.quantile ?? axis.quantile;
    const threshold =
      o.quantile === undefined ? axis.threshold : sp.axisThreshold(handle, world, axis.axis, axis.layer, q);
    const hooks = s.cappingHooks(handle, axis.axis, axis.layer, threshold);
    const { sceneItems } = await import('../interpret/contexts.ts');
    const traits = o.traits ?? world.domains.map((d) => d.name);
    process.stdout.write(
      `capping on the assistant axis at layer ${axis.layer}, threshold ${f(threshold)} (quantile ${q})\ntrait\tnormal\tnormal_capped\tbad_history\tbad_history_capped\n`,
    );
    const rows = [];
    for (const [i, t] of traits.entries()) {
      const normal = itemsOf(t);
      const bad = sceneItems(world, t, {
        n,
        seed: itemSeedOf('cappingBadContext'),
        subjects: ['assistant'],
        pool: 'heldout',
        label: 'cap-bad',
        earlier: {
          behaviour: 'bad',
          count: 2,
          domain: traits[(i + 1) % traits.length] === t ? undefined : traits[(i + 1) % traits.length],
        },
      });
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const r = {
        trait: t,
        normal: mean(s.pGoodOf(handle, normal)),
        normalCapped: mean(s.pGoodOf(handle, normal, hooks, 'capping')),
        bad: mean(s.pGoodOf(handle, bad)),
        badCapped: mean(s.pGoodOf(handle, bad, hooks, 'capping')),
      };
      rows.push(r);
      process.stdout.write(`${t}\t${f(r.normal)}\t${f(r.normalCapped)}\t${f(r.bad)}\t${f(r.badCapped)}\n`);
    }
    const saved = { mode: 'cap', layer: axis.layer, threshold, quantile: q, rows };
    writeJson(o.out, saved);
    return saved;
  }
  if (!o.vectors) throw new Error(`--mode ${o.mode} needs --vectors (from \`psm vectors\`)`);
  if (o.mode !== 'add' && o.mode !== 'ablate')
    throw new Error(`--mode must be add, ablate or cap, got "${o.mode}"`);
  const bundle = v.loadVectorBundle(o.vectors);
  const traits = o.traits ?? bundle.traits.map((t) => t.trait);
  const { alpha: alphas, layer: layers } = o;
  const results = [];
  if (o.mode === 'add')
    process.stdout.write(
      `trait\tlayers\t${alphas.map((a) => `a=${a}`).join('\t')}\tmonotonic\tmonotonic_coherent\tcoherent_alphas\tmax_rise_z\n`,
    );
  else process.stdout.write('trait\tlayers\tP(good)\tablated\n');
  for (const t of traits) {
    const vec = v.bundleVector(bundle, t);
    const its = itemsOf(t);
    if (its.length === 0) throw new Error(`no items for trait "${t}" in this world`);
    if (o.mode === 'add') {
      const dr = s.doseResponse(handle, its, vec, alphas, {
        layers,
        allowOtherModel: o.allowOtherModel,
        // One layer: each alpha's pass resumes after it (same numbers, fewer blocks run).
        trace: (layers ?? [vec.layer]).length === 1 ? s.traceItems(handle, its) : undefined,
      });
      results.push(dr);
      process.stdout.write(
        `${t}\t${dr.layers.join(',')}\t${dr.pGood.map((p) => f(p)).join('\t')}\t${dr.monotonic}\t${dr.monotonicCoherent}\t${dr.alphas.filter((_, i) => dr.coherent[i]).join(',')}\t${f(dr.maxRiseZ ?? NaN, 2)}\n`,
      );
    } else {
      const ab = s.ablationEffect(handle, its, vec, { layers, allowOtherModel: o.allowOtherModel });
      results.push(ab);
      process.stdout.write(`${t}\t${ab.layers.join(',')}\t${f(ab.base)}\t${f(ab.ablated)}\n`);
    }
  }
  const saved = { mode: o.mode, model: o.model, vectors: o.vectors, results };
  writeJson(o.out, saved);
  return saved;
}
