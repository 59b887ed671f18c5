/**
 * The same-numbers check: every number two runs' seed results hold in common, compared field by field, largest
 * difference first. An engine change that leaves the arithmetic alone should give differences of zero; one that
 * reorders float32 sums gives small ones, and this shows how small and where. Timings (any field named `seconds`
 * or under one) differ between any two runs and are reported apart.
 */
import type { RunResults, SeedResult } from './results.ts';

export interface NumberDifference {
  /** Where the number sits in the seed's results, e.g. `interpret.steering[5].maxRiseZ`. */
  path: string;
  a: number;
  b: number;
  /** |a - b|. */
  diff: number;
}

export interface SeedDifferences {
  seed: number;
  variant: string;
  /** Numbers present in both seeds (timings excluded). */
  compared: number;
  /** Those that differ, largest first. */
  differing: NumberDifference[];
  /** Numbers present in one seed only (a field added or dropped between versions). */
  onlyInOne: number;
  /** The timings, which every two runs differ on. */
  timings: NumberDifference[];
}

function isTiming(path: string): boolean {
  return /(^|\.)seconds(\.|\[|$)/.test(path);
}

/** Walks two JSON values side by side, calling `pair` for every number both hold at the same path. */
function walkNumbers(
  a: unknown,
  b: unknown,
  path: string,
  pair: (path: string, a: number, b: number) => void,
  lone: () => void,
): void {
  if (typeof a === 'number' && typeof b === 'number') {
    pair(path, a, b);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (i >= a.length || i >= b.length) lone();
      else walkNumbers(a[i], b[i], `${path}[${i}]`, pair, lone);
    }
    return;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    for (const key of new Set([...Object.keys(ao), ...Object.keys(bo)])) {
      if (!(key in ao) || !(key in bo)) lone();
      else walkNumbers(ao[key], bo[key], path ? `${path}.${key}` : key, pair, lone);
    }
    return;
  }
  if (typeof a !== typeof b) lone();
}

/** Field-by-field differences between two results of one seed. NaN equals NaN (a value not measured in both). */
export function seedDifferences(a: SeedResult, b: SeedResult): SeedDifferences {
  const differing: NumberDifference[] = [];
  const timings: NumberDifference[] = [];
  let compared = 0;
  let onlyInOne = 0;
  walkNumbers(
    a,
    b,
    '',
    (path, x, y) => {
      const d = { path, a: x, b: y, diff: Math.abs(x - y) };
      if (isTiming(path)) {
        timings.push(d);
        return;
      }
      compared++;
      if (x === y || (Number.isNaN(x) && Number.isNaN(y))) return;
      differing.push(Number.isNaN(d.diff) ? { ...d, diff: Infinity } : d);
    },
    () => onlyInOne++,
  );
  differing.sort((p, q) => q.diff - p.diff || (p.path < q.path ? -1 : 1));
  return { seed: a.seed, variant: a.variant, compared, differing, onlyInOne, timings };
}

/** Per seed both runs hold (same seed and variant), their differences; throws when they share none. */
export function resultsDifferences(
  a: RunResults,
  b: RunResults,
  seeds?: readonly number[],
): SeedDifferences[] {
  const key = (s: SeedResult) => `${s.variant}/${s.seed}`;
  const inB = new Map(b.seeds.map((s) => [key(s), s]));
  const shared = a.seeds.filter((s) => inB.has(key(s)) && (!seeds || seeds.includes(s.seed)));
  if (shared.length === 0) {
    const list = (r: RunResults) => r.seeds.map(key).join(', ') || 'none';
    throw new Error(
      `the two runs share no seed${seeds ? ` among ${seeds.join(', ')}` : ''} (first: ${list(a)}; second: ${list(b)})`,
    );
  }
  return shared.map((s) => seedDifferences(s, inB.get(key(s))!));
}

function num(x: number): string {
  return String(Number(x.toPrecision(8)));
}

/** A plain-text report: per seed, how many numbers agree, the largest differences, the timings side by side. */
export function formatDifferences(diffs: readonly SeedDifferences[], top: number): string {
  const out: string[] = [];
  for (const d of diffs) {
    const same = d.compared - d.differing.length;
    out.push(
      `seed ${d.seed} (${d.variant}): ${d.compared} numbers in both, ${same} identical, ${d.differing.length} differ` +
        (d.differing.length ? `; largest difference ${d.differing[0].diff.toExponential(2)}` : '') +
        (d.onlyInOne ? `; ${d.onlyInOne} field(s) in one run only` : ''),
    );
    for (const x of d.differing.slice(0, top))
      out.push(`  ${x.diff.toExponential(2).padStart(9)}  ${x.path}: ${num(x.a)} vs ${num(x.b)}`);
    if (d.differing.length > top) out.push(`  ... ${d.differing.length - top} more`);
    const stageTimes = d.timings;
    if (stageTimes.length) {
      out.push('  timings (seconds):');
      for (const t of stageTimes) out.push(`    ${t.path}: ${t.a.toFixed(1)} vs ${t.b.toFixed(1)}`);
    }
  }
  return out.join('\n');
}
