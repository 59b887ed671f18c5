/**
 * Phase 8 (optional): preventative trials. The given examples fine-tuned from the post-trained model plainly and under
 * each intervention active while training only: concept ablation of each subspace, and the off-target persona vector
 * added at one layer.
 */
import { loadModelHandle } from '../activations.ts';
import { DEFAULT_ABLATION_SUBSPACES } from '../ablation-subspaces.ts';
import {
  ablationInterventions,
  additiveIntervention,
  preventativeItems,
  preventativeVector,
} from '../prevent.ts';
import { preventativeTrials, type PreventativeTrial } from '../shift.ts';
import { placeAssistant } from '../space.ts';
import type { InterpretContext } from './context.ts';
import type { MonitoringPhase } from './monitoring.ts';
import type { SpacePhase } from './space.ts';
import type { VectorsPhase } from './vectors.ts';

/** One trial per method (and per ablated subspace), sharing the plain fine-tune; null when not asked for. */
export function preventativePhase(
  ctx: InterpretContext,
  vectors: VectorsPhase,
  { monitorVecs }: MonitoringPhase,
  { space }: SpacePhase,
): PreventativeTrial[] | null {
  const { opts, post, world, itemsPerDomain: N, itemSeed: seed, traits, finetuneDomain, nLayers } = ctx;
  const pv = opts.preventative;
  if (!pv) return null;
  const { response, contrastive, atLayer } = vectors;
  const methods = pv.methods ?? ['add', 'ablate'];
  const interventions = methods.flatMap((m) => {
    if (m === 'ablate')
      return ablationInterventions(pv.ablate ?? DEFAULT_ABLATION_SUBSPACES, {
        traits,
        finetuneDomain,
        nLayers,
        vectorsAt: (t, l) => [response, contrastive].map((b) => b.traits[traits.indexOf(t)].byLayer[l]),
        seed: pv.seed,
        world,
        post: () => post,
        itemsPerDomain: N,
        itemSeed: seed,
      });
    const { vector, layer: preventLayer } = preventativeVector({
      traits,
      finetuneDomain,
      monitorLayers: monitorVecs.map((v) => v.layer),
      nLayers,
      atLayer,
      trait: pv.trait,
    });
    return [additiveIntervention(vector, preventLayer, pv.alpha ?? 4)];
  });
  const plainDir =
    pv.plainArm &&
    opts.armDirs.find((a) => a.arm === pv.plainArm!.arm && a.trainable === pv.plainArm!.trainable)?.dir;
  const { plainArm: _plainArm, ...recipe } = pv;
  return preventativeTrials(
    () => loadModelHandle(opts.postDir),
    pv.examples,
    interventions,
    preventativeItems(world, N, seed),
    finetuneDomain,
    {
      ...recipe,
      // Where each trial's Assistant ends up in the persona space of phase 6 (the post-trained one at 1).
      axisPosition: (h) => placeAssistant(space, h, world, 'trial').axisPosition,
      ...(plainDir ? { plain: () => loadModelHandle(plainDir) } : {}),
    },
  );
}
