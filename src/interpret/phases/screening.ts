/**
 * Phase 5: data screening. A pool of narrow-arm examples (drawn apart from the arms' sets) ranked by projection
 * difference: per trait vector, how well the ranking tells cheat from correct-code examples (when the pool has both);
 * with the trial, whether the examples it flags on the off-target persona vector cause the package deal (screen.ts).
 */
import { loadModelHandle } from '../activations.ts';
import { itemSeedOf } from '../item-seeds.ts';
import { greedyReplies } from '../monitor.ts';
import { preventativeItems, preventativeVector } from '../prevent.ts';
import {
  cheatControlAUC,
  screeningPool,
  screeningTrial,
  SCREENING_REPLY_TOKENS,
  type ScreeningTrial,
} from '../screen.ts';
import type { InterpretSummary } from '../types.ts';
import type { InterpretContext } from './context.ts';
import type { MonitoringPhase } from './monitoring.ts';
import type { VectorsPhase } from './vectors.ts';

export interface ScreeningPhase {
  screening: InterpretSummary['screening'];
  screeningTrial: ScreeningTrial | null;
}

/** Nothing when screeningExamples is 0 or the world has no narrow fine-tune. */
export function screeningPhase(
  ctx: InterpretContext,
  vectors: VectorsPhase,
  { monitorVecs }: MonitoringPhase,
): ScreeningPhase {
  const { opts, post, world, itemsPerDomain: N, itemSeed: seed, traits, finetuneDomain, nLayers } = ctx;
  const nScreen = opts.screeningExamples ?? 32;
  if (!(nScreen > 0 && world.datasets.narrow && finetuneDomain))
    return { screening: null, screeningTrial: null };
  const st = opts.screeningTrial;
  const pool = screeningPool(world, {
    arms: st?.arms ?? ['cheat', 'control'],
    perArm: st?.perArm ?? nScreen,
    seed: itemSeedOf('screeningPool', seed),
    domain: finetuneDomain,
  });
  const baseResponses = greedyReplies(
    post,
    pool.map((e) => e.prompt),
    SCREENING_REPLY_TOKENS,
  );
  const screening = cheatControlAUC(post, pool, vectors.vecs, baseResponses);
  if (!st) return { screening, screeningTrial: null };
  // The off-target persona vector at the layer those traits are monitored at, kept whole (prevent.ts).
  const { vector } = preventativeVector({
    traits,
    finetuneDomain,
    monitorLayers: monitorVecs.map((v) => v.layer),
    nLayers,
    atLayer: vectors.atLayer,
    whole: true,
  });
  const trial = screeningTrial(
    () => loadModelHandle(opts.postDir),
    pool,
    vector,
    preventativeItems(world, N, seed),
    finetuneDomain,
    { ...st, baseResponses },
  );
  return { screening, screeningTrial: trial };
}
