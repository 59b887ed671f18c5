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
