/**
 * The interpretation's item seeds, in one table. Each part draws its items from the world with the run's item seed
 * (the seed number, 1 by default) plus its own offset, so that no two parts score the same items by accident and the
 * held-out sets stay apart from one another. The values are those every recorded interpretation used: changing one
 * changes the numbers of that part (and the comparison with earlier runs), so add a new offset rather than reuse one.
 */
export const ITEM_SEED_OFFSETS = {
  /** Assistant chats after good / bad / mixed earlier turns, the monitoring read-out (monitor.ts monitorItems). */
  monitoring: 20,
  /** In-context persona probes of characters, monitored beside the Assistant. */
  monitoringProbes: 30,
  /** Training-pool chats on which each trait's monitoring vector (method and layer) is chosen. */
  monitoringValidation: 40,
  /** The held-out trait battery: steering dose-response, capping's normal chats, the trials' scored items. */
  battery: 100,
  /** Battery chats on which the fine-tune shift is read (a different draw from the steering battery). */
  shift: 200,
  /** The screening pool of narrow-arm examples, drawn apart from the arms' own sets. */
  screeningPool: 300,
  /** The archetype documents persona space averages (and concept ablation's archetype directions). */
  archetypeDocuments: 400,
  /** Ordinary chats whose Assistant projections set the capping threshold on the assistant axis. */
  axisThreshold: 500,
  /** Chats whose activation change locates a fine-tune's shift (concept ablation of the shift); shares 500 with
   * axisThreshold, as recorded runs did. */
  shiftChats: 500,
  /** Assistant chats after bad earlier turns in another domain, where capping should help. */
  cappingBadContext: 600,
  /** Multi-turn chats of the Assistant's drift along the axis. */
  drift: 700,
  /** Persona chains of the archetype-posterior probe. */
  probe: 800,
  /** The bad-behaviour examples of the trait fine-tunes (one fine-tune per trait). */
  traitFinetunes: 900,
} as const;

export type ItemSeedPart = keyof typeof ITEM_SEED_OFFSETS;

/** The seed `part` draws its items with, for the interpretation's item seed `itemSeed` (default 1, as `psm run`). */
export function itemSeedOf(part: ItemSeedPart, itemSeed = 1): number {
  return ITEM_SEED_OFFSETS[part] + itemSeed;
}
