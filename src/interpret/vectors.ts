/**
 * Persona vectors (Chen et al. 2025) for every trait of the world and every layer:
 *   response     mean activation over the behaviour span of the bad option minus that of the good option, after
 *                the same single-scene prompts (teacher-forced, every wording of each side)
 *   contrastive  mean activation in trait-eliciting contexts (the character showed the bad behaviour in earlier
 *                scenes of the same domain) minus trait-suppressing ones (showed the good behaviour), by default
 *                at the last prompt token, where the model is about to act
 * A vector points toward the trait's bad pole, so adding it should lower P(good) and its projection should rise
 * with P(bad). The layer of each trait is chosen by steering effect: the drop of P(good) from -alpha to +alpha
 * on separate selection items. Vectors carry the hash of the model they came from and support arithmetic and
 * cosine comparison with shape and provenance checks.
 */
import { z } from 'zod';
import { checkHookName } from '../model/hooks.ts';
import type { TensorData } from '../io/safetensors.ts';
import type { World } from '../world/schema.ts';
import {
  DEFAULT_HOOK_KIND,
  layerHook,
  meanActivations,
  norm,
  readProvenance,
  saveTensorsWithProvenance,
  tokenizeContextsFor,
  type ModelHandle,
  type ResidKind,
  type SpanKind,
} from './activations.ts';
import { behaviourContexts, sceneItems, type ChoiceContext } from './contexts.ts';
import { coherentRange, doseResponse, traceItems, type DoseResponse, type TracedItems } from './steer.ts';
import { VECTOR_METHODS, type PersonaVector, type VectorMethod } from './persona-vector.ts';

export { VECTOR_METHODS, type PersonaVector, type VectorMethod } from './persona-vector.ts';

/**
 * How a bundle's vectors came to be: extracted by a method, by the reference recipe on generated and judged replies
 * (`psm vectors recipe`, src/recipe/), or imported from a llama.cpp control vector.
 */
export type BundleMethod = VectorMethod | 'recipe' | 'imported';
const BUNDLE_METHODS: readonly BundleMethod[] = [...VECTOR_METHODS, 'recipe', 'imported'];

export interface TraitVectors {
  trait: string;
  method: BundleMethod;
  byLayer: PersonaVector[];
  /** Layer with the largest steering effect (-1 before selection). */
  bestLayer: number;
  /** Per layer: the coherent steering effect on the selection items (`coherentSteeringEffect`). */
  steeringEffect: number[];
  /** Per layer: P(good) falls monotonically with alpha on the selection items (empty in files from before v2). */
  steeringMonotone: boolean[];
}

export interface VectorBundle {
  format: 'psm-persona-vectors';
  version: 1;
  modelHash: string;
  model?: string;
  dim: number;
  nLayers: number;
  hookKind: ResidKind;
  method: BundleMethod;
  span: SpanKind;
  date: string;
  itemsPerTrait: number;
  selection: { alpha: number; items: number } | null;
  traits: TraitVectors[];
}

export interface ExtractOptions {
  traits?: string[];
  method?: VectorMethod;
  /** Extraction items per trait (default 24; each gives every wording of both sides). */
  itemsPerTrait?: number;
  seed?: number;
  hookKind?: ResidKind;
  /** Span to average (default: response for 'response', last-prompt for 'contrastive'). */
  span?: SpanKind;
  /** Earlier same-domain scenes in contrastive contexts (default 2). */
  contrastScenes?: number;
  tokensPerBatch?: number;
}

function traitsOf(world: World, traits?: string[]): string[] {
  const all = world.domains.map((d) => d.name);
  if (!traits || traits.length === 0) return all;
  for (const t of traits)
    if (!all.includes(t)) throw new Error(`unknown trait "${t}" (the world's traits: ${all.join(', ')})`);
  return traits;
}

/** Contexts of the bad and the good side for one trait. */
export function extractionContexts(
  world: World,
  trait: string,
  method: VectorMethod,
  n: number,
  seed: number,
  contrastScenes = 2,
) {
  if (method === 'response') {
    const items = sceneItems(world, trait, { n, seed, label: 'extract' });
    return { bad: behaviourContexts(items, 'bad'), good: behaviourContexts(items, 'good') };
  }
  if (method !== 'contrastive')
    throw new Error(`unknown vector method "${method}" (known: ${VECTOR_METHODS.join(', ')})`);
  // Same streams on both sides: the pairs differ only in the behaviour shown.
  const bad = sceneItems(world, trait, {
    n,
    seed,
    label: 'contrast',
    earlier: { behaviour: 'bad', count: contrastScenes },
  });
  const good = sceneItems(world, trait, {
    n,
    seed,
    label: 'contrast',
    earlier: { behaviour: 'good', count: contrastScenes },
  });
  return { bad: behaviourContexts(bad, 'bad'), good: behaviourContexts(good, 'good') };
}

/** Persona vectors of every trait at every layer (no layer selection). */
export function extractPersonaVectors(
  handle: ModelHandle,
  world: World,
  opts: ExtractOptions = {},
): TraitVectors[] {
  const method = opts.method ?? 'response';
  if (!VECTOR_METHODS.includes(method))
    throw new Error(`unknown vector method "${method}" (known: ${VECTOR_METHODS.join(', ')})`);
  const span: SpanKind = opts.span ?? (method === 'response' ? 'response' : 'last-prompt');
  const kind = opts.hookKind ?? DEFAULT_HOOK_KIND;
  const { model } = handle;
  const nLayers = model.config.nLayers;
  const dim = model.config.dim;
  const hooks = Array.from({ length: nLayers }, (_, l) => layerHook(l, kind));
  for (const h of hooks) checkHookName(h, nLayers);
  const n = opts.itemsPerTrait ?? 24;
  const seed = opts.seed ?? 1;
  return traitsOf(world, opts.traits).map((trait) => {
    const ctx = extractionContexts(world, trait, method, n, seed, opts.contrastScenes);
    const bad = meanActivations(model, tokenizeContextsFor(handle, ctx.bad), hooks, span, {
      tokensPerBatch: opts.tokensPerBatch,
    });
    const good = meanActivations(model, tokenizeContextsFor(handle, ctx.good), hooks, span, {
      tokensPerBatch: opts.tokensPerBatch,
    });
    const byLayer = hooks.map((hook, layer) => {
      const v = new Float32Array(dim);
      const b = bad.data.get(hook)!;
      const g = good.data.get(hook)!;
      for (let i = 0; i < bad.n; i++) for (let j = 0; j < dim; j++) v[j] += b[i * dim + j] / bad.n;
      for (let i = 0; i < good.n; i++) for (let j = 0; j < dim; j++) v[j] -= g[i * dim + j] / good.n;
      const residualNorm = (bad.tokenNorm.get(hook)! + good.tokenNorm.get(hook)!) / 2;
      return { trait, method, hook, layer, vector: v, modelHash: handle.hash, dim, residualNorm };
    });
    return { trait, method, byLayer, bestLayer: -1, steeringEffect: [], steeringMonotone: [] };
  });
}

/**
 * Selection items: the Assistant's chats from the training pools, separate from the extraction items and from the
 * held-out battery. Steering is meant to move the Assistant, so the layer is chosen on what it does to the Assistant;
 * stories of other characters respond to a push differently (chosen on them, layer 0 once won for helpfulness,
 * where the Assistant's choices barely moved or the model broke).
 */
export function selectionItems(world: World, trait: string, n: number, seed: number): ChoiceContext[] {
  return sceneItems(world, trait, { n, seed, label: 'select', subjects: ['assistant'] });
}

/**
 * The selection's dose grid for a strength alpha: both signs at alpha / 4, alpha / 2 and alpha, and 0 (for alpha 4,
 * the battery's DEFAULT_ALPHAS): a layer that breaks the model at +-2 can still steer coherently at +-1.
 */
export function selectionAlphas(alpha: number): number[] {
  return [-alpha, -alpha / 2, -alpha / 4, 0, alpha / 4, alpha / 2, alpha];
}

/**
 * The steering effect of one dose-response: P(good) at the most negative coherent alpha minus at the most positive
 * (positive when the vector pushes toward the bad pole, as it should), over the coherent run of alphas around 0.
 * A push that breaks the model is no effect on the persona.
 */
export function coherentSteeringEffect(dr: DoseResponse): number {
  const { from, to } = coherentRange(dr.alphas, dr.coherent, dr.logMass);
  return dr.pGood[from] - dr.pGood[to - 1];
}

/** The index of the largest finite effect among the allowed layers, -1 if none. */
function argmaxEffect(effects: readonly number[], allowed: (l: number) => boolean): number {
  let best = -1;
  effects.forEach((e, l) => {
    if (Number.isFinite(e) && allowed(l) && (best < 0 || e > effects[best])) best = l;
  });
  return best;
}

/**
 * Chooses each trait's layer by steering effect on the selection items: the dose-response over
 * `selectionAlphas(alpha)` at every layer, and the layer with the largest coherent effect among those where P(good)
 * falls monotonically with alpha (up to sampling noise, the test the report's steering goal applies); when no layer
 * is monotone, the largest coherent effect. Returns the same objects, filled in.
 */
export function selectLayers(
  handle: ModelHandle,
  world: World,
  traits: TraitVectors[],
  opts: {
    alpha?: number;
    items?: number;
    seed?: number;
    layers?: number[];
    /**
     * Traces of the selection items on `handle`, shared between calls (e.g. the two extraction methods), keyed by
     * trait, item count and seed; filled in as traits are traced.
     */
    traces?: Map<string, TracedItems>;
  } = {},
): TraitVectors[] {
  const alpha = opts.alpha ?? 4;
  if (!(Number.isFinite(alpha) && alpha > 0))
    throw new Error(`layer selection: alpha must be a positive number, got ${alpha}`);
  const nItems = opts.items ?? 16;
  const seed = opts.seed ?? 2;
  const grid = selectionAlphas(alpha);
  for (const tv of traits) {
    // Alpha 0 once per trait; each push runs only the blocks after its layer.
    const key = `${tv.trait}/${nItems}/${seed}`;
    let trace = opts.traces?.get(key);
    if (!trace) {
      trace = traceItems(handle, selectionItems(world, tv.trait, nItems, seed));
      opts.traces?.set(key, trace);
    }
    const items = trace.items;
    const curves = tv.byLayer.map((v) =>
      opts.layers && !opts.layers.includes(v.layer) ? null : doseResponse(handle, items, v, grid, { trace }),
    );
    tv.steeringEffect = curves.map((dr) => (dr ? coherentSteeringEffect(dr) : NaN));
    tv.steeringMonotone = curves.map((dr) => dr?.monotonicCoherentWithinNoise ?? false);
    const monotone = argmaxEffect(tv.steeringEffect, (l) => tv.steeringMonotone[l]);
    tv.bestLayer = monotone >= 0 ? monotone : argmaxEffect(tv.steeringEffect, () => true);
  }
  return traits;
}

/**
 * Which of two extractions of a trait steers better at its chosen layer: a monotone dose-response first, then the
 * larger coherent effect. Ties go to `a`.
 */
export function betterSteering(a: TraitVectors, b: TraitVectors): TraitVectors {
  const mono = (t: TraitVectors) => t.steeringMonotone[t.bestLayer] ?? false;
  const effect = (t: TraitVectors) => t.steeringEffect[t.bestLayer] ?? -Infinity;
  if (mono(a) !== mono(b)) return mono(a) ? a : b;
  return effect(b) > effect(a) ? b : a;
}

/** Extraction and layer selection in one call. */
export function personaVectors(
  handle: ModelHandle,
  world: World,
  opts: ExtractOptions & {
    selectAlpha?: number;
    selectItems?: number;
    select?: boolean;
    /** Layers the selection may choose from (default: all). */
    selectLayers?: number[];
    /** Selection traces shared with other calls on the same model (selectLayers' `traces`). */
    selectTraces?: Map<string, TracedItems>;
  } = {},
): VectorBundle {
  const traits = extractPersonaVectors(handle, world, opts);
  const select = opts.select ?? true;
  if (select)
    selectLayers(handle, world, traits, {
      alpha: opts.selectAlpha,
      items: opts.selectItems,
      layers: opts.selectLayers,
      seed: (opts.seed ?? 1) + 1,
      traces: opts.selectTraces,
    });
  const method = opts.method ?? 'response';
  return {
    format: 'psm-persona-vectors',
    version: 1,
    modelHash: handle.hash,
    model: handle.source,
    dim: handle.model.config.dim,
    nLayers: handle.model.config.nLayers,
    hookKind: opts.hookKind ?? DEFAULT_HOOK_KIND,
    method,
    span: opts.span ?? (method === 'response' ? 'response' : 'last-prompt'),
    date: new Date().toISOString(),
    itemsPerTrait: opts.itemsPerTrait ?? 24,
    selection: select ? { alpha: opts.selectAlpha ?? 4, items: opts.selectItems ?? 16 } : null,
    traits,
  };
}

/** One trait's vector at a layer (default: its selected layer). */
export function bundleVector(bundle: VectorBundle, trait: string, layer?: number): PersonaVector {
  const tv = bundle.traits.find((t) => t.trait === trait);
  if (!tv)
    throw new Error(
      `no vector for trait "${trait}" (the file has: ${bundle.traits.map((t) => t.trait).join(', ')})`,
    );
  const l = layer ?? (tv.bestLayer >= 0 ? tv.bestLayer : bundle.nLayers - 1);
  if (!Number.isInteger(l) || l < 0 || l >= tv.byLayer.length) {
    throw new Error(
      `unknown layer ${l} for "${trait}": the vectors cover layers 0..${tv.byLayer.length - 1}`,
    );
  }
  return tv.byLayer[l];
}

// ---------------------------------------------------------------------------------------------------------------
// Arithmetic and comparison

type VectorLike = PersonaVector | Float32Array;
const raw = (v: VectorLike) => (v instanceof Float32Array ? v : v.vector);

function sameShape(a: VectorLike, b: VectorLike, what: string): void {
  const ra = raw(a);
  const rb = raw(b);
  if (ra.length !== rb.length)
    throw new Error(
      `${what}: vectors have ${ra.length} and ${rb.length} elements (different models or hook shapes)`,
    );
}

export function cosine(a: VectorLike, b: VectorLike): number {
  sameShape(a, b, 'cosine');
  const ra = raw(a);
  const rb = raw(b);
  let ab = 0;
  for (let i = 0; i < ra.length; i++) ab += ra[i] * rb[i];
  const d = norm(ra) * norm(rb);
  return d > 0 ? ab / d : NaN;
}

/**
 * sum_i w_i v_i of persona vectors from the same model and hook (allowOtherModel relaxes the model check).
 * The result keeps the first vector's hook and the weighted mean residual norm.
 */
export function combineVectors(
  terms: { vector: PersonaVector; weight: number }[],
  opts: { name?: string; allowOtherModel?: boolean } = {},
): PersonaVector {
  if (terms.length === 0) throw new Error('combineVectors: no vectors');
  const first = terms[0].vector;
  const out = new Float32Array(first.vector.length);
  let wsum = 0;
  let nsum = 0;
  for (const { vector: v, weight } of terms) {
    sameShape(first, v, 'combineVectors');
    if (!Number.isFinite(weight)) throw new Error(`combineVectors: weight ${weight} is not finite`);
    if (v.hook !== first.hook)
      throw new Error(`combineVectors: "${v.trait}" is at ${v.hook}, "${first.trait}" at ${first.hook}`);
    if (!opts.allowOtherModel && v.modelHash !== first.modelHash)
      throw new Error(`combineVectors: "${v.trait}" and "${first.trait}" come from different models`);
    for (let i = 0; i < out.length; i++) out[i] += weight * v.vector[i];
    wsum += Math.abs(weight);
    nsum += Math.abs(weight) * v.residualNorm;
  }
  const name = opts.name ?? terms.map((t) => `${t.weight}*${t.vector.trait}`).join('+');
  return {
    ...first,
    trait: name,
    method: 'combined',
    vector: out,
    residualNorm: wsum > 0 ? nsum / wsum : first.residualNorm,
  };
}

export const addVectors = (a: PersonaVector, b: PersonaVector) =>
  combineVectors([
    { vector: a, weight: 1 },
    { vector: b, weight: 1 },
  ]);
export const subtractVectors = (a: PersonaVector, b: PersonaVector) =>
  combineVectors([
    { vector: a, weight: 1 },
    { vector: b, weight: -1 },
  ]);
export const scaleVector = (a: PersonaVector, s: number) =>
  combineVectors([{ vector: a, weight: s }], { name: `${s}*${a.trait}` });

/** v minus its component along `against` (same model and hook): the part of v that `against` does not carry. */
export function orthogonalize(
  v: PersonaVector,
  against: PersonaVector,
  opts: { allowOtherModel?: boolean } = {},
): PersonaVector {
  sameShape(v, against, 'orthogonalize');
  if (v.hook !== against.hook)
    throw new Error(`orthogonalize: "${v.trait}" is at ${v.hook}, "${against.trait}" at ${against.hook}`);
  if (!opts.allowOtherModel && v.modelHash !== against.modelHash)
    throw new Error(`orthogonalize: "${v.trait}" and "${against.trait}" come from different models`);
  const aa = norm(against.vector) ** 2;
  if (!(aa > 0)) throw new Error(`orthogonalize: "${against.trait}" has zero norm`);
  let va = 0;
  for (let i = 0; i < v.vector.length; i++) va += v.vector[i] * against.vector[i];
  const k = va / aa;
  return {
    ...v,
    trait: `${v.trait} (orthogonal to ${against.trait})`,
    vector: v.vector.map((x, i) => x - k * against.vector[i]),
  };
}

/** Cosines between the traits' vectors (each at `layer`, or at its own selected layer). */
export function traitCosines(bundle: VectorBundle, layer?: number): { traits: string[]; matrix: number[][] } {
  const traits = bundle.traits.map((t) => t.trait);
  const vs = traits.map((t) => bundleVector(bundle, t, layer));
  return { traits, matrix: vs.map((a) => vs.map((b) => cosine(a, b))) };
}

// ---------------------------------------------------------------------------------------------------------------
// Storage: one tensor [nLayers, dim] per trait, everything else in the provenance

export function saveVectorBundle(file: string, bundle: VectorBundle): void {
  const tensors: Record<string, TensorData> = {};
  for (const t of bundle.traits) {
    const data = new Float32Array(t.byLayer.length * bundle.dim);
    t.byLayer.forEach((v, l) => data.set(v.vector, l * bundle.dim));
    tensors[t.trait] = { data, shape: [t.byLayer.length, bundle.dim] };
  }
  saveTensorsWithProvenance(file, tensors, {
    modelHash: bundle.modelHash,
    model: bundle.model,
    hook: Array.from({ length: bundle.nLayers }, (_, l) => layerHook(l, bundle.hookKind)),
    span: bundle.span,
    method: `persona-vectors/${bundle.method}`,
    date: bundle.date,
    n: bundle.traits.length,
    dim: bundle.dim,
    bundle: {
      format: bundle.format,
      version: bundle.version,
      nLayers: bundle.nLayers,
      hookKind: bundle.hookKind,
      method: bundle.method,
      itemsPerTrait: bundle.itemsPerTrait,
      selection: bundle.selection,
      traits: bundle.traits.map((t) => ({
        trait: t.trait,
        bestLayer: t.bestLayer,
        steeringEffect: t.steeringEffect.map((x) => (Number.isFinite(x) ? x : null)),
        steeringMonotone: t.steeringMonotone,
        residualNorm: t.byLayer.map((v) => v.residualNorm),
        vectorNorm: t.byLayer.map((v) => norm(v.vector)),
      })),
    },
  });
}

function isHookName(hook: string): boolean {
  try {
    checkHookName(hook, 1);
    return true;
  } catch {
    return false;
  }
}

/** The bundle part of a persona-vector file's provenance, checked before use (a hand-edited file gets a named error). */
const BundleProvenanceSchema = z.object({
  format: z.literal('psm-persona-vectors'),
  nLayers: z.number().int().positive(),
  // A residual hook kind is whatever makes a valid hook name at a layer (src/model/hooks.ts is the vocabulary).
  hookKind: z
    .string()
    .refine((k) => isHookName(layerHook(0, k as ResidKind)), 'not a residual-stream hook kind')
    .transform((k) => k as ResidKind),
  method: z.enum(BUNDLE_METHODS as [BundleMethod, ...BundleMethod[]]),
  itemsPerTrait: z.number(),
  selection: z.object({ alpha: z.number(), items: z.number() }).nullable(),
  traits: z.array(
    z.object({
      trait: z.string(),
      bestLayer: z.number().int(),
      steeringEffect: z.array(z.number().nullable()),
      steeringMonotone: z.array(z.boolean()).optional(),
      residualNorm: z.array(z.number()),
    }),
  ),
});

export function loadVectorBundle(file: string): VectorBundle {
  const { tensors, provenance } = readProvenance(file);
  if ((provenance.bundle as { format?: unknown } | undefined)?.format !== 'psm-persona-vectors')
    throw new Error(`${file}: not a persona-vector file (written by \`psm vectors\`)`);
  const parsed = BundleProvenanceSchema.safeParse(provenance.bundle);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: provenance bundle.${issue.path.join('.')}: ${issue.message}`);
  }
  const b = parsed.data;
  if (!Number.isInteger(provenance.dim) || provenance.dim <= 0)
    throw new Error(`${file}: provenance dim ${JSON.stringify(provenance.dim)} is not a positive integer`);
  for (const t of b.traits)
    if (t.residualNorm.length !== b.nLayers)
      throw new Error(
        `${file}: trait "${t.trait}" has ${t.residualNorm.length} residual norms for ${b.nLayers} layers`,
      );
  const dim = provenance.dim;
  const traits: TraitVectors[] = b.traits.map((t) => {
    const tensor = tensors.get(t.trait);
    if (!tensor) throw new Error(`${file}: tensor for trait "${t.trait}" is missing`);
    if (tensor.shape.length !== 2 || tensor.shape[0] !== b.nLayers || tensor.shape[1] !== dim) {
      throw new Error(
        `${file}: tensor "${t.trait}" has shape [${tensor.shape}], expected [${b.nLayers}, ${dim}]`,
      );
    }
    const byLayer = Array.from({ length: b.nLayers }, (_, l) => ({
      trait: t.trait,
      method: b.method,
      hook: layerHook(l, b.hookKind),
      layer: l,
      vector: tensor.data.slice(l * dim, (l + 1) * dim),
      modelHash: provenance.modelHash,
      dim,
      residualNorm: t.residualNorm[l],
    }));
    return {
      trait: t.trait,
      method: b.method,
      byLayer,
      bestLayer: t.bestLayer,
      steeringEffect: t.steeringEffect.map((x) => (x === null ? NaN : x)),
      steeringMonotone: t.steeringMonotone ?? [],
    };
  });
  return {
    format: 'psm-persona-vectors',
    version: 1,
    modelHash: provenance.modelHash,
    model: provenance.model,
    dim,
    nLayers: b.nLayers,
    hookKind: b.hookKind,
    method: b.method,
    span: provenance.span as SpanKind,
    date: provenance.date,
    itemsPerTrait: b.itemsPerTrait,
    selection: b.selection,
    traits,
  };
}
