/** Phase 3: dose-response of the Assistant's trait battery (held-out chats) under steering, and ablation. */
import { batteryItems } from '../../world/index.ts';
import { itemSeedOf } from '../item-seeds.ts';
import { ablationEffect, byDomain, doseResponse, traceItems, type ScoredItem } from '../steer.ts';
import type { InterpretSummary } from '../types.ts';
import type { InterpretContext } from './context.ts';
import type { VectorsPhase } from './vectors.ts';

export interface SteeringPhase {
  /** The held-out battery chats per trait (capping scores its first items as the normal chats). */
  battery: Map<string, ScoredItem[]>;
  steering: InterpretSummary['steering'];
}

/** Each trait's chosen vector added at its layer over the alpha grid, and projected out (ablation). */
export function steeringPhase(ctx: InterpretContext, vectors: VectorsPhase): SteeringPhase {
  const { post, world, itemsPerDomain: N, itemSeed: seed, alphas } = ctx;
  const battery = byDomain(
    batteryItems(world, { seed: itemSeedOf('battery', seed), batteryPerDomain: N, batteryFormats: ['chat'] }),
  );
  const steering = vectors.vecs.map((v) => {
    const items = battery.get(v.trait)!;
    const dr = doseResponse(post, items, v, alphas, { trace: traceItems(post, items) });
    const zero = dr.alphas.indexOf(0);
    const ab = ablationEffect(post, items, v, zero >= 0 ? { base: dr.pGood[zero] } : {});
    return { ...dr, ablation: { base: ab.base, ablated: ab.ablated } };
  });
  return { battery, steering };
}
