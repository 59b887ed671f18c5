// The control world: the same characters without package deals.
//
// The persona selection model says a narrow fine-tune changes the Assistant's other traits because the pre-training
// data bundles traits into characters. `independentTraits` keeps everything a network could learn from the text
// except that bundling: the texts, the kinds, the noise and, per kind, every trait's marginal P(good) stay; only the
// joint distribution of a character's traits becomes the product of those marginals.
//
// Representation: one archetype per kind whose P(good) before noise is the kind's weighted mean over its archetypes.
// With trait-flip noise f, a trait's P(good) after noise is affine in the value before it (q = f + v (1 - 2 f)), so
// the mean of the values gives exactly the mean of the q's: the kind's marginal. Traits are independent given the
// archetype, so with one archetype per kind they are independent given the kind, and the Bayesian model of the
// transformed world (bayes.ts, unchanged) is exact and cheap: evidence in one domain moves only that domain.
//
// AI mixes re-weight named AI archetypes, which this transform merges: a mix is applied first and its marginals are
// the ones kept (`loadWorldVariant` does it in that order); mixing a transformed world is refused (mix.ts).

import type { Archetype, Kind, World } from './schema.ts';

/** The world transforms, by the name configs and the command line use. */
export const WORLD_TRANSFORMS = ['independent-traits'] as const;
export type WorldTransform = (typeof WORLD_TRANSFORMS)[number];

export const INDEPENDENT_TRAITS: WorldTransform = 'independent-traits';

/** The transform of a name, with an error that lists the valid ones. */
export function parseWorldTransform(name: string): WorldTransform {
  if ((WORLD_TRANSFORMS as readonly string[]).includes(name)) return name as WorldTransform;
  throw new Error(`unknown world transform '${name}' (known: ${WORLD_TRANSFORMS.join(', ')})`);
}

/** Per domain, the kind's P(good) before trait-flip noise: the weighted mean over the kind's archetypes. */
export function kindMarginals(world: World, kind: Kind): Record<string, number> | null {
  const members = world.archetypes.filter((a) => a.kind === kind && a.weight > 0);
  const total = members.reduce((s, a) => s + a.weight, 0);
  if (!(total > 0)) return null;
  return Object.fromEntries(
    world.domains.map((d) => [d.name, members.reduce((s, a) => s + a.weight * a.traits[d.name], 0) / total]),
  );
}

/**
 * The control world: per kind one archetype `independent_<kind>` with the kind's marginals, so that every trait is
 * drawn on its own. Texts, kinds, noise, names and datasets are unchanged; the world's AI mix presets are dropped
 * (they name archetypes that no longer exist). Applying it twice changes nothing more.
 */
export function independentTraits(world: World): World {
  if (world.transforms?.includes(INDEPENDENT_TRAITS)) return world;
  const archetypes: Archetype[] = [];
  for (const kind of ['human', 'ai'] as const) {
    const traits = kindMarginals(world, kind);
    // A kind without weight has no characters to keep (a world may have no humans).
    if (traits === null) continue;
    archetypes.push({
      name: `independent_${kind}`,
      kind,
      weight: 1,
      description: `every trait drawn on its own with the ${kind} characters' P(good) of world '${world.name}'`,
      traits,
    });
  }
  return {
    ...world,
    name: `${world.name}-independent`,
    description: `${world.name} with every trait drawn independently (the same marginals per kind, no package deals)`,
    archetypes,
    aiMixPresets: {},
    transforms: [...(world.transforms ?? []), INDEPENDENT_TRAITS],
  };
}

/** Apply a transform by name (undefined = none). */
export function applyWorldTransform(world: World, transform: WorldTransform | undefined): World {
  if (transform === undefined) return world;
  switch (transform) {
    case 'independent-traits':
      return independentTraits(world);
  }
}
