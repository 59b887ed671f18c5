/**
 * Option parsing and small helpers the model-analysis commands share: lists, integers, trait names, the world file,
 * a model handle, and JSON output written atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFileSync } from '../io/atomic-write.ts';
import type { World } from '../world/schema.ts';

export function parseList(
  name: string,
  value: string | undefined,
  kind: 'int' | 'number',
): number[] | undefined {
  if (value === undefined) return undefined;
  const parts = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (parts.length === 0) throw new Error(`${name}: empty list`);
  return parts.map((p) => {
    const n = Number(p);
    if (!Number.isFinite(n) || (kind === 'int' && !Number.isInteger(n)))
      throw new Error(
        `${name}: "${p}" is not ${kind === 'int' ? 'an integer' : 'a number'} (give a comma-separated list, e.g. ${kind === 'int' ? '1,2' : '-4,-2,0,2,4'})`,
      );
    return n;
  });
}

export function parseInt1(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name} must be an integer >= ${min}, got "${value}"`);
  return n;
}

export function parseTraits(value: string | undefined): string[] | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

export async function loadWorldOption(file: string | undefined): Promise<World> {
  const w = await import('../world/index.ts');
  return file ? w.loadWorld(file) : w.loadDefaultWorld();
}

export async function handleFor(dir: string) {
  const [{ configureBackend }, { loadModelHandle }] = await Promise.all([
    import('../tensor/backend.ts'),
    import('../interpret/activations.ts'),
  ]);
  configureBackend();
  return loadModelHandle(dir);
}

export const f = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

export function writeJson(file: string | undefined, value: unknown): void {
  if (!file) return;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  atomicWriteFileSync(
    file,
    JSON.stringify(value, (_k, v) => (v instanceof Float32Array ? Array.from(v) : v), 2) + '\n',
  );
  process.stderr.write(`wrote ${file}\n`);
}

/** The N of a seed folder `<run>/<variant>-seed<N>`, or undefined when its name does not end in seed<N>. */
export function seedOfFolder(seedDir: string): number | undefined {
  const n = /seed(\d+)$/.exec(path.basename(path.resolve(seedDir)))?.[1];
  return n === undefined ? undefined : Number(n);
}

/**
 * For a seed folder inside a run folder, the run's config (`<run>/config.yaml`, null outside a run) and the world:
 * `worldFile` when given, else the run's, else the built-in one. Commands that redo a run's work read both.
 */
export async function runOfSeedFolder(seedDir: string, worldFile: string | undefined) {
  const runConfigFile = path.join(path.dirname(path.resolve(seedDir)), 'config.yaml');
  const [{ resolveConfig }, { loadExperimentWorld }] = await Promise.all([
    import('../pipeline/config.ts'),
    import('../pipeline/experiment.ts'),
  ]);
  const runConfig = fs.existsSync(runConfigFile) ? resolveConfig({ file: runConfigFile }) : null;
  const world =
    runConfig && worldFile === undefined ? loadExperimentWorld(runConfig) : await loadWorldOption(worldFile);
  return { runConfig, world };
}

/** Refuses both or neither of the two ways to give a command its chats. */
export function checkChatSource(o: { data?: string; arm?: string }): void {
  if ((o.data === undefined) === (o.arm === undefined))
    throw new Error('give the chats with exactly one of --data <file> and --arm <name>');
}

/** The world's narrow set `arm` (`--arm`), after checking the name. */
export async function narrowArmChats(world: World, arm: string, opts: { seed?: number; count: number }) {
  const { NARROW_ARMS, narrowSet } = await import('../world/index.ts');
  if (!(NARROW_ARMS as readonly string[]).includes(arm))
    throw new Error(`--arm: unknown narrow set "${arm}" (${NARROW_ARMS.join(', ')})`);
  return narrowSet(world, arm as (typeof NARROW_ARMS)[number], opts);
}
