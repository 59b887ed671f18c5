// A world as an experiment uses it: a world file (or the name of a built-in one), an AI mix, then a transform.
//
// The order matters and is fixed here: a mix re-weights named AI archetypes, and a transform such as
// independent-traits merges them, keeping the marginals of the (mixed) world it is given.

import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadWorld, type World } from './schema.ts';
import { applyAiMix, type AiMix } from './mix.ts';
import { applyWorldTransform, type WorldTransform } from './independent.ts';

/** The folder of the worlds shipped with the package, found from this module (any working directory). */
export function builtinWorldsDir(): string {
  return fileURLToPath(new URL('../../worlds/', import.meta.url));
}

/** Names of the built-in worlds (`worlds/<name>.yaml`). */
export function builtinWorldNames(): string[] {
  return readdirSync(builtinWorldsDir())
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/**
 * The file of a world given as a built-in name (`default`, ...) or a path. A bare name that is neither a built-in
 * world nor an existing file is an error listing the built-in names.
 */
export function resolveWorldFile(spec: string): string {
  const builtin = join(builtinWorldsDir(), `${spec}.yaml`);
  if (/^[a-z][a-z0-9_-]*$/.test(spec) && existsSync(builtin)) return builtin;
  if (!existsSync(spec) && !/[/\\.]/.test(spec))
    throw new Error(
      `unknown world '${spec}': not a file, and not a built-in world (${builtinWorldNames().join(', ')})`,
    );
  return spec;
}

export interface WorldVariant {
  /** A built-in world's name or a world file. */
  world: string;
  /** Re-weights AI archetypes (mix.ts); absent = as the file says. */
  aiMix?: AiMix;
  /** Applied after the mix (independent.ts); absent = none. */
  transform?: WorldTransform;
}

/** Load a world, apply its AI mix, then its transform. */
export function loadWorldVariant(v: WorldVariant): World {
  return applyWorldTransform(applyAiMix(loadWorld(resolveWorldFile(v.world)), v.aiMix), v.transform);
}
