/**
 * `psm vectors`: persona vectors of every trait at every layer of a model (bad minus good behaviour, or contrastive
 * contexts), each trait's layer chosen by steering effect; a .safetensors file with a JSON sidecar (docs/interpret.md).
 * `psm vectors export` writes one as a llama.cpp control vector, `psm vectors import` reads one (cvector-generator's
 * or repeng's) into a persona-vector file for `psm steer` (docs/real-models.md). `psm vectors recipe` extracts one trait's
 * vector by the reference recipe on generated, judged replies (recipe-command.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { SpanKind } from '../interpret/activations.ts';
import type { VectorBundle } from '../interpret/vectors.ts';
import { registerRecipeCommand } from './recipe-command.ts';
import {
  CHAT_TEMPLATE_OPTION,
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
  chatTemplate?: string;
}

export function registerVectorsCommand(program: Command): void {
  const vectors = program
    .command('vectors')
    .description(
      "Persona vectors of every trait at every layer (bad minus good behaviour, or contrastive contexts); each trait's layer chosen by steering effect",
    )
    .option('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer.json)')
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
    .option(...CHAT_TEMPLATE_OPTION)
    // Its options end at a subcommand's name, so `psm vectors import --model DIR` gives --model to import.
    .enablePositionalOptions()
    .action(async (o: VectorsOptions) => {
      if (!o.model)
        throw new Error(
          "psm vectors: --model <dir> is required (or use 'psm vectors export' / 'import' / 'recipe')",
        );
      await runVectors(o);
    });
  vectors
    .command('export')
    .description(
      'Write a persona vector as a llama.cpp control vector (GGUF direction.N); --control-vector-scaled FILE A steers as --alpha=A',
    )
    .requiredOption('--vectors <file>', 'persona vectors (from `psm vectors`)')
    .requiredOption('--trait <name>', 'the trait to export')
    .option('--layer <n>', "layer (default: the trait's selected layer)", intOption('--layer', 0))
    .requiredOption('--out <file>', 'control vector to write (.gguf)')
    .option(
      '--model-hint <arch>',
      "controlvector.model_hint (default: the vectors' model's GGUF architecture, llama or qwen2)",
    )
    .action(async (o: VectorsExportOptions) => {
      await runVectorsExport(o);
    });
  vectors
    .command('import')
    .description(
      'Read a llama.cpp control vector (cvector-generator or repeng GGUF) into a persona-vector file for psm steer',
    )
    .requiredOption('--from <file>', 'control vector (.gguf)')
    .requiredOption(
      '--model <dir>',
      'the model it is for (its width and blocks are checked, its hash recorded)',
    )
    .option('--name <name>', 'name of the vector (default: the file name)')
    .option('--out <file>', 'persona-vector file to write (default: <name>.safetensors)')
    .action(async (o: VectorsImportOptions) => {
      await runVectorsImport(o);
    });
  registerRecipeCommand(vectors);
}

export interface VectorsExportOptions {
  vectors: string;
  trait: string;
  layer?: number;
  out: string;
  modelHint?: string;
}

/** The GGUF architecture of a model folder's config.json, or undefined when it cannot be read. */
async function folderArchitecture(dir: string | undefined): Promise<string | undefined> {
  if (!dir || !fs.existsSync(path.join(dir, 'config.json'))) return undefined;
  try {
    const [{ fromHfConfig }, { ggufArchitecture }] = await Promise.all([
      import('../model/config.ts'),
      import('../interop/gguf.ts'),
    ]);
    const file = path.join(dir, 'config.json');
    return ggufArchitecture(fromHfConfig(JSON.parse(fs.readFileSync(file, 'utf8')), file));
  } catch {
    return undefined;
  }
}

/** Writes one trait's vector as a control vector; returns the llama.cpp layer it was written for. */
export async function runVectorsExport(o: VectorsExportOptions): Promise<number> {
  const [v, cv, { writeControlVector }] = await Promise.all([
    import('../interpret/vectors.ts'),
    import('../interpret/control-vectors.ts'),
    import('../interop/control-vector.ts'),
  ]);
  const bundle = v.loadVectorBundle(o.vectors);
  const vec = v.bundleVector(bundle, o.trait, o.layer);
  const hint = o.modelHint ?? (await folderArchitecture(bundle.model)) ?? 'llama';
  const control = cv.controlVectorOfPersonaVector(vec, bundle.nLayers, hint);
  const [[layer, direction]] = [...control.directions];
  writeControlVector(o.out, control);
  const n = Math.sqrt(direction.reduce((s, x) => s + x * x, 0));
  process.stdout.write(
    `wrote ${o.out}: "${o.trait}" at ${vec.hook} as direction.${layer} (norm ${f(n)}, model_hint ${hint})\n` +
      `steer in llama.cpp as psm steer --alpha=A does: llama-cli -m MODEL.gguf --control-vector-scaled ${o.out} A\n`,
  );
  return layer;
}

export interface VectorsImportOptions {
  from: string;
  model: string;
  name?: string;
  out?: string;
}

/** Reads a control vector into a persona-vector file; returns the file written. */
export async function runVectorsImport(o: VectorsImportOptions): Promise<string> {
  const [{ readControlVector }, cv, v, { hashModelFolder }, { loadModelFolder }] = await Promise.all([
    import('../interop/control-vector.ts'),
    import('../interpret/control-vectors.ts'),
    import('../interpret/vectors.ts'),
    import('../interpret/activations.ts'),
    import('../model/weights.ts'),
  ]);
  const control = readControlVector(o.from);
  const config = loadModelFolder(o.model).config;
  const name = o.name ?? path.basename(o.from).replace(/\.gguf$/i, '');
  const bundle = cv.bundleOfControlVector(control, {
    name,
    modelHash: hashModelFolder(o.model),
    model: o.model,
    dim: config.dim,
    nLayers: config.nLayers,
  });
  const out = o.out ?? `${name}.safetensors`;
  v.saveVectorBundle(out, bundle);
  const layers = [...control.directions.keys()].sort((a, b) => a - b);
  process.stdout.write(
    `wrote ${out}: "${name}" from ${o.from} (model_hint "${control.modelHint}"), directions at llama.cpp layers ${layers.join(',')} ` +
      `= blocks.N.hook_resid_post; psm steer --alpha=A adds A x the direction of layer ${bundle.traits[0].bestLayer} (or --layer)\n`,
  );
  return out;
}

/** Extracts and saves the vectors; prints each trait's steering effect per layer and the traits' cosines. */
export async function runVectors(o: VectorsOptions): Promise<VectorBundle> {
  const world = await loadWorldOption(o.world);
  const handle = await handleFor(o.model, o.chatTemplate);
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
