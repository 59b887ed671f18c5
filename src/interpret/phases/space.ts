/** Phase 6: persona space, the Assistant's path through it, the assistant axis, capping on it, and drift. */
import { mean } from '../../measurement/stats.ts';
import { loadModelHandle, type ModelHandle } from '../activations.ts';
import { sceneItems } from '../contexts.ts';
import { itemSeedOf } from '../item-seeds.ts';
import {
  assistantDrift,
  axisThreshold,
  interpretArchetypeDocuments,
  personaSpace,
  placeAssistant,
  type PersonaSpace,
} from '../space.ts';
import { cappingHooks, pGoodOf, type ScoredItem } from '../steer.ts';
import type { InterpretSummary } from '../types.ts';
import type { InterpretContext } from './context.ts';
import type { ShiftPhase } from './shift.ts';
import type { SteeringPhase } from './steering.ts';
import type { VectorsPhase } from './vectors.ts';

export interface SpacePhase {
  space: PersonaSpace;
  /** The pre-trained model (the start of the Assistant's path; the probe reads it too). */
  base: ModelHandle;
  assistant: InterpretSummary['space']['assistant'];
  capping: NonNullable<InterpretSummary['capping']>;
  drift: InterpretSummary['space']['drift'];
}

/**
 * The space of the archetypes at the vectors' common layer; the Assistant placed in it as pre-trained, post-trained
 * and after each arm's fine-tune.
 */
export function spacePhase(
  ctx: InterpretContext,
  { layer }: VectorsPhase,
  { battery }: SteeringPhase,
  { placements }: ShiftPhase,
): SpacePhase {
  const { opts, post, world, itemsPerDomain: N, itemSeed: seed } = ctx;
  const space = personaSpace(post, world, layer, { docs: interpretArchetypeDocuments(world, N, seed) });
  const base = loadModelHandle(opts.baseDir);
  const assistant: SpacePhase['assistant'] = [
    { stage: 'base', ...placeAssistant(space, base, world, 'base') },
    { stage: 'post-trained', ...placeAssistant(space, post, world, 'post-trained') },
    ...placements.map((p) => ({ stage: p.label, ...placeAssistant(space, p.handle, world, p.label) })),
  ];
  const capping = cappingPhase(ctx, space, layer, battery);
  const drift =
    opts.drift === false
      ? null
      : assistantDrift(post, world, space, {
          turns: 5,
          perDomain: 2,
          seed: itemSeedOf('drift', seed),
          maxNewTokens: 16,
        });
  return { space, base, assistant, capping, drift };
}

/**
 * Capping the Assistant's projection on the axis from below, on chats after bad earlier turns (where it should help)
 * and on ordinary battery chats (where it should do little). Threshold: the 25th percentile of the Assistant's
 * token-level projections on the axis in ordinary chats.
 */
function cappingPhase(
  ctx: InterpretContext,
  space: PersonaSpace,
  layer: number,
  battery: SteeringPhase['battery'],
): SpacePhase['capping'] {
  const { post, world, itemsPerDomain: N, itemSeed: seed, traits } = ctx;
  const threshold = axisThreshold(post, world, space.axis, layer, 0.25, itemSeedOf('axisThreshold', seed));
  const hooks = cappingHooks(post, space.axis, layer, threshold);
  const per = Math.max(4, Math.round(N / 6));
  const bad: ScoredItem[] = traits.flatMap((d, i) =>
    sceneItems(world, d, {
      n: per,
      seed: itemSeedOf('cappingBadContext', seed),
      subjects: ['assistant'],
      pool: 'heldout',
      label: 'cap-bad',
      earlier: { behaviour: 'bad', count: 2, domain: traits[(i + 1) % traits.length] },
    }),
  );
  const ok: ScoredItem[] = traits.flatMap((d) => (battery.get(d) ?? []).slice(0, per));
  return {
    layer,
    threshold,
    badContext: { base: mean(pGoodOf(post, bad)), capped: mean(pGoodOf(post, bad, hooks, 'capping')) },
    normal: { base: mean(pGoodOf(post, ok)), capped: mean(pGoodOf(post, ok, hooks, 'capping')) },
    n: bad.length,
  };
}
