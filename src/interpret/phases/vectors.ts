/**
 * Phase 1: persona vectors of both methods at every layer of the post-trained model, and per trait the vectors the
 * later phases use.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { commonLayer } from '../prevent.ts';
import type { TracedItems } from '../steer.ts';
import type { InterpretSummary } from '../types.ts';
import {
  betterSteering,
  cosine,
  personaVectors,
  saveVectorBundle,
  type PersonaVector,
  type TraitVectors,
  type VectorBundle,
} from '../vectors.ts';
import type { InterpretContext } from './context.ts';

export interface VectorsPhase {
  response: VectorBundle;
  contrastive: VectorBundle;
  /** Per trait, the vectors of the method used downstream. */
  chosen: TraitVectors[];
  /** Per trait, its chosen vector at its chosen layer. */
  vecs: PersonaVector[];
  summary: InterpretSummary['vectors'];
  /** The one layer of persona space, capping and the trait cosines (commonLayer of the traits' layers). */
  layer: number;
  /** A trait's chosen-method vector at another layer. */
  atLayer: (trait: string, layer: number) => PersonaVector;
}

/**
 * Each trait's layer is chosen by steering effect on separate selection items (training-pool Assistant chats); with
 * vectorMethod 'best' (default) each trait keeps the method that steers better: monotonically first, then more.
 * 12 selection items at 48 items per domain, over the battery's alpha grid. Writes both vector files to `outDir`.
 */
export function vectorsPhase(ctx: InterpretContext, outDir: string | null): VectorsPhase {
  const { post, world, itemsPerDomain: N, itemSeed: seed, traits } = ctx;
  const selectItems = Math.max(8, Math.round(N / 4));
  const selectTraces = new Map<string, TracedItems>(); // both methods select on the same chats
  const response = personaVectors(post, world, {
    method: 'response',
    itemsPerTrait: Math.max(8, Math.round(N / 2)),
    selectItems,
    seed,
    selectTraces,
  });
  const contrastive = personaVectors(post, world, {
    method: 'contrastive',
    itemsPerTrait: Math.max(8, Math.round(N / 3)),
    selectItems,
    seed,
    selectTraces,
  });
  const methodChoice = ctx.opts.vectorMethod ?? 'best';
  const chosen = traits.map((t, i) => {
    const r = response.traits[i];
    const c = contrastive.traits[i];
    if (methodChoice === 'contrastive') return c;
    if (methodChoice === 'response') return r;
    return betterSteering(r, c);
  });
  const vecs: PersonaVector[] = chosen.map((tv) => tv.byLayer[tv.bestLayer]);
  if (outDir) {
    fs.mkdirSync(outDir, { recursive: true });
    saveVectorBundle(path.join(outDir, 'vectors.safetensors'), response);
    saveVectorBundle(path.join(outDir, 'vectors-contrastive.safetensors'), contrastive);
  }
  const summary = chosen.map((tv, i) => ({
    trait: tv.trait,
    method: tv.method,
    bestLayer: tv.bestLayer,
    steeringEffect: tv.steeringEffect,
    steeringMonotone: tv.steeringMonotone,
    steeringEffectResponse: response.traits[i].steeringEffect,
    steeringEffectContrastive: contrastive.traits[i].steeringEffect,
    residualNorm: vecs[i].residualNorm,
    methodCosine: cosine(
      response.traits[i].byLayer[tv.bestLayer],
      contrastive.traits[i].byLayer[tv.bestLayer],
    ),
  }));
  const layer = commonLayer(
    chosen.map((t) => t.bestLayer),
    ctx.nLayers,
  );
  const atLayer = (trait: string, l: number) => chosen.find((c) => c.trait === trait)!.byLayer[l];
  return { response, contrastive, chosen, vecs, summary, layer, atLayer };
}
