/**
 * A persona vector: one trait's direction at one hook of one model, with what it was extracted from. Its own module
 * (below vectors.ts, which extracts them, and steer.ts, which applies them) so that neither imports the other's types.
 */
export type VectorMethod = 'response' | 'contrastive';
export const VECTOR_METHODS: readonly VectorMethod[] = ['response', 'contrastive'];

export interface PersonaVector {
  trait: string;
  method: VectorMethod | string;
  hook: string;
  layer: number;
  vector: Float32Array;
  /** sha256 of the model.safetensors it was extracted from. */
  modelHash: string;
  dim: number;
  /** Mean per-token norm of the residual stream at this hook over the extraction contexts (the steering unit). */
  residualNorm: number;
}
