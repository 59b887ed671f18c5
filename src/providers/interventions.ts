/**
 * PSM extras of a request (steering, capping, ablation) turned into a HookSet, with every field checked
 * against the model (hook names, vector lengths, finite numbers), and the named-vector library a server
 * loads at start (JSON or safetensors).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hookOfLlamaCppLayer, readControlVector } from '../interop/control-vector.ts';
import { readSafetensorsSync } from '../io/safetensors.ts';
import {
  ablateDirectionHook,
  addVectorHook,
  capProjectionHook,
  checkHookName,
  HookSet,
  type PositionSelector,
} from '../model/hooks.ts';
import type { PsmExtras, PsmIntervention } from './types.ts';

export interface NamedVector {
  vector: Float32Array;
  /** Default hook point when a request names the vector without a hook. */
  hook?: string;
}

export type VectorLibrary = ReadonlyMap<string, NamedVector>;

/** A bad intervention field; `param` is the request path (e.g. "psm.steer[0].vector"). */
export class InterventionError extends Error {
  constructor(
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = 'InterventionError';
  }
}

export const MAX_INTERVENTIONS = 32;

/**
 * Loads named vectors. JSON: {"name": [numbers]} or {"name": {"vector": [numbers], "hook": "blocks.2.hook_resid_post"}}.
 * Safetensors: every 1-D tensor is a vector named by its tensor name (a metadata entry "hook.<name>" sets its hook).
 * A llama.cpp control vector (.gguf): direction.N is the vector "<file name>.N" at blocks.N.hook_resid_post (where
 * llama.cpp adds it), and a file with one direction also names it "<file name>"; alpha is llama.cpp's strength.
 */
export function loadVectorLibrary(file: string, dim: number): Map<string, NamedVector> {
  const out = new Map<string, NamedVector>();
  if (!fs.existsSync(file)) throw new Error(`${file}: vector file not found`);
  if (file.toLowerCase().endsWith('.gguf')) {
    const stem = path.basename(file).replace(/\.gguf$/i, '');
    const { directions } = readControlVector(file);
    for (const [layer, d] of directions) {
      const named = checkNamed(file, `direction.${layer}`, d, hookOfLlamaCppLayer(layer), dim);
      out.set(`${stem}.${layer}`, named);
      if (directions.size === 1) out.set(stem, named);
    }
    return out;
  }
  if (file.endsWith('.safetensors')) {
    const { tensors, metadata } = readSafetensorsSync(file);
    for (const [name, t] of tensors) {
      if (t.shape.length !== 1)
        throw new Error(`${file}: tensor "${name}" has shape [${t.shape}], a vector must be 1-D`);
      out.set(name, checkNamed(file, name, Float32Array.from(t.data), metadata[`hook.${name}`], dim));
    }
    return out;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new Error(`${file}: expected an object of named vectors`);
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(v))
      out.set(name, checkNamed(file, name, toF32(v, `${file}: vector "${name}"`), undefined, dim));
    else if (typeof v === 'object' && v !== null && Array.isArray((v as { vector?: unknown }).vector)) {
      const hook = (v as { hook?: unknown }).hook;
      if (hook !== undefined && typeof hook !== 'string')
        throw new Error(`${file}: vector "${name}" has a non-string hook`);
      out.set(
        name,
        checkNamed(
          file,
          name,
          toF32((v as { vector: unknown[] }).vector, `${file}: vector "${name}"`),
          hook,
          dim,
        ),
      );
    } else throw new Error(`${file}: entry "${name}" is neither a number array nor {vector, hook}`);
  }
  return out;
}

function toF32(values: unknown[], what: string): Float32Array {
  const out = new Float32Array(values.length);
  values.forEach((x, i) => {
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw new Error(`${what}: element ${i} is not a finite number`);
    out[i] = x;
  });
  return out;
}

function checkNamed(
  file: string,
  name: string,
  vector: Float32Array,
  hook: string | undefined,
  dim: number,
): NamedVector {
  if (vector.length !== dim)
    throw new Error(`${file}: vector "${name}" has length ${vector.length}, the model's dim is ${dim}`);
  for (const x of vector) if (!Number.isFinite(x)) throw new Error(`${file}: vector "${name}" contains ${x}`);
  return { vector, hook };
}

export interface ModelShape {
  dim: number;
  nLayers: number;
}

/**
 * Builds the hooks for one request. `promptLength` (tokens fed before generation, including any BOS) splits
 * 'prompt' from 'generated' positions. Returns undefined when the request asks for no intervention.
 */
export function buildInterventionHooks(
  extras: PsmExtras | undefined,
  shape: ModelShape,
  library: VectorLibrary,
  promptLength: number,
): HookSet | undefined {
  if (!extras) return undefined;
  const groups: [keyof PsmExtras, PsmIntervention[] | undefined][] = [
    ['steer', extras.steer],
    ['cap', extras.cap],
    ['ablate', extras.ablate],
  ];
  const total = groups.reduce((s, [, list]) => s + (list?.length ?? 0), 0);
  if (total === 0) return undefined;
  if (total > MAX_INTERVENTIONS)
    throw new InterventionError(
      `at most ${MAX_INTERVENTIONS} interventions per request, got ${total}`,
      'psm',
    );
  const hooks = new HookSet();
  for (const [kind, list] of groups) {
    (list ?? []).forEach((iv, i) => {
      const at = `psm.${kind}[${i}]`;
      const { vector, hook } = resolveVector(iv, shape, library, at);
      const where = positions(iv.positions ?? 'all', promptLength, at);
      if (kind === 'steer') {
        if (typeof iv.alpha !== 'number' || !Number.isFinite(iv.alpha))
          throw new InterventionError(`${at}.alpha must be a finite number`, `${at}.alpha`);
        checkSteerFits(vector, iv.alpha, at);
        const alpha = iv.alpha;
        hooks.add(
          hook,
          wrap(() => addVectorHook(vector, alpha, where), `${at}.vector`),
        );
      } else if (kind === 'cap') {
        if (iv.min === undefined && iv.max === undefined)
          throw new InterventionError(`${at} needs min and/or max`, at);
        for (const b of ['min', 'max'] as const) {
          const x = iv[b];
          if (x !== undefined && !isFloat32(x))
            throw new InterventionError(
              `${at}.${b} is ${x}; it must be a finite number within float32's range (about ±3.4e38)`,
              `${at}.${b}`,
            );
        }
        if (iv.min !== undefined && iv.max !== undefined && iv.min > iv.max)
          throw new InterventionError(`${at}: min ${iv.min} is above max ${iv.max}`, at);
        hooks.add(
          hook,
          wrap(() => capProjectionHook(vector, { min: iv.min, max: iv.max }, where), `${at}.vector`),
        );
      } else {
        hooks.add(
          hook,
          wrap(() => ablateDirectionHook(vector, where), `${at}.vector`),
        );
      }
    });
  }
  return hooks;
}

/** True when x is a finite number that stays finite as a float32 (|x| up to about 3.4e38). */
function isFloat32(x: number): boolean {
  return Number.isFinite(Math.fround(x));
}

/**
 * The added vector alpha * v is computed in float32: refuse an alpha that overflows it, naming alpha (an
 * activation of Infinity would make every later number NaN).
 */
function checkSteerFits(vector: Float32Array, alpha: number, at: string): void {
  let largest = 0;
  for (const x of vector) largest = Math.max(largest, Math.abs(x));
  if (!isFloat32(alpha * largest))
    throw new InterventionError(
      `${at}.alpha ${alpha} times the vector's largest entry ${largest} is ${alpha * largest}, beyond float32's range (about ±3.4e38)`,
      `${at}.alpha`,
    );
}

function wrap<T>(fn: () => T, param: string): T {
  try {
    return fn();
  } catch (e) {
    throw new InterventionError((e as Error).message, param);
  }
}

function resolveVector(
  iv: PsmIntervention,
  shape: ModelShape,
  library: VectorLibrary,
  at: string,
): { vector: Float32Array; hook: string } {
  let vector: Float32Array;
  let hook = iv.hook;
  if (typeof iv.vector === 'string') {
    const named = library.get(iv.vector);
    if (!named) {
      const names = [...library.keys()];
      throw new InterventionError(
        `${at}.vector: unknown vector "${iv.vector}" (${names.length ? `known: ${names.slice(0, 20).join(', ')}` : 'the server has no named vectors; start it with --vectors'})`,
        `${at}.vector`,
      );
    }
    vector = named.vector;
    hook ??= named.hook;
  } else if (Array.isArray(iv.vector)) {
    if (iv.vector.length !== shape.dim)
      throw new InterventionError(
        `${at}.vector has length ${iv.vector.length}, the model's dim is ${shape.dim}`,
        `${at}.vector`,
      );
    vector = new Float32Array(shape.dim);
    for (let j = 0; j < shape.dim; j++) {
      const x = iv.vector[j];
      if (typeof x !== 'number' || !isFloat32(x))
        throw new InterventionError(
          `${at}.vector[${j}] is ${String(x)}; each entry must be a finite number within float32's range (about ±3.4e38)`,
          `${at}.vector`,
        );
      vector[j] = x;
    }
  } else throw new InterventionError(`${at}.vector must be a number array or a vector name`, `${at}.vector`);
  if (hook === undefined)
    throw new InterventionError(`${at}.hook is required (e.g. "blocks.0.hook_resid_post")`, `${at}.hook`);
  try {
    checkHookName(hook, shape.nLayers);
  } catch (e) {
    throw new InterventionError(`${at}.hook: ${(e as Error).message}`, `${at}.hook`);
  }
  return { vector, hook };
}

function positions(which: string, promptLength: number, at: string): PositionSelector {
  if (which === 'all') return 'all';
  if (which === 'prompt') return (_b, pos) => pos < promptLength;
  if (which === 'generated') return (_b, pos) => pos >= promptLength;
  throw new InterventionError(`${at}.positions must be "all", "prompt" or "generated"`, `${at}.positions`);
}
