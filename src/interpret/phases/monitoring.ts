/** Phase 2: how well each trait's projection reads the model's P(bad), on Assistant chats and on persona probes. */
import { variance } from '../../measurement/stats.ts';
import { itemSeedOf } from '../item-seeds.ts';
import { monitorItems, monitorTraits, type TraitMonitor } from '../monitor.ts';
import type { InterpretSummary } from '../types.ts';
import type { PersonaVector } from '../vectors.ts';
import type { InterpretContext } from './context.ts';
import type { VectorsPhase } from './vectors.ts';

export interface MonitoringPhase {
  /** Per trait, the vector (method and layer) it is read with; the shift and the preventative vector use them too. */
  monitorVecs: PersonaVector[];
  monitoring: InterpretSummary['monitoring'];
  monitoringProbes: InterpretSummary['monitoringProbes'];
}

/**
 * Each trait is read with the vector (method and layer) whose projection tracks P(bad) best on training-pool chats,
 * a validation set disjoint from the held-out monitoring items. The layer chosen for steering (where a push moves
 * behaviour most) can be one where the context's persona is not yet represented at the last prompt token.
 */
export function monitoringPhase(ctx: InterpretContext, vectors: VectorsPhase): MonitoringPhase {
  const { post, world, itemsPerDomain: N, itemSeed: seed, traits } = ctx;
  const { response, contrastive } = vectors;
  // The spread of P(bad) says how much there is to monitor: a trait the model never varies on gives a noisy r.
  const brief = ({ trait, layer: l, r, rRandom, n, points }: TraitMonitor) => ({
    trait,
    layer: l,
    r,
    rRandom,
    n,
    pBadSd: Math.sqrt(variance(points.map((p) => p.pBad))),
  });
  const validation = monitorItems(
    world,
    Math.max(4, Math.round(N / 2)),
    itemSeedOf('monitoringValidation', seed),
    'assistant',
    'train',
  );
  // Both extraction methods compete here too: the vector that steers best need not be the one that reads best
  // (in one seed the response vector won the steering choice for power at layer 0 and monitored at r 0.63).
  const monitorVecs = traits.map((t, i) => {
    const candidates = [response, contrastive].flatMap((b) => b.traits[i].byLayer);
    const rs = monitorTraits(post, new Map([[t, validation.get(t)!]]), candidates, {
      randomDirections: 0,
    }).map((m) => m.r);
    const best = rs.reduce((bi, r, j) => (r > rs[bi] || Number.isNaN(rs[bi]) ? j : bi), 0);
    return candidates[best];
  });
  const monitoring = monitorTraits(
    post,
    monitorItems(world, N, itemSeedOf('monitoring', seed), 'assistant'),
    monitorVecs,
  ).map((m, i) => ({ ...brief(m), method: monitorVecs[i].method }));
  const monitoringProbes = monitorTraits(
    post,
    monitorItems(world, Math.max(4, Math.round(N / 2)), itemSeedOf('monitoringProbes', seed), 'probes'),
    monitorVecs,
  ).map(brief);
  return { monitorVecs, monitoring, monitoringProbes };
}
