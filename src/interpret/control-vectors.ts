/**
 * Persona vectors to and from llama.cpp control vectors (src/interop/control-vector.ts has the file format and the
 * layer convention).
 *
 * Scale: a persona vector is exported as the vector `psm steer` adds at alpha = 1 (ALPHA_UNIT x the layer's residual
 * norm along its direction), so `llama-cli --control-vector-scaled FILE A` pushes as `psm steer --alpha=A` does.
 * An imported control vector becomes a persona-vector bundle whose alpha is llama.cpp's strength: each layer's
 * residual norm is set to |direction| / ALPHA_UNIT, so `psm steer --alpha=A` adds A x direction.
 */
import { hookOfLlamaCppLayer, llamaCppLayerOfHook, type ControlVector } from '../interop/control-vector.ts';
import { norm } from './activations.ts';
import type { PersonaVector } from './persona-vector.ts';
import { ALPHA_UNIT, steeringVector } from './steer.ts';
import type { TraitVectors, VectorBundle } from './vectors.ts';

/** The control vector that steers as `v` does at alpha = 1 (its hook mapped to llama.cpp's layer). */
export function controlVectorOfPersonaVector(
  v: PersonaVector,
  nLayers: number,
  modelHint: string,
): ControlVector {
  const layer = llamaCppLayerOfHook(v.hook, nLayers);
  return { modelHint, directions: new Map([[layer, steeringVector(v, 1)]]) };
}

export interface ImportTarget {
  /** Name of the imported vector (the bundle's one trait). */
  name: string;
  /** The model it is meant for: its hash (the bundle's provenance), folder, dim and block count. */
  modelHash: string;
  model?: string;
  dim: number;
  nLayers: number;
}

/**
 * A persona-vector bundle with one "trait" holding the control vector's direction at each layer (zeros where the
 * file has none) and, as its selected layer, the layer of the largest direction. Directions for blocks the model
 * lacks, or of another width, are refused.
 */
export function bundleOfControlVector(cv: ControlVector, target: ImportTarget): VectorBundle {
  const { dim, nLayers } = target;
  for (const [layer, d] of cv.directions) {
    if (layer >= nLayers)
      throw new Error(
        `the control vector has direction.${layer}, but the model has blocks 0..${nLayers - 1} (was it made for another model? its hint: "${cv.modelHint}")`,
      );
    if (d.length !== dim)
      throw new Error(
        `the control vector's directions have ${d.length} values, the model's residual stream ${dim}`,
      );
  }
  let best = -1;
  const byLayer: PersonaVector[] = Array.from({ length: nLayers }, (_, layer) => {
    const vector = cv.directions.get(layer) ?? new Float32Array(dim);
    const n = norm(vector);
    if (n > 0 && (best < 0 || n > norm(cv.directions.get(best)!))) best = layer;
    return {
      trait: target.name,
      method: 'imported',
      hook: hookOfLlamaCppLayer(layer),
      layer,
      vector,
      modelHash: target.modelHash,
      dim,
      residualNorm: n / ALPHA_UNIT,
    };
  });
  const trait: TraitVectors = {
    trait: target.name,
    method: 'imported',
    byLayer,
    bestLayer: best,
    steeringEffect: [],
    steeringMonotone: [],
  };
  return {
    format: 'psm-persona-vectors',
    version: 1,
    modelHash: target.modelHash,
    model: target.model,
    dim,
    nLayers,
    hookKind: 'hook_resid_post',
    method: 'imported',
    span: 'all',
    date: new Date().toISOString(),
    itemsPerTrait: 0,
    selection: null,
    traits: [trait],
  };
}
