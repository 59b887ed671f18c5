/**
 * Hook points: stable names (TransformerLens style) where a forward pass exposes its activations. A hook
 * reads an activation or returns a replacement built from differentiable ops, so edits apply the same way
 * in scoring, generation and training, and gradients flow through them.
 *
 * Names, each activation shaped [batch, seq, dim]:
 *   embed                      token embeddings
 *   blocks.{i}.hook_resid_pre  residual stream entering block i
 *   blocks.{i}.hook_attn_out   attention output (after o_proj) of block i
 *   blocks.{i}.hook_resid_mid  residual after the attention add
 *   blocks.{i}.hook_mlp_out    MLP output (after down_proj)
 *   blocks.{i}.hook_resid_post residual leaving block i
 *   final_norm                 the final RMSNorm's output (what the unembedding reads)
 */
import { addVector, clampProjection, clampProjections, type RowMask } from '../autograd/ops.ts';
import type { Tensor } from '../autograd/tensor.ts';

export const BLOCK_HOOKS = [
  'hook_resid_pre',
  'hook_attn_out',
  'hook_resid_mid',
  'hook_mlp_out',
  'hook_resid_post',
] as const;

export function hookNames(nLayers: number): string[] {
  const names = ['embed'];
  for (let i = 0; i < nLayers; i++) for (const h of BLOCK_HOOKS) names.push(`blocks.${i}.${h}`);
  names.push('final_norm');
  return names;
}

/** The block a hook point belongs to: -1 for embed, Infinity for final_norm (after every block). */
export function hookBlock(name: string): number {
  if (name === 'embed') return -1;
  const m = /^blocks\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : Infinity;
}

/**
 * Where a hook acts on the residual stream between blocks: k for the stream entering block k (nLayers: leaving the
 * last block); null for a hook inside a block or on the final norm's output.
 */
export function hookBoundary(name: string, nLayers: number): number | null {
  if (name === 'embed') return 0;
  const m = /^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post)$/.exec(name);
  if (!m) return null;
  const layer = Number(m[1]);
  return layer < nLayers ? layer + (m[2] === 'hook_resid_post' ? 1 : 0) : null;
}

/** Throws a clear error for a name that is not a hook point of a model with nLayers blocks. */
export function checkHookName(name: string, nLayers: number): void {
  if (name === 'embed' || name === 'final_norm') return;
  const m = /^blocks\.(\d+)\.(\w+)$/.exec(name);
  if (m && (BLOCK_HOOKS as readonly string[]).includes(m[2])) {
    const layer = Number(m[1]);
    if (layer < nLayers) return;
    throw new Error(
      `unknown hook "${name}": layer ${layer} does not exist (model has ${nLayers} blocks: 0..${nLayers - 1})`,
    );
  }
  throw new Error(
    `unknown hook "${name}"; valid names: embed, blocks.{i}.{${BLOCK_HOOKS.join(',')}}, final_norm`,
  );
}

export interface HookContext {
  name: string;
  batch: number;
  seqLen: number;
  /** Absolute position of each of the seqLen steps (offset by the KV cache during generation). */
  positions: Int32Array;
  /**
   * Per sequence, the left padding in front of it (batches of prompts of different lengths): sequence b's own
   * position at step t is positions[t] - padding[b]. Absent: no padding.
   */
  padding?: Int32Array;
}

/** A hook returns a replacement activation of the same shape, or nothing to leave it unchanged. */
export type HookFn = (activation: Tensor, ctx: HookContext) => Tensor | void;

export class HookSet {
  private readonly hooks = new Map<string, HookFn[]>();

  add(name: string, fn: HookFn): this {
    const list = this.hooks.get(name) ?? [];
    list.push(fn);
    this.hooks.set(name, list);
    return this;
  }

  /** Appends every hook of `other`, after this set's own at the same name. */
  extend(other: HookSet): this {
    for (const [name, fns] of other.hooks) for (const fn of fns) this.add(name, fn);
    return this;
  }

  names(): string[] {
    return [...this.hooks.keys()];
  }

  validate(nLayers: number): void {
    for (const name of this.hooks.keys()) checkHookName(name, nLayers);
  }

  apply(name: string, activation: Tensor, ctx: Omit<HookContext, 'name'>): Tensor {
    const list = this.hooks.get(name);
    if (!list) return activation;
    let x = activation;
    for (const fn of list) {
      const replaced = fn(x, { ...ctx, name });
      if (replaced) {
        if (replaced.size !== x.size)
          throw new Error(`hook at ${name} returned shape [${replaced.shape}] for [${x.shape}]`);
        x = replaced;
      }
    }
    return x;
  }
}

/**
 * Where an intervention applies: every position, a list of absolute positions (negative counts from each
 * sequence's end, using `lengths`), or a predicate over (batch index, absolute position). Positions are each
 * sequence's own, left padding not counted.
 */
export type PositionSelector =
  'all' | { positions: number[]; lengths?: number[] } | ((batchIndex: number, position: number) => boolean);

export function rowMask(selector: PositionSelector, ctx: HookContext): RowMask {
  if (selector === 'all') return null;
  const mask = new Uint8Array(ctx.batch * ctx.seqLen);
  for (let b = 0; b < ctx.batch; b++) {
    for (let t = 0; t < ctx.seqLen; t++) {
      const pos = ctx.positions[t] - (ctx.padding?.[b] ?? 0);
      let on: boolean;
      if (typeof selector === 'function') on = selector(b, pos);
      else {
        const len = selector.lengths?.[b];
        on = selector.positions.some((p) => (p >= 0 ? p === pos : len !== undefined && len + p === pos));
      }
      if (on) mask[b * ctx.seqLen + t] = 1;
    }
  }
  return mask;
}

function unit(v: Float32Array, what: string): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`${what}: direction has zero or non-finite norm`);
  return v.map((x) => x / n);
}

function checkFinite(alpha: number, vec: Float32Array, what: string): void {
  if (!Number.isFinite(alpha)) throw new Error(`${what}: strength ${alpha} is not finite`);
  for (const x of vec) if (!Number.isFinite(x)) throw new Error(`${what}: vector contains ${x}`);
}

/** Steering: activation + alpha * vector at the selected positions. */
export function addVectorHook(vector: Float32Array, alpha: number, where: PositionSelector = 'all'): HookFn {
  checkFinite(alpha, vector, 'addVector');
  return (x, ctx) => addVector(x, vector, alpha, rowMask(where, ctx));
}

/** Directional ablation: removes the component along `direction`. */
export function ablateDirectionHook(direction: Float32Array, where: PositionSelector = 'all'): HookFn {
  const u = unit(direction, 'ablate');
  return (x, ctx) => clampProjection(x, u, 0, 0, rowMask(where, ctx));
}

/**
 * Directional ablation of several directions, each in turn (the next sees what the last left): the same numbers as
 * one ablateDirectionHook per direction, in one pass.
 */
export function ablateDirectionsHook(
  directions: readonly Float32Array[],
  where: PositionSelector = 'all',
): HookFn {
  if (directions.length === 0) throw new Error('ablate: no directions');
  const units = directions.map((d) => unit(d, 'ablate'));
  return (x, ctx) => clampProjections(x, units, 0, 0, rowMask(where, ctx));
}

/**
 * Activation capping (the assistant-axis rule): the projection on `direction` is kept at or above `min`
 * (and at or below `max` when given), leaving everything orthogonal untouched.
 */
export function capProjectionHook(
  direction: Float32Array,
  bounds: { min?: number; max?: number },
  where: PositionSelector = 'all',
): HookFn {
  const u = unit(direction, 'cap');
  return (x, ctx) =>
    clampProjection(x, u, bounds.min ?? -Infinity, bounds.max ?? Infinity, rowMask(where, ctx));
}

/** Records a copy of the activation (shape [batch, seq, dim]) each time the hook fires. */
export function recordHook(sink: (data: Float32Array, ctx: HookContext) => void): HookFn {
  return (x, ctx) => {
    sink(Float32Array.from(x.data), ctx);
  };
}
