/**
 * Phase 4: fine-tune shift prediction across the arms, post-trained vectors on every model (and, optionally, one
 * bad-behaviour fine-tune per trait).
 */
import { batteryItems, narrowSet } from '../../world/index.ts';
import { loadModelHandle, type ModelHandle } from '../activations.ts';
import { itemSeedOf } from '../item-seeds.ts';
import { fineTune, modelState, shiftPrediction } from '../shift.ts';
import { byDomain } from '../steer.ts';
import type { InterpretSummary } from '../types.ts';
import type { InterpretContext } from './context.ts';
import type { MonitoringPhase } from './monitoring.ts';

export interface ShiftPhase {
  shift: InterpretSummary['shift'];
  /** Each arm's model hash, in the arms' order. */
  armHashes: InterpretSummary['models']['arms'];
  /** Each arm's model, labelled arm/trainable: persona space places their Assistants. */
  placements: { label: string; handle: ModelHandle }[];
}

/**
 * The shift is a projection of the last prompt token, the monitoring readout, so it is read at each trait's validated
 * monitoring layer; on half the items per domain (a quarter gave expression shifts of +-0.005 that item noise swamped
 * on floor traits).
 */
export function shiftPhase(ctx: InterpretContext, { monitorVecs }: MonitoringPhase): ShiftPhase {
  const { opts, post, world, itemsPerDomain: N, itemSeed: seed, traits, finetuneDomain } = ctx;
  const shiftItems = byDomain(
    batteryItems(world, {
      seed: itemSeedOf('shift', seed),
      batteryPerDomain: Math.max(4, Math.round(N / 2)),
      batteryFormats: ['chat'],
    }),
  );
  const before = modelState(post, shiftItems, monitorVecs);
  const armHashes: ShiftPhase['armHashes'] = [];
  const placements: ShiftPhase['placements'] = [];
  const afters = opts.armDirs.map((a) => {
    const h = loadModelHandle(a.dir);
    armHashes.push({ arm: a.arm, trainable: a.trainable, hash: h.hash });
    placements.push({ label: `${a.arm}/${a.trainable}`, handle: h });
    return { label: `${a.arm}/${a.trainable}`, state: modelState(h, shiftItems, monitorVecs) };
  });
  const armsShift = shiftPrediction(before, afters, finetuneDomain ? [finetuneDomain] : []);
  let withTraitFinetunes: InterpretSummary['shift']['withTraitFinetunes'] = null;
  if (opts.traitFinetunes) {
    const tf = opts.traitFinetunes;
    const traitModels = traits.map((t, i) => {
      const examples = narrowSet(world, 'cheat', {
        seed: itemSeedOf('traitFinetunes', seed),
        count: tf.examples,
        domain: t,
      });
      const { handle } = fineTune(loadModelHandle(opts.postDir), examples, { ...tf, seed: seed + i });
      return { label: `trait-ft/${t}`, state: modelState(handle, shiftItems, monitorVecs) };
    });
    const { points, r, perTrait, perTraitLogOdds } = shiftPrediction(before, [...afters, ...traitModels]);
    withTraitFinetunes = { points, r, perTrait, perTraitLogOdds };
  }
  return { shift: { ...armsShift, withTraitFinetunes }, armHashes, placements };
}
