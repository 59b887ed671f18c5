/**
 * `psm monitor`: the projection of the last prompt token on each trait vector against the model's P(bad option), per
 * trait, and per-turn traces in multi-turn chats (docs/interpret.md).
 */
import type { Command } from 'commander';
import { itemSeedOf } from '../interpret/item-seeds.ts';
import type { ReplyMode } from '../interpret/monitor.ts';
import { f, handleFor, intOption, loadWorldOption, namesOption, writeJson } from './options.ts';

export interface MonitorOptions {
  model: string;
  vectors: string;
  world?: string;
  traits?: string[];
  /** Read every trait at this layer (default: each vector's selected layer). */
  layer?: number;
  items: number;
  /** assistant | probes (checked here). */
  kind: string;
  turns: number;
  /** model | good | bad (checked here, when --turns traces run). */
  replies: string;
  allowOtherModel?: boolean;
  out?: string;
}

export function registerMonitorCommand(program: Command): void {
  program
    .command('monitor')
    .description(
      "Projection of the last prompt token on each trait vector vs the model's P(bad option), per trait; per-turn traces in multi-turn chats",
    )
    .requiredOption('--model <dir>', 'model folder')
    .requiredOption('--vectors <file>', 'persona vectors (from `psm vectors`)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--traits <list>', 'comma-separated traits (default: all in the vector file)', namesOption)
    .option(
      '--layer <n>',
      "read every trait at this layer (default: each vector's selected layer)",
      intOption('--layer', 0),
    )
    .option('--items <n>', 'held-out items per trait', intOption('--items'), 48)
    .option(
      '--kind <k>',
      'assistant (Assistant chats after good / bad / mixed earlier turns) | probes (in-context persona probes of characters)',
      'assistant',
    )
    .option(
      '--turns <n>',
      'also trace multi-turn chats of this many turns (0: none)',
      intOption('--turns', 0),
      0,
    )
    .option('--replies <mode>', 'replies in the traced chats: model (greedy) | good | bad', 'model')
    .option('--allow-other-model', 'apply vectors extracted from another model')
    .option('--out <file>', 'write the results as JSON')
    .action(async (o: MonitorOptions) => {
      await runMonitor(o);
    });
}

/** Prints r per trait (and the traced turns) and returns what --out writes. */
export async function runMonitor(o: MonitorOptions): Promise<Record<string, unknown>> {
  const world = await loadWorldOption(o.world);
  const handle = await handleFor(o.model);
  const [v, m, c] = await Promise.all([
    import('../interpret/vectors.ts'),
    import('../interpret/monitor.ts'),
    import('../interpret/contexts.ts'),
  ]);
  const bundle = v.loadVectorBundle(o.vectors);
  const traits = o.traits ?? bundle.traits.map((t) => t.trait);
  const vecs = traits.map((t) => v.bundleVector(bundle, t, o.layer));
  if (o.kind !== 'assistant' && o.kind !== 'probes')
    throw new Error(`--kind must be assistant or probes, got "${o.kind}"`);
  // The pipeline's monitoring items at item seed 1.
  const items = m.monitorItems(world, o.items, itemSeedOf('monitoring'), o.kind);
  const res = m.monitorTraits(handle, items, vecs, { allowOtherModel: o.allowOtherModel });
  process.stdout.write('trait\tlayer\tr(projection, P(bad))\tmean |r| of random directions\tn\n');
  for (const r of res) process.stdout.write(`${r.trait}\t${r.layer}\t${f(r.r)}\t${f(r.rRandom)}\t${r.n}\n`);
  let traces: unknown = null;
  if (o.turns > 0) {
    if (!['model', 'good', 'bad'].includes(o.replies))
      throw new Error(`--replies must be model, good or bad, got "${o.replies}"`);
    const domains = world.domains.map((d) => d.name);
    const convs = domains.map((d, i) =>
      c.conversation(
        world,
        Array.from({ length: o.turns }, (_, t) => domains[(i + t) % domains.length]),
        90 + i,
      ),
    );
    const pts = m.turnTraces(
      handle,
      convs,
      vecs.map((x) => ({ name: x.trait, hook: x.hook, vector: x.vector })),
      { replies: o.replies as ReplyMode },
    );
    traces = pts;
    process.stdout.write(
      `\nper-turn trace (replies: ${o.replies})\nchat\tturn\tdomain\tP(bad)\t${traits.join('\t')}\n`,
    );
    for (const p of pts)
      process.stdout.write(
        `${p.conversation}\t${p.turn}\t${p.domain}\t${f(p.pBad)}\t${traits.map((t) => f(p.projections[t], 2)).join('\t')}\n`,
      );
  }
  const saved = { model: o.model, vectors: o.vectors, monitoring: res, traces };
  writeJson(o.out, saved);
  return saved;
}
