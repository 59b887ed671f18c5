/**
 * Shared pieces of the file-reader fuzz tests (test/fuzz-*.test.ts): byte-level mutations of a valid file as
 * fast-check arbitraries, and the contract every reader must keep on malformed input: it either reads the
 * input or throws an Error naming the source and the problem, never a TypeError/RangeError crash; and each
 * case ends within a time bound and without a large allocation (a length field is checked before it is used).
 * Every property runs with a fixed seed, so a failure reproduces.
 */
import * as fc from 'fast-check';
import { expect } from 'vitest';

/** The seed of every fuzz property: a run reproduces exactly. */
export const FUZZ_SEED = 20250623;

/** One edit of a byte string. `at` is a fraction of the length, so the arbitrary does not depend on it. */
export type ByteMutation =
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'u64'; at: number; value: bigint };

/** A uniform fraction in [0, 1) (fc.double is uniform over float encodings, which crowds near 0). */
export const fraction = fc.integer({ min: 0, max: 999_999 }).map((n) => n / 1_000_000);
const position = fraction;

/** Interesting 64-bit values for length and offset fields: small, around the file size, huge, all ones. */
const u64Value = fc.oneof(
  fc.bigInt({ min: 0n, max: 64n }),
  fc.bigInt({ min: 0n, max: 1n << 20n }),
  fc.constantFrom(10n ** 15n, 1n << 60n, (1n << 63n) - 1n, (1n << 64n) - 1n, 1n << 32n, (1n << 31n) - 1n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

const u32Value = fc.oneof(
  fc.integer({ min: 0, max: 40 }),
  fc.constantFrom(0xffffffff, 0x7fffffff, 2065946334, 1 << 16),
  fc.integer({ min: 0, max: 0xffffffff }),
);

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: position,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: position, value: u32Value }),
  fc.record({ kind: fc.constant('u64' as const), at: position, value: u64Value }),
);

/**
 * Applies mutations to a copy of `bytes`. `focus` (a byte count) makes positions fall in the first `focus`
 * bytes (a header), where most of a format's fields live.
 */
export function mutate(
  bytes: Uint8Array,
  mutations: readonly ByteMutation[],
  focus = bytes.length,
): Uint8Array {
  let b = Buffer.from(bytes);
  for (const m of mutations) {
    const span = Math.max(1, Math.min(focus, b.length));
    const at = Math.min(Math.floor(m.at * span), Math.max(0, b.length - 1));
    switch (m.kind) {
      case 'set':
        if (b.length > 0) b[at] = m.value;
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      case 'u32':
        if (at + 4 <= b.length) b.writeUInt32LE(m.value, at);
        break;
      case 'u64':
        if (at + 8 <= b.length) b.writeBigUInt64LE(m.value, at);
        break;
    }
  }
  return new Uint8Array(b);
}

/** Errors that mean the reader crashed on its input instead of judging it. */
const CRASHES = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

export interface CleanOutcomeOptions {
  /** Every error message must contain this (the file name or source label). */
  source: string;
  /** Largest time one case may take (ms). */
  maxMs?: number;
  /** Largest growth of ArrayBuffer memory one case may cause (bytes). */
  maxAllocation?: number;
  /** Names the case in failure messages. */
  label?: string;
}

/**
 * Runs one reader call on malformed input and checks the contract: a result, or an Error (not a crash) whose
 * message names the source and says something; in either case within the time and allocation bounds.
 * Returns the error, or undefined when the input was read.
 */
export function expectCleanOutcome(read: () => unknown, opts: CleanOutcomeOptions): Error | undefined {
  const maxMs = opts.maxMs ?? 2000;
  const maxAllocation = opts.maxAllocation ?? 64 << 20;
  const label = opts.label ? `${opts.label}: ` : '';
  const before = process.memoryUsage().arrayBuffers;
  const t0 = performance.now();
  let error: Error | undefined;
  try {
    read();
  } catch (e) {
    error = e as Error;
  }
  const ms = performance.now() - t0;
  const grown = process.memoryUsage().arrayBuffers - before;
  expect(ms, `${label}a case took ${ms.toFixed(0)} ms`).toBeLessThan(maxMs);
  expect(grown, `${label}a case allocated ${grown} bytes of buffers`).toBeLessThan(maxAllocation);
  if (error === undefined) return undefined;
  if (!(error instanceof Error) || CRASHES.some((C) => error instanceof C))
    throw new Error(`${label}crash instead of a clear error: ${String((error as Error)?.stack ?? error)}`);
  expect(error.message.length, `${label}an empty error message`).toBeGreaterThan(opts.source.length + 5);
  expect(error.message, `${label}the error does not name its source`).toContain(opts.source);
  return error;
}

/** fast-check parameters of every fuzz property: fixed seed, bounded runs, no shrinking past a few seconds. */
export function fuzzParams(numRuns: number): fc.Parameters<unknown> {
  return {
    seed: FUZZ_SEED,
    numRuns,
    unbiased: true,
    interruptAfterTimeLimit: 20_000,
    markInterruptAsFailure: false,
  };
}

/** Paths of the fields of a JSON-like document (a few levels deep, the first entries of each), for edits to aim at. */
export function pathsOf(
  v: unknown,
  maxDepth = 4,
  maxEntries = 12,
  prefix: (string | number)[] = [],
  out: (string | number)[][] = [],
): (string | number)[][] {
  out.push(prefix);
  if (prefix.length >= maxDepth || typeof v !== 'object' || v === null) return out;
  const entries = Array.isArray(v)
    ? v.slice(0, maxEntries).map((x, i) => [i, x] as const)
    : Object.entries(v).slice(0, maxEntries);
  for (const [k, x] of entries) pathsOf(x, maxDepth, maxEntries, [...prefix, k], out);
  return out;
}

/** Values a field of a broken or hostile document might hold. */
export const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(null, -1, 0, 1e15, 2 ** 53, 1e308, -1e308, 0.5, '', 'a b c', ['a'], ['a', 'b', 'c'], {}, [
    [],
  ]),
);

/** One structural edit: at which field (a fraction of the path list), what to do, with which value or key. */
export interface StructuralEdit {
  which: number;
  kind: 'set' | 'delete' | 'add';
  value: unknown;
  key: string;
}

export const structuralEdit: fc.Arbitrary<StructuralEdit> = fc.record({
  which: fraction,
  kind: fc.constantFrom('set' as const, 'delete' as const, 'add' as const),
  value: hostileValue,
  key: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('__proto__', 'constructor', 'toString', 'Ġ')),
});

/**
 * Applies structural edits to a deep copy of `doc`: replace a field (or the whole document), delete it, or add
 * a key (an own property, even "__proto__") or array element next to it.
 */
export function applyStructuralEdits(doc: unknown, edits: readonly StructuralEdit[]): unknown {
  const paths = pathsOf(doc);
  let out: unknown = structuredClone(doc);
  for (const e of edits) {
    const p = paths[Math.floor(e.which * paths.length)];
    if (p.length === 0) {
      if (e.kind === 'set') out = structuredClone(e.value);
      continue;
    }
    let parent: unknown = out;
    for (const k of p.slice(0, -1)) parent = (parent as Record<string | number, unknown> | null)?.[k];
    if (typeof parent !== 'object' || parent === null) continue;
    const obj = parent as Record<string | number, unknown>;
    const last = p[p.length - 1];
    if (e.kind === 'set') obj[last] = structuredClone(e.value);
    else if (e.kind === 'delete') {
      if (Array.isArray(obj)) obj.splice(Number(last), 1);
      else delete obj[last];
    } else if (Array.isArray(obj)) obj.push(structuredClone(e.value));
    else
      Object.defineProperty(obj, e.key, {
        value: structuredClone(e.value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}
