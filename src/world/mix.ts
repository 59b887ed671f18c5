// The AI-mix knob: re-weight the AI archetypes of a world without touching anything else.
//
// This is the lever of the "alignment pre-training" experiment (more positive AI role models, or more sci-fi
// villains, in the pre-training text). Only the relative weights of AI archetypes change: the share of AI documents,
// the human archetypes, the noise and the texts stay the same. Because the Bayesian model reads the same World,
// applying a mix also changes the ideal Assistant prior consistently with the corpus.

import type { World } from './schema.ts';

/** Either a preset name ('positive', 'villains', or one the world defines) or multipliers per AI archetype. */
export type AiMix = string | Readonly<Record<string, number>>;

/**
 * Presets every world has unless it defines its own with the same name: 'positive' multiplies by 4 the AI
 * archetypes whose mean P(good trait) is at least 0.75; 'villains' those at most 0.25; 'none' changes nothing.
 */
export function builtinAiMixPresets(world: World): Record<string, Record<string, number>> {
  const ai = world.archetypes.filter((a) => a.kind === 'ai');
  const meanGood = (a: (typeof ai)[number]) =>
    Object.values(a.traits).reduce((s, v) => s + v, 0) / Object.values(a.traits).length;
  const pick = (test: (m: number) => boolean) =>
    Object.fromEntries(ai.filter((a) => test(meanGood(a))).map((a) => [a.name, 4]));
  return { positive: pick((m) => m >= 0.75), villains: pick((m) => m <= 0.25), none: {} };
}

/** The multipliers a mix stands for, validated against the world. */
export function resolveAiMix(world: World, mix: AiMix): Record<string, number> {
  // A transform may merge the AI archetypes a mix names (its presets would then silently select nothing).
  const noMix = mix === 'none' || (typeof mix === 'object' && Object.keys(mix).length === 0);
  if (world.transforms?.length && !noMix)
    throw new Error(
      `AI mix: world '${world.name}' is transformed (${world.transforms.join(', ')}); apply the AI mix before the transform`,
    );
  let multipliers: Record<string, number>;
  if (typeof mix === 'string') {
    const presets = { ...builtinAiMixPresets(world), ...world.aiMixPresets };
    const preset = presets[mix];
    if (!preset)
      throw new Error(`unknown AI mix preset '${mix}' (known: ${Object.keys(presets).join(', ')})`);
    multipliers = { ...preset };
  } else {
    multipliers = { ...mix };
  }
  for (const [name, m] of Object.entries(multipliers)) {
    const a = world.archetypes.find((x) => x.name === name);
    if (!a) throw new Error(`AI mix: unknown archetype '${name}' (AI archetypes: ${aiNames(world)})`);
    if (a.kind !== 'ai')
      throw new Error(
        `AI mix: '${name}' is a ${a.kind} archetype; only AI archetypes can be re-weighted (${aiNames(world)})`,
      );
    if (!Number.isFinite(m) || m < 0)
      throw new Error(`AI mix: multiplier for '${name}' must be a finite number >= 0, got ${m}`);
  }
  const total = world.archetypes
    .filter((a) => a.kind === 'ai')
    .reduce((s, a) => s + a.weight * (multipliers[a.name] ?? 1), 0);
  if (!(total > 0)) throw new Error('AI mix: the multipliers leave no AI archetype with positive weight');
  return multipliers;
}

/** A copy of the world with AI archetype weights multiplied. Everything else is shared unchanged. */
export function applyAiMix(world: World, mix: AiMix | undefined): World {
  if (mix === undefined) return world;
  const m = resolveAiMix(world, mix);
  if (Object.keys(m).length === 0) return world;
  return {
    ...world,
    archetypes: world.archetypes.map((a) => (a.name in m ? { ...a, weight: a.weight * m[a.name] } : a)),
  };
}

/** Parse a command-line mix: a preset name, `name=3,other=0.5`, or a JSON object. */
export function parseAiMix(spec: string): AiMix {
  const s = spec.trim();
  if (s.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(s);
    } catch {
      throw new Error(`--ai-mix: invalid JSON: ${s}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      throw new Error('--ai-mix: JSON must be an object of multipliers');
    for (const [k, v] of Object.entries(obj))
      if (typeof v !== 'number') throw new Error(`--ai-mix: multiplier for '${k}' must be a number`);
    return obj as Record<string, number>;
  }
  if (!s.includes('=')) return s;
  const out: Record<string, number> = {};
  for (const part of s.split(',')) {
    const [k, v, extra] = part.split('=').map((x) => x.trim());
    const n = Number(v);
    if (!k || v === undefined || extra !== undefined || v === '' || !Number.isFinite(n)) {
      throw new Error(`--ai-mix: expected name=number pairs separated by commas, got '${part}'`);
    }
    out[k] = n;
  }
  return out;
}

function aiNames(world: World): string {
  return world.archetypes
    .filter((a) => a.kind === 'ai')
    .map((a) => a.name)
    .join(', ');
}
