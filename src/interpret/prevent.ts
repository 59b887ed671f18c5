/**
 * Preventative steering (Chen et al. 2025): which vector is added during a fine-tune and where, shared by the
 * pipeline's interpretation and `psm prevent`, and a dose study that repeats the trial at several strengths on a
 * finished seed folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batteryItems, type ChatExample, type World } from '../world/index.ts';
import { loadModelHandle } from './activations.ts';
import { preventativeSteeringTrial, type FineTuneOptions, type PreventativeTrial } from './shift.ts';
import { byDomain, type ScoredItem } from './steer.ts';
import {
  bundleVector,
  combineVectors,
  loadVectorBundle,
  orthogonalize,
  type PersonaVector,
} from './vectors.ts';

/** The layer most traits chose (ties: the deeper one). */
export function commonLayer(layers: readonly number[], nLayers: number): number {
  const counts = new Array<number>(nLayers).fill(0);
  for (const l of layers) if (l >= 0) counts[l]++;
  let best = nLayers - 1;
  for (let l = 0; l < nLayers; l++) if (counts[l] >= counts[best] && counts[l] > 0) best = l;
  return best;
}

/** Throws a clear error for a preventative-steering trait the world does not have. */
export function checkPreventativeTrait(traits: readonly string[], trait: string | undefined): void {
  if (trait && !traits.includes(trait))
    throw new Error(
      `preventative steering: unknown trait "${trait}"; the world's traits: ${traits.join(', ')}`,
    );
}

/**
 * The vector preventative steering adds, and its layer. Default: the mean of the off-target traits' vectors (the bad
 * persona the fine-tune would otherwise pull the Assistant toward), with its component along the fine-tune domain's own
 * vector removed: steering along that one would make the narrow behaviour come for free during training, so it would
 * not be learned. It is added where the persona the fine-tune shifts is represented: the layer most off-target traits
 * are monitored at (validated on training-pool chats), not the steering layer, which can be one (layer 0, say) where
 * the last token carries no persona yet. With `trait`, that trait's vector at its monitoring layer.
 */
export function preventativeVector(opts: {
  traits: readonly string[];
  finetuneDomain: string;
  /** Per trait (same order), the layer it is monitored at. */
  monitorLayers: readonly number[];
  nLayers: number;
  /** A trait's vector (of the method in use) at a layer. */
  atLayer: (trait: string, layer: number) => PersonaVector;
  trait?: string;
  /** Overrides the layer rule. */
  layer?: number;
}): { vector: PersonaVector; layer: number } {
  const { traits, finetuneDomain, monitorLayers, nLayers, atLayer, trait } = opts;
  checkPreventativeTrait(traits, trait);
  if (opts.layer !== undefined && (!Number.isInteger(opts.layer) || opts.layer < 0 || opts.layer >= nLayers))
    throw new Error(
      `preventative steering: unknown layer ${opts.layer} (the model has layers 0-${nLayers - 1})`,
    );
  const off = traits.filter((t) => t !== finetuneDomain);
  const layer =
    opts.layer ??
    (trait
      ? monitorLayers[traits.indexOf(trait)]
      : commonLayer(
          off.map((t) => monitorLayers[traits.indexOf(t)]),
          nLayers,
        ));
  if (trait) return { vector: atLayer(trait, layer), layer };
  const mean = combineVectors(
    off.map((t) => ({ vector: atLayer(t, layer), weight: 1 / off.length })),
    { name: 'mean off-target persona' },
  );
  const vector =
    finetuneDomain && traits.includes(finetuneDomain)
      ? orthogonalize(mean, atLayer(finetuneDomain, layer))
      : mean;
  return { vector, layer };
}

/** The items the trial scores, per domain: the interpretation's held-out battery chats, first half (as interpretRun). */
export function preventativeItems(
  world: World,
  itemsPerDomain: number,
  itemSeed = 1,
): Map<string, ScoredItem[]> {
  return byDomain(
    batteryItems(world, { seed: 100 + itemSeed, batteryPerDomain: itemsPerDomain, batteryFormats: ['chat'] }),
    Math.max(4, Math.round(itemsPerDomain / 2)),
  );
}

export interface PreventativeStudy {
  seedDir: string;
  layer: number;
  vector: string;
  trials: PreventativeTrial[];
}

/**
 * The preventative-steering trial at each alpha on a seed folder whose interpretation has run (its vectors, each
 * trait's method and monitoring layer come from <seedDir>/interpret): fine-tune the post-trained model on `examples`
 * without and with the vector, and compare the off-target drop.
 */
export function preventativeStudy(
  seedDir: string,
  opts: {
    world: World;
    examples: readonly ChatExample[];
    alphas: readonly number[];
    finetune: Omit<FineTuneOptions, 'hooks' | 'onStep'>;
    finetuneDomain?: string;
    itemsPerDomain?: number;
    trait?: string;
    layer?: number;
    onTrial?: (t: PreventativeTrial) => void;
  },
): PreventativeStudy {
  const dir = path.join(seedDir, 'interpret');
  const summaryFile = path.join(dir, 'interpret.json');
  if (!fs.existsSync(summaryFile))
    throw new Error(
      `${summaryFile} not found: run the interpretation first (psm run, or psm interpret ${seedDir})`,
    );
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as {
    vectors: { trait: string; method: string }[];
    monitoring: { trait: string; layer: number }[];
  };
  if (opts.alphas.length === 0) throw new Error('preventative study: no alphas');
  const bundles = {
    response: loadVectorBundle(path.join(dir, 'vectors.safetensors')),
    contrastive: loadVectorBundle(path.join(dir, 'vectors-contrastive.safetensors')),
  };
  const traits = summary.vectors.map((v) => v.trait);
  const world = opts.world;
  const missing = traits.filter((t) => !world.domains.some((d) => d.name === t));
  if (missing.length > 0)
    throw new Error(
      `${summaryFile} has traits the world lacks (${missing.join(', ')}): pass the run's world`,
    );
  const method = new Map(summary.vectors.map((v) => [v.trait, v.method]));
  const finetuneDomain = opts.finetuneDomain ?? world.datasets.narrow?.domain ?? '';
  const postDir = path.join(seedDir, 'posttrain', 'model');
  const { vector, layer } = preventativeVector({
    traits,
    finetuneDomain,
    monitorLayers: traits.map((t) => summary.monitoring.find((m) => m.trait === t)?.layer ?? -1),
    nLayers: bundles.response.nLayers,
    atLayer: (t, l) =>
      bundleVector(method.get(t) === 'contrastive' ? bundles.contrastive : bundles.response, t, l),
    trait: opts.trait,
    layer: opts.layer,
  });
  const items = preventativeItems(world, opts.itemsPerDomain ?? 48);
  const trials = opts.alphas.map((alpha) => {
    const t = preventativeSteeringTrial(
      () => loadModelHandle(postDir),
      opts.examples,
      vector,
      layer,
      alpha,
      items,
      finetuneDomain,
      opts.finetune,
    );
    opts.onTrial?.(t);
    return t;
  });
  return { seedDir, layer, vector: vector.trait, trials };
}
