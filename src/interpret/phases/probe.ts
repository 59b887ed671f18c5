/**
 * Phase 7: the archetype-posterior probe, on the pre-trained model (in-context inference is a pre-training skill),
 * and its agreement with Bayes.
 */
import type { ModelHandle } from '../activations.ts';
import { itemSeedOf } from '../item-seeds.ts';
import { archetypeProbe } from '../probe.ts';
import type { InterpretSummary } from '../types.ts';
import type { InterpretContext } from './context.ts';

export function probePhase(ctx: InterpretContext, base: ModelHandle): InterpretSummary['probe'] {
  const N = ctx.itemsPerDomain;
  const pr = archetypeProbe(base, ctx.world, {
    // About the probe's default of 2000 persona chains at the default 48 items per domain (six rows each).
    size: Math.max(120, 42 * N),
    seed: itemSeedOf('probe', ctx.itemSeed),
    evalPerCell: Math.max(2, Math.round(N / 12)),
  });
  return {
    layer: pr.layer,
    layers: pr.layers,
    l2: pr.l2,
    trainRows: pr.trainRows,
    ...pr.agreement,
    perLayer: pr.perLayer,
  };
}
