/**
 * `psm space`: persona space of a model (archetype vectors, PCA, the assistant axis), where each model's Assistant
 * sits in it, drift over multi-turn chats, and optionally the archetype-posterior probe (docs/interpret.md).
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { f, handleFor, intOption, loadWorldOption, writeJson } from './options.ts';

export interface SpaceOptions {
  model: string;
  world?: string;
  /** Other model folders whose Assistant to place in the space. */
  compare?: string[];
  /** Default: the middle layer. */
  layer?: number;
  perArchetype: number;
  turns: number;
  probe?: boolean;
  out?: string;
}

export function registerSpaceCommand(program: Command): void {
  program
    .command('space')
    .description(
      "Persona space: archetype vectors, PCA and variance explained, the assistant axis and its cosine with PC1, where each model's Assistant sits, drift over multi-turn chats, and the archetype-posterior probe",
    )
    .requiredOption('--model <dir>', 'reference model folder (its archetypes define the space)')
    .option(
      '--compare <dirs...>',
      'other model folders whose Assistant to place in the space (e.g. base and fine-tunes)',
    )
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--layer <n>', 'layer (default: the middle one)', intOption('--layer', 0))
    .option('--per-archetype <n>', 'documents per archetype', intOption('--per-archetype'), 12)
    .option('--turns <n>', 'drift: turns per chat (0: skip)', intOption('--turns', 0), 5)
    .option('--probe', 'also fit the archetype-posterior probe and report its agreement with Bayes')
    .option('--out <dir>', 'write space.safetensors (axis, components) and space.json here')
    .action(async (o: SpaceOptions) => {
      await runSpace(o);
    });
}

/** Prints the space, the placements, the drift (and the probe); returns what space.json holds. */
export async function runSpace(o: SpaceOptions): Promise<Record<string, unknown>> {
  const world = await loadWorldOption(o.world);
  const handle = await handleFor(o.model);
  const sp = await import('../interpret/space.ts');
  const layer = o.layer ?? Math.floor(handle.model.config.nLayers / 2);
  (await import('../interpret/activations.ts')).checkLayer(handle.model, layer);
  const space = sp.personaSpace(handle, world, layer, { perArchetype: o.perArchetype });
  process.stdout.write(`persona space of ${o.model} at layer ${layer}\n`);
  process.stdout.write(
    `variance explained: ${space.pca.explained.map((x) => f(x, 3)).join(' ')}\ncomponents for 70%: ${space.componentsFor70}\ncos(assistant axis, PC1): ${f(space.axisCosPC1)}\ncos(assistant axis, PC1..): ${space.axisCosPCs.map((x) => f(x, 2)).join(' ')}\nshare of the axis inside the archetypes' span: ${f(space.axisInSpace)}\n\narchetype\tkind\tn\tPC1\tPC2\n`,
  );
  for (const a of space.archetypes) {
    const [x, y] = sp.pcaCoords(space.pca, a.vector, 2);
    process.stdout.write(`${a.name}\t${a.kind}\t${a.n}\t${f(x)}\t${f(y)}\n`);
  }
  const placed = [sp.placeVector(space, space.assistant, o.model)];
  for (const dir of o.compare ?? []) placed.push(sp.placeAssistant(space, await handleFor(dir), world, dir));
  process.stdout.write('\nAssistant of\tPC1\tPC2\taxis position\tnearest archetype (cos)\n');
  for (const p of placed)
    process.stdout.write(
      `${p.label}\t${f(p.coords[0] ?? NaN)}\t${f(p.coords[1] ?? NaN)}\t${f(p.axisPosition)}\t${p.nearest.name} (${f(p.nearest.cosine, 2)})\n`,
    );
  const turns = o.turns;
  let drift = null;
  if (turns > 0) {
    drift = sp.assistantDrift(handle, world, space, { turns, perDomain: 2 });
    process.stdout.write(
      `\ndrift along the axis over ${turns}-turn chats (model's own replies)\ndomain\t${Array.from({ length: turns }, (_, t) => `turn${t}`).join('\t')}\tslope\n`,
    );
    for (const d of drift)
      process.stdout.write(`${d.domain}\t${d.trace.map((x) => f(x, 2)).join('\t')}\t${f(d.slope)}\n`);
  }
  let probe = null;
  if (o.probe) {
    const { archetypeProbe } = await import('../interpret/probe.ts');
    const pr = archetypeProbe(handle, world, {});
    probe = { layers: pr.layers, l2: pr.l2, perLayer: pr.perLayer, agreement: pr.agreement };
    const a = pr.agreement;
    process.stdout.write(
      `\narchetype probe (${pr.layers.length > 1 ? `layers ${pr.layers.join(',')} concatenated` : `layer ${pr.layer}`}, L2 ${pr.l2}, ${pr.trainRows} training positions): on ${a.n} in-context probes, TV distance to Bayes ${f(a.tv)} (prior alone ${f(a.tvPrior)}), KL ${f(a.kl)}, r ${f(a.r)}, r of updates ${f(a.rUpdate)}, top-1 agreement ${f(a.top1)}\n`,
    );
  }
  const saved = {
    model: o.model,
    layer,
    ...sp.spaceNumbers(space),
    archetypes: space.archetypes.map((a) => ({ name: a.name, kind: a.kind, n: a.n })),
    assistant: placed,
    drift,
    probe,
  };
  if (o.out) {
    const axisFile = path.join(o.out, 'space.safetensors');
    sp.saveAxis(axisFile, space, sp.axisThreshold(handle, world, space.axis, space.layer, 0.25), 0.25);
    writeJson(path.join(o.out, 'space.json'), saved);
  }
  return saved;
}
