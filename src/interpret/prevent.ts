/**
 * Preventative interventions during a fine-tune, shared by the pipeline's interpretation and `psm prevent`:
 * preventative steering (Chen et al. 2025: which vector is added and where) and concept ablation (Casademunt et al.
 * 2025: which directions are projected out), and a study that repeats the trial on a finished seed folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batteryItems, type ChatExample, type World } from '../world/index.ts';
import { dot, layerHook, loadModelHandle, norm, type ModelHandle } from './activations.ts';
import { ablateDirectionsHook, HookSet } from '../model/hooks.ts';
import { Rng } from '../tensor/random.ts';
import { checkAblationSubspace, type AblationSubspace } from './ablation-subspaces.ts';
import { itemSeedOf } from './item-seeds.ts';
import {
  preventativeTrials,
  type DeferredIntervention,
  type FineTuneOptions,
  type PreventativeIntervention,
  type PreventativeTrial,
} from './shift.ts';
import {
  archetypeVectorsByLayer,
  interpretArchetypeDocuments,
  pca,
  personaSpace,
  placeAssistant,
} from './space.ts';
import { byDomain, checkVector, preventativeSteeringHooks, scoreItems, type ScoredItem } from './steer.ts';
import {
  bundleVector,
  combineVectors,
  loadVectorBundle,
  orthogonalize,
  type PersonaVector,
  type VectorBundle,
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
  /**
   * Keep the fine-tune domain's component (the mean as it is): for reading along the vector (data screening), where
   * removing it throws the signal away; the push during training needs it removed.
   */
  whole?: boolean;
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
  const mean = meanOffTargetVector(off, layer, atLayer);
  const vector =
    !opts.whole && finetuneDomain && traits.includes(finetuneDomain)
      ? orthogonalize(mean, atLayer(finetuneDomain, layer))
      : mean;
  return { vector, layer };
}

/** The mean of the off-target traits' vectors at one layer, as it is. */
function meanOffTargetVector(
  offTarget: readonly string[],
  layer: number,
  atLayer: (trait: string, layer: number) => PersonaVector,
): PersonaVector {
  if (offTarget.length === 0) throw new Error('off-target persona vector: no off-target traits');
  return combineVectors(
    offTarget.map((t) => ({ vector: atLayer(t, layer), weight: 1 / offTarget.length })),
    { name: 'mean off-target persona' },
  );
}

/** Preventative steering: `vector` added at `layer` with strength `alpha` while training. */
export function additiveIntervention(
  vector: PersonaVector,
  layer: number,
  alpha: number,
): PreventativeIntervention {
  return {
    method: 'add',
    vector: vector.trait,
    layers: [layer],
    alpha,
    hooks: preventativeSteeringHooks(vector, layer, alpha),
  };
}

/** Directions whose norm falls below this fraction of their original after projection carry no new direction. */
const SPAN_TOLERANCE = 1e-3;

/** Gram-Schmidt: an orthonormal basis of span(vectors) with span(against) removed (`against` need not be orthogonal). */
export function orthonormalBasis(
  vectors: readonly Float32Array[],
  against: readonly Float32Array[] = [],
): Float32Array[] {
  const basis: Float32Array[] = [];
  const reduce = (v: Float32Array) => {
    const w = Float32Array.from(v);
    for (const u of basis) {
      const d = dot(w, u);
      for (let i = 0; i < w.length; i++) w[i] -= d * u[i];
    }
    return w;
  };
  const push = (v: Float32Array) => {
    const n0 = norm(v);
    if (!(n0 > 0) || !Number.isFinite(n0)) return;
    const w = reduce(v);
    const n = norm(w);
    if (n > SPAN_TOLERANCE * n0) basis.push(w.map((x) => x / n));
  };
  for (const a of against) push(a);
  const removed = basis.length;
  for (const v of vectors) push(v);
  return basis.slice(removed);
}

/** Each point minus the points' mean: the directions along which the points differ. */
export function centeredDirections(points: readonly Float32Array[]): Float32Array[] {
  if (points.length === 0) return [];
  const dim = points[0].length;
  const center = new Float32Array(dim);
  for (const p of points) for (let j = 0; j < dim; j++) center[j] += p[j] / points.length;
  return points.map((p) => p.map((x, j) => x - center[j]));
}

/** The fine-tune domain's own vectors at a layer (none if it is not a trait): what every ablated subspace avoids. */
function finetuneDomainSpan(
  opts: Pick<AblationContext, 'traits' | 'finetuneDomain' | 'vectorsAt'>,
  layer: number,
): Float32Array[] {
  return opts.traits.includes(opts.finetuneDomain)
    ? opts.vectorsAt(opts.finetuneDomain, layer).map((v) => v.vector)
    : [];
}

/**
 * Concept ablation for a narrow fine-tune: at every layer, the off-target persona subspace with the span of the
 * fine-tune domain's own vectors removed, so the narrow behaviour can still be learned while the directions of the
 * persona the fine-tune would drag along are unavailable to it. The subspace is spanned by the off-target traits'
 * persona vectors (both extraction methods) and, with `archetypesAt`, by persona space's archetype directions (each
 * archetype's mean activation minus their mean): the package deal moves the Assistant toward another character, not
 * only along the traits' own directions. Returns one orthonormal basis per layer.
 */
export function ablationDirections(opts: {
  traits: readonly string[];
  finetuneDomain: string;
  nLayers: number;
  /** A trait's vectors at a layer (one per extraction method). */
  vectorsAt: (trait: string, layer: number) => readonly PersonaVector[];
  /** The archetypes' mean activations at a layer (archetypeVectorsByLayer). */
  archetypesAt?: (layer: number) => readonly Float32Array[];
  /** Leave the off-target traits' vectors out (with archetypesAt: the archetype directions alone). */
  withoutTraitVectors?: boolean;
  /**
   * Keep the part the subspace shares with the fine-tune domain's vectors (the bad persona the traits have in
   * common): the narrow behaviour must then be learned along other directions.
   */
  whole?: boolean;
}): Float32Array[][] {
  const { traits, finetuneDomain, nLayers, vectorsAt, archetypesAt } = opts;
  if (opts.withoutTraitVectors && !archetypesAt) throw new Error('concept ablation: nothing to ablate');
  const off = traits.filter((t) => t !== finetuneDomain);
  if (off.length === 0) throw new Error('concept ablation: no off-target traits');
  return Array.from({ length: nLayers }, (_, l) =>
    orthonormalBasis(
      [
        ...(opts.withoutTraitVectors ? [] : off.flatMap((t) => vectorsAt(t, l).map((v) => v.vector))),
        ...(archetypesAt ? centeredDirections(archetypesAt(l)) : []),
      ],
      opts.whole ? [] : finetuneDomainSpan(opts, l),
    ),
  );
}

/** Concept ablation: each layer's directions projected out of its residual stream at every position while training. */
export function ablationIntervention(
  directions: readonly (readonly Float32Array[])[],
  what: string,
  subspace?: string,
): PreventativeIntervention {
  const hooks = new HookSet();
  const layers: number[] = [];
  directions.forEach((basis, l) => {
    if (basis.length === 0) return;
    layers.push(l);
    hooks.add(layerHook(l), ablateDirectionsHook(basis));
  });
  if (layers.length === 0) throw new Error('concept ablation: no directions to ablate');
  return { method: 'ablate', ...(subspace ? { subspace } : {}), vector: what, layers, alpha: null, hooks };
}

/** What `fineTuneInterventions` is asked for: steering with one trait's vector, ablation of some traits' vectors. */
export interface FineTuneInterventionRequest {
  /** Preventative steering: this trait's vector added at `layer` (default: the bundle's chosen layer) with `alpha`. */
  steer?: { trait: string; alpha: number; layer?: number };
  /** Concept ablation: these traits' vectors projected out at every layer (each layer's span, orthonormalised). */
  ablate?: readonly string[];
  /** Use vectors extracted from another model (the default refuses them). */
  allowOtherModel?: boolean;
}

/**
 * The training-time hooks of a fine-tune of `handle`'s model from a persona-vector bundle: concept ablation first,
 * then steering, at each layer (so an ablated direction cannot cancel the steering vector), and a description of
 * each for the fine-tune's record. Every vector is checked against the model (shape, layer, source).
 */
export function fineTuneInterventions(
  handle: ModelHandle,
  bundle: VectorBundle,
  request: FineTuneInterventionRequest,
): { hooks: HookSet; interventions: Omit<PreventativeIntervention, 'hooks'>[] } {
  const hooks = new HookSet();
  const interventions: Omit<PreventativeIntervention, 'hooks'>[] = [];
  const check = (v: PersonaVector) => checkVector(v, handle, { allowOtherModel: request.allowOtherModel });
  if (request.ablate) {
    if (request.ablate.length === 0) throw new Error('concept ablation: no traits given');
    const byLayer = Array.from({ length: bundle.nLayers }, (_, l) =>
      orthonormalBasis(
        request.ablate!.map((t) => {
          const v = bundleVector(bundle, t, l);
          check(v);
          return v.vector;
        }),
      ),
    );
    const { hooks: h, ...what } = ablationIntervention(byLayer, request.ablate.join(', '));
    hooks.extend(h);
    interventions.push(what);
  }
  if (request.steer) {
    const { trait, alpha, layer } = request.steer;
    const v = bundleVector(bundle, trait, layer);
    check(v);
    const { hooks: h, ...what } = additiveIntervention(v, v.layer, alpha);
    hooks.extend(h);
    interventions.push(what);
  }
  return { hooks, interventions };
}

/** The pipeline's concept ablation for a fine-tune in `finetuneDomain`: the off-target persona subspace, every layer. */
export function offTargetAblation(opts: Parameters<typeof ablationDirections>[0]): PreventativeIntervention {
  const fd = opts.finetuneDomain;
  const parts = [
    opts.archetypesAt
      ? opts.withoutTraitVectors
        ? 'archetype directions'
        : 'with archetype directions'
      : '',
    fd ? (opts.whole ? `whole, not orthogonal to ${fd}` : `orthogonal to ${fd}`) : '',
  ].filter((p) => p.length > 0);
  return ablationIntervention(
    ablationDirections(opts),
    `off-target persona subspace${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`,
  );
}

/**
 * The chats whose activation change locates a fine-tune's shift: held-out battery chats of every domain but the
 * fine-tune's, from a battery seed the trials never score (item-seeds.ts: shiftChats, not battery).
 */
export function shiftChats(
  world: World,
  finetuneDomain: string,
  itemsPerDomain: number,
  itemSeed = 1,
): ScoredItem[] {
  return batteryItems(world, {
    seed: itemSeedOf('shiftChats', itemSeed),
    batteryPerDomain: Math.max(4, Math.round(itemsPerDomain / 2)),
    batteryFormats: ['chat'],
  }).filter((it) => it.domain !== finetuneDomain);
}

/**
 * CAFT's directions (Casademunt et al. 2025: principal components of the activation difference between the model
 * before and after a fine-tune): at every layer, the top `sizes[l]` principal directions of the per-chat change of
 * the last prompt token's activation, about the origin (so the mean change is among them), with `against(l)`
 * removed. The paper keeps the components a person reads as the unwanted generalisation; here the chats choose
 * instead: they come from the domains the fine-tune never touched, so what moved there is the drag to remove.
 */
export function shiftDirections(opts: {
  before: ModelHandle;
  after: ModelHandle;
  items: readonly ScoredItem[];
  sizes: readonly number[];
  against: (layer: number) => readonly Float32Array[];
}): Float32Array[][] {
  const { before, after, items, sizes } = opts;
  if (items.length === 0) throw new Error('shift directions: no chats');
  const dim = before.model.config.dim;
  if (after.model.config.dim !== dim || after.model.config.nLayers !== before.model.config.nLayers)
    throw new Error('shift directions: the two models have different shapes');
  const hooks = sizes.map((_, l) => layerHook(l));
  const a0 = scoreItems(before, items, { record: hooks }).lastToken;
  const a1 = scoreItems(after, items, { record: hooks }).lastToken;
  return hooks.map((h, l) => {
    if (sizes[l] === 0) return [];
    const x0 = a0.get(h)!;
    const x1 = a1.get(h)!;
    const changes = items.map((_, i) =>
      Float32Array.from({ length: dim }, (_, j) => x1[i * dim + j] - x0[i * dim + j]),
    );
    return orthonormalBasis(pca(changes, sizes[l], { center: false }).components, opts.against(l));
  });
}

/** Random directions per layer, `sizes[l]` of them at layer l, with `against(l)` removed: the control subspace. */
export function randomDirections(
  sizes: readonly number[],
  dim: number,
  against: (layer: number) => readonly Float32Array[],
  seed: number,
): Float32Array[][] {
  const rng = new Rng(seed);
  return sizes.map((k, l) =>
    orthonormalBasis(
      Array.from({ length: k }, () => Float32Array.from({ length: dim }, () => rng.gaussian())),
      against(l),
    ),
  );
}

/** The items the trial scores, per domain: the interpretation's held-out battery chats, first half (as interpretRun). */
export function preventativeItems(
  world: World,
  itemsPerDomain: number,
  itemSeed = 1,
): Map<string, ScoredItem[]> {
  return byDomain(
    batteryItems(world, {
      seed: itemSeedOf('battery', itemSeed),
      batteryPerDomain: itemsPerDomain,
      batteryFormats: ['chat'],
    }),
    Math.max(4, Math.round(itemsPerDomain / 2)),
  );
}

/** What concept ablation of any subspace needs. */
export interface AblationContext {
  traits: readonly string[];
  finetuneDomain: string;
  nLayers: number;
  /** A trait's vectors at a layer (one per extraction method). */
  vectorsAt: (trait: string, layer: number) => readonly PersonaVector[];
  /** The archetypes' mean activations at a layer: needed by 'persona' and 'archetypes'. */
  archetypesAt?: (layer: number) => readonly Float32Array[];
  /** The chats that locate the fine-tune's shift (shiftChats): needed by 'shift'. */
  shiftItems?: readonly ScoredItem[];
  /** Seed of the 'random' control's directions. */
  seed?: number;
}

/**
 * Concept ablation of `subspace`: an intervention, or for 'shift' one built from the plain fine-tune (deferred),
 * labelled with the subspace.
 */
export function subspaceAblation(
  subspace: AblationSubspace,
  ctx: AblationContext,
): PreventativeIntervention | DeferredIntervention {
  checkAblationSubspace(subspace);
  const { traits, finetuneDomain, nLayers, vectorsAt } = ctx;
  const labelled = (i: PreventativeIntervention) => ({ ...i, subspace });
  if (
    subspace === 'traits' ||
    subspace === 'traits-whole' ||
    subspace === 'persona' ||
    subspace === 'archetypes'
  ) {
    const traitsOnly = subspace === 'traits' || subspace === 'traits-whole';
    if (!traitsOnly && !ctx.archetypesAt)
      throw new Error(`concept ablation of "${subspace}": no archetype directions given`);
    return labelled(
      offTargetAblation({
        traits,
        finetuneDomain,
        nLayers,
        vectorsAt,
        archetypesAt: traitsOnly ? undefined : ctx.archetypesAt,
        withoutTraitVectors: subspace === 'archetypes',
        whole: subspace === 'traits-whole',
      }),
    );
  }
  // 'shift' and 'random' match the trait subspace's size at each layer, so the three compare like for like.
  const sizes = ablationDirections({ traits, finetuneDomain, nLayers, vectorsAt }).map((b) => b.length);
  const against = (l: number) => finetuneDomainSpan(ctx, l);
  const orth = finetuneDomain ? `, orthogonal to ${finetuneDomain}` : '';
  const per = `${Math.max(...sizes)} per layer${orth}`;
  if (subspace === 'random') {
    const dim = vectorsAt(traits[0], 0)[0].vector.length;
    return ablationIntervention(
      randomDirections(sizes, dim, against, ctx.seed ?? 0),
      `random directions (${per})`,
      subspace,
    );
  }
  const items = ctx.shiftItems;
  if (!items || items.length === 0)
    throw new Error('concept ablation of "shift": no chats to locate the shift');
  return ({ tuned, load }) =>
    ablationIntervention(
      shiftDirections({ before: load(), after: tuned, items, sizes, against }),
      `the plain fine-tune's activation shift on off-target chats (${per})`,
      subspace,
    );
}

/**
 * Concept ablation of each subspace during a fine-tune from the post-trained model, as the pipeline's
 * interpretation and `psm prevent` run it: persona space's archetypes (the interpretation's documents, at every
 * layer) are recorded only when a subspace holds them, and the chats that locate the shift are drawn once, only for
 * 'shift'.
 */
export function ablationInterventions(
  subspaces: readonly AblationSubspace[],
  opts: Omit<AblationContext, 'archetypesAt' | 'shiftItems'> & {
    world: World;
    /** The post-trained model (loaded only when the archetypes are needed). */
    post: () => ModelHandle;
    itemsPerDomain: number;
    /** Seed of the interpretation's items (persona-space documents and the shift's chats). */
    itemSeed: number;
  },
): (PreventativeIntervention | DeferredIntervention)[] {
  const { world, post, itemsPerDomain, itemSeed, ...ctx } = opts;
  const archetypes = subspaces.some((s) => s === 'persona' || s === 'archetypes')
    ? archetypeVectorsByLayer(
        post(),
        world,
        interpretArchetypeDocuments(world, itemsPerDomain, itemSeed),
        Array.from({ length: ctx.nLayers }, (_, l) => l),
      ).map((r) => r.archetypes.map((a) => a.vector))
    : null;
  const shiftItems = subspaces.includes('shift')
    ? shiftChats(world, ctx.finetuneDomain, itemsPerDomain, itemSeed)
    : undefined;
  return subspaces.map((subspace) =>
    subspaceAblation(subspace, {
      ...ctx,
      archetypesAt: archetypes ? (l) => archetypes[l] : undefined,
      shiftItems,
    }),
  );
}

export interface PreventativeStudy {
  seedDir: string;
  /** The layer the additive trials add their vector at. */
  layer: number;
  vector: string;
  trials: PreventativeTrial[];
}

/** What a finished interpretation of a seed folder left behind, read back for later trials. */
export interface SeedInterpretation {
  summary: {
    vectors: { trait: string; method: string }[];
    monitoring: { trait: string; layer: number }[];
    /** The persona space's layer (every version records it). */
    space?: { layer: number };
  };
  bundles: { response: VectorBundle; contrastive: VectorBundle };
  traits: string[];
  nLayers: number;
  /** Per trait (in `traits` order), the layer it is monitored at (-1 if not recorded). */
  monitorLayers: number[];
  /** A trait's vector, of the method the interpretation chose for it, at a layer. */
  atLayer: (trait: string, layer: number) => PersonaVector;
  postDir: string;
}

/**
 * Reads <seedDir>/interpret (interpret.json and both vector files) and checks its traits against `world`, so that
 * trials on a finished run use the vectors, methods and layers the run's interpretation chose.
 */
export function readSeedInterpretation(seedDir: string, world: World): SeedInterpretation {
  const dir = path.join(seedDir, 'interpret');
  const summaryFile = path.join(dir, 'interpret.json');
  if (!fs.existsSync(summaryFile))
    throw new Error(
      `${summaryFile} not found: run the interpretation first (psm run, or psm interpret ${seedDir})`,
    );
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as SeedInterpretation['summary'];
  const bundles = {
    response: loadVectorBundle(path.join(dir, 'vectors.safetensors')),
    contrastive: loadVectorBundle(path.join(dir, 'vectors-contrastive.safetensors')),
  };
  const traits = summary.vectors.map((v) => v.trait);
  const missing = traits.filter((t) => !world.domains.some((d) => d.name === t));
  if (missing.length > 0)
    throw new Error(
      `${summaryFile} has traits the world lacks (${missing.join(', ')}): pass the run's world`,
    );
  const method = new Map(summary.vectors.map((v) => [v.trait, v.method]));
  return {
    summary,
    bundles,
    traits,
    nLayers: bundles.response.nLayers,
    monitorLayers: traits.map((t) => summary.monitoring.find((m) => m.trait === t)?.layer ?? -1),
    atLayer: (t, l) =>
      bundleVector(method.get(t) === 'contrastive' ? bundles.contrastive : bundles.response, t, l),
    postDir: path.join(seedDir, 'posttrain', 'model'),
  };
}

/**
 * Preventative trials on a seed folder whose interpretation has run (its vectors, each trait's method and monitoring
 * layer come from <seedDir>/interpret): fine-tune the post-trained model on `examples` plainly, with the vector
 * added at each alpha, and (with `ablate`) under concept ablation; compare the off-target drops.
 */
export function preventativeStudy(
  seedDir: string,
  opts: {
    world: World;
    examples: readonly ChatExample[];
    alphas: readonly number[];
    /** Also run concept ablation of each of these subspaces (the pipeline's: DEFAULT_ABLATION_SUBSPACES). */
    ablate?: readonly AblationSubspace[];
    finetune: Omit<FineTuneOptions, 'hooks' | 'onStep'>;
    finetuneDomain?: string;
    itemsPerDomain?: number;
    trait?: string;
    layer?: number;
    onTrial?: (t: PreventativeTrial) => void;
  },
): PreventativeStudy {
  const ablate = opts.ablate ?? [];
  if (opts.alphas.length === 0 && ablate.length === 0)
    throw new Error('preventative study: no alphas and no ablation');
  const world = opts.world;
  const seedRun = readSeedInterpretation(seedDir, world);
  const { summary, bundles, traits, nLayers, postDir } = seedRun;
  const finetuneDomain = opts.finetuneDomain ?? world.datasets.narrow?.domain ?? '';
  const { vector, layer } = preventativeVector({
    ...seedRun,
    finetuneDomain,
    trait: opts.trait,
    layer: opts.layer,
  });
  const interventions = opts.alphas.map((alpha) => additiveIntervention(vector, layer, alpha));
  const itemsPerDomain = opts.itemsPerDomain ?? 48;
  // One read-only copy of the post-trained model for the archetypes and the persona space; the trials load fresh
  // copies, since each fine-tune changes its own.
  let postHandle: ModelHandle | undefined;
  const post = () => (postHandle ??= loadModelHandle(postDir));
  const ablations = ablationInterventions(ablate, {
    traits,
    finetuneDomain,
    nLayers,
    vectorsAt: (t, l) => [bundleVector(bundles.response, t, l), bundleVector(bundles.contrastive, t, l)],
    seed: opts.finetune.seed,
    world,
    post,
    itemsPerDomain,
    itemSeed: 1,
  });
  // The interpretation's persona space, rebuilt from its documents at its layer, places each trial's Assistant.
  const space = summary.space
    ? personaSpace(post(), world, summary.space.layer, {
        docs: interpretArchetypeDocuments(world, itemsPerDomain, 1),
      })
    : null;
  const trials = preventativeTrials(
    () => loadModelHandle(postDir),
    opts.examples,
    [...interventions, ...ablations],
    preventativeItems(world, itemsPerDomain),
    finetuneDomain,
    {
      ...opts.finetune,
      ...(space
        ? { axisPosition: (h: ModelHandle) => placeAssistant(space, h, world, 'trial').axisPosition }
        : {}),
    },
    opts.onTrial,
  );
  return { seedDir, layer, vector: vector.trait, trials };
}
