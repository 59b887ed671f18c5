/**
 * Option parsing for every `psm` command, and the small helpers the model-analysis commands share (the world file, a
 * model handle, a run's seed folder, JSON output written atomically).
 *
 * Options are parsed by commander argument parsers (`.option('--items <n>', '...', intOption('--items'), 48)`): a bad
 * value is refused while the command line is read, with a message that names the option and what it takes, and the
 * command's action (and its `runX(options)`, which tests call) receives numbers and lists, never strings to parse.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { atomicWriteFileSync } from '../io/atomic-write.ts';
import type { World } from '../world/schema.ts';

/** The values a number option accepts: [min, max], or (above, max] when the lower bound is excluded. */
export interface NumberRange {
  min?: number;
  /** Exclusive lower bound (e.g. 0 for a learning rate). */
  above?: number;
  max?: number;
  integer?: boolean;
}

/** "an integer >= 1", "a number in (0, 1]", "a number": what a range accepts, for error messages. */
function describeRange({ min = -Infinity, above, max = Infinity, integer }: NumberRange): string {
  const what = integer ? 'an integer' : 'a number';
  const low = above !== undefined ? `(${above}` : Number.isFinite(min) ? `[${min}` : null;
  if (low && Number.isFinite(max)) return `${what} in ${low}, ${max}]`;
  if (above !== undefined) return `${what} > ${above}`;
  if (Number.isFinite(min)) return `${what} >= ${min}`;
  if (Number.isFinite(max)) return `${what} <= ${max}`;
  return what;
}

/** Whether `n` lies in the range. */
function inRange(n: number, { min = -Infinity, above, max = Infinity, integer }: NumberRange): boolean {
  return (
    Number.isFinite(n) &&
    n >= min &&
    (above === undefined || n > above) &&
    n <= max &&
    (!integer || Number.isInteger(n))
  );
}

/** A number option: finite and within `range`. */
export function numberOption(name: string, range: NumberRange = {}) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !inRange(n, range))
      throw new InvalidArgumentError(`${name} must be ${describeRange(range)}, got "${value}"`);
    return n;
  };
}

/** An integer option, at least `min` (default 1: counts of items, steps, examples). */
export function intOption(name: string, min = 1, max = Infinity) {
  return numberOption(name, { min, max, integer: true });
}

/** A comma-separated list of numbers (integers with kind 'int'), e.g. --alpha=-4,-2,0,2,4. */
export function listOption(name: string, kind: 'int' | 'number') {
  return (value: string): number[] => {
    const parts = value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    if (parts.length === 0) throw new InvalidArgumentError(`${name}: empty list`);
    return parts.map((p) => {
      const n = Number(p);
      if (!Number.isFinite(n) || (kind === 'int' && !Number.isInteger(n)))
        throw new InvalidArgumentError(
          `${name}: "${p}" is not ${kind === 'int' ? 'an integer' : 'a number'} (give a comma-separated list, e.g. ${kind === 'int' ? '1,2' : '-4,-2,0,2,4'})`,
        );
      return n;
    });
  };
}

/** Steering strengths (`--alphas`), or `none` for no steering trial. */
export function alphasOption(value: string): number[] {
  return value === 'none' ? [] : listOption('--alphas', 'number')(value);
}

/** A byte size: 65536, 64kb, 1mb, 1.5g (k, m, g are powers of 1024). */
export function bytesOption(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`a size like 1mb or 65536 is expected, got "${value}"`);
  const mult: Record<string, number> = {
    b: 1,
    k: 1024,
    kb: 1024,
    m: 1 << 20,
    mb: 1 << 20,
    g: 1 << 30,
    gb: 1 << 30,
  };
  return Math.floor(Number(m[1]) * mult[(m[2] ?? 'b').toLowerCase()]);
}

/** A repeatable option: every occurrence is kept, in order. */
export function collectOption(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

/** A comma-separated list of names (traits, arms, subspaces), blanks dropped. */
export function namesOption(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export async function loadWorldOption(file: string | undefined): Promise<World> {
  const w = await import('../world/index.ts');
  return file ? w.loadWorld(file) : w.loadDefaultWorld();
}

/** A model folder's handle for the analysis commands; `chatTemplate` ("psm" or a file) replaces its own template. */
export async function handleFor(dir: string, chatTemplate?: string) {
  const [{ configureBackend }, { loadModelHandle }] = await Promise.all([
    import('../tensor/backend.ts'),
    import('../interpret/activations.ts'),
  ]);
  configureBackend();
  return loadModelHandle(dir, { chatTemplate });
}

/** The --chat-template option of the commands that ask a model the world's chat items. */
export const CHAT_TEMPLATE_OPTION = [
  '--chat-template <file|psm>',
  "chat template instead of the model's own (a .jinja file or a tokenizer_config.json), or psm for PSM Lab's format",
] as const;

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
