/**
 * `psm vectors`: persona vectors of every trait at every layer of a model (bad minus good behaviour, or contrastive
 * contexts), each trait's layer chosen by steering effect; a .safetensors file with a JSON sidecar (docs/interpret.md).
 */
import type { Command } from 'commander';
import type { SpanKind } from '../interpret/activations.ts';
import type { VectorBundle } from '../interpret/vectors.ts';
import {
  f,
  handleFor,
  intOption,
  listOption,
  loadWorldOption,
  namesOption,
  numberOption,
} from './options.ts';

export interface VectorsOptions {
  model: string;
  world?: string;
  out: string;
  /** response | contrastive (checked here, with the valid choices in the error). */
  method: string;
  span?: SpanKind;
  traits?: string[];
  items: number;
  /** Layers the selection may choose from (default: all). */
  layer?: number[];
  selectItems: number;
  selectAlpha: number;
  select: boolean;
  seed: number;
}

export function registerVectorsCommand(program: Command): void {
  program
    .command('vectors')
    .description(
      "Persona vectors of every trait at every layer (bad minus good behaviour, or contrastive contexts); each trait's layer chosen by steering effect",
    )
    .requiredOption('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer.json)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option(
      '--out <file>',
      'output .safetensors (a .json sidecar is written beside it)',
      'vectors.safetensors',
    )
    .option(
      '--method <m>',
      'response (bad minus good option, mean over the behaviour span) | contrastive (trait-eliciting minus trait-suppressing context)',
      'response',
    )
    .option(
      '--span <s>',
      'span to average: prompt | response | last-prompt | all (default: response for response, last-prompt for contrastive)',
    )
    .option('--traits <list>', 'comma-separated traits (default: all)', namesOption)
    .option('--items <n>', 'extraction items per trait', intOption('--items'), 24)
    .option(
      '--layer <list>',
      'layers the selection may choose from (default: all)',
      listOption('--layer', 'int'),
    )
    .option('--select-items <n>', 'items per trait for choosing the layer', intOption('--select-items'), 16)
    .option(
      '--select-alpha <a>',
      'steering strength used to choose the layer',
      numberOption('--select-alpha'),
      4,
    )
    .option('--no-select', 'skip layer selection (much faster)')
    .option('--seed <n>', 'item seed', intOption('--seed', 0), 1)
    .action(async (o: VectorsOptions) => {
      await runVectors(o);
    });
}

/** Extracts and saves the vectors; prints each trait's steering effect per layer and the traits' cosines. */
export async function runVectors(o: VectorsOptions): Promise<VectorBundle> {
  const world = await loadWorldOption(o.world);
  const handle = await handleFor(o.model);
  const v = await import('../interpret/vectors.ts');
  if (!(v.VECTOR_METHODS as readonly string[]).includes(o.method))
    throw new Error(`--method must be one of ${v.VECTOR_METHODS.join(', ')}, got "${o.method}"`);
  for (const l of o.layer ?? []) (await import('../interpret/activations.ts')).checkLayer(handle.model, l);
  const t0 = Date.now();
  const bundle = v.personaVectors(handle, world, {
    method: o.method as 'response' | 'contrastive',
    span: o.span,
    traits: o.traits,
    itemsPerTrait: o.items,
    seed: o.seed,
    select: o.select,
    selectAlpha: o.selectAlpha,
    selectItems: o.selectItems,
    selectLayers: o.layer,
  });
  const traits = bundle.traits;
  v.saveVectorBundle(o.out, bundle);
  const L = bundle.nLayers;
  process.stdout.write(
    `trait\tbest_layer\t${Array.from({ length: L }, (_, l) => `effect_L${l}`).join('\t')}\tnorm@best\n`,
  );
  for (const t of traits) {
    const best = t.bestLayer >= 0 ? t.byLayer[t.bestLayer] : t.byLayer[L - 1];
    const n = Math.sqrt(best.vector.reduce((s, x) => s + x * x, 0));
    process.stdout.write(
      `${t.trait}\t${t.bestLayer}\t${Array.from({ length: L }, (_, l) => f(t.steeringEffect[l] ?? NaN)).join('\t')}\t${f(n)}\n`,
    );
  }
  const cos = v.traitCosines(bundle);
  process.stdout.write(`\ncosines (each trait at its layer):\n\t${cos.traits.join('\t')}\n`);
  cos.matrix.forEach((row, i) =>
    process.stdout.write(`${cos.traits[i]}\t${row.map((x) => f(x, 2)).join('\t')}\n`),
  );
  process.stderr.write(`wrote ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  return bundle;
}
