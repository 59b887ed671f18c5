/**
 * Extraction by the reference recipe (Chen et al. 2025): keep the pairs whose positive reply (under the system prompt
 * that asks for the trait) the judge scored high and whose negative reply (the same question and sample under the
 * opposite prompt) it scored low, then take, at every layer, the mean over the kept positive replies of each reply's
 * mean residual-stream activation over its tokens, minus the same over the kept negative replies.
 */
import {
  DEFAULT_HOOK_KIND,
  dot,
  layerHook,
  meanActivations,
  norm,
  type ModelHandle,
  type TokenContext,
} from '../interpret/activations.ts';
import type { PersonaVector } from '../interpret/persona-vector.ts';
import type { LocalEngine } from '../providers/local-engine.ts';
import { chatOf } from './generate.ts';
import type { ResponseRecord } from './journal.ts';
import type { InstructionPair } from './trait.ts';
import { asksFor, ensureReplies, ensureScores, scoreOf, type Study } from './work.ts';

export interface Thresholds {
  /** A positive reply is kept when its trait score is above this (the paper: 50). */
  positive: number;
  /** A negative reply is kept when its trait score is below this (the paper: 50). */
  negative: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = { positive: 50, negative: 50 };

/** One question and sample under one instruction pair: the replies under its two system prompts, and their scores. */
export interface ScoredPair {
  instruction: number;
  question: string;
  sample: number;
  positive: ResponseRecord;
  negative: ResponseRecord;
  positiveScore: number | null;
  negativeScore: number | null;
}

export interface Filtered {
  kept: ScoredPair[];
  /** Why the others were dropped (a pair counts once, under the first reason that applies, in this order). */
  dropped: { unscored: number; empty: number; positiveLow: number; negativeHigh: number };
}

/**
 * The extraction pairs, judged: every instruction pair x question x sample, its two replies generated (or read from
 * the journal) and scored for the trait.
 */
export async function scoredPairs(
  study: Study,
  pairs: readonly InstructionPair[],
  questions: readonly string[],
): Promise<ScoredPair[]> {
  const { work, samples } = study;
  // Positive and negative asks side by side: reply 2j is pair j's positive, 2j + 1 its negative.
  const sides = pairs.map((p) => ({
    positive: asksFor([p.positive], questions, samples),
    negative: asksFor([p.negative], questions, samples),
  }));
  const asks = sides.flatMap((s) => s.positive.flatMap((a, j) => [a, s.negative[j]]));
  const replies = await ensureReplies(work, study.base, 'extract', asks);
  await ensureScores(work, 'extract', replies, ['trait']);
  return asks.flatMap((a, j) => {
    if (j % 2 === 1) return [];
    const positive = replies[j];
    const negative = replies[j + 1];
    return [
      {
        instruction: Math.floor(j / (2 * questions.length * samples)),
        question: a.question,
        sample: a.sample,
        positive,
        negative,
        positiveScore: scoreOf(work, positive, 'trait'),
        negativeScore: scoreOf(work, negative, 'trait'),
      },
    ];
  });
}

/** The pairs the recipe keeps, and why the rest were dropped. */
export function filterPairs(pairs: readonly ScoredPair[], t: Thresholds = DEFAULT_THRESHOLDS): Filtered {
  const dropped = { unscored: 0, empty: 0, positiveLow: 0, negativeHigh: 0 };
  const kept: ScoredPair[] = [];
  for (const p of pairs) {
    if (p.positiveScore === null || p.negativeScore === null) dropped.unscored++;
    else if (p.positive.ids.length === 0 || p.negative.ids.length === 0) dropped.empty++;
    else if (!(p.positiveScore > t.positive)) dropped.positiveLow++;
    else if (!(p.negativeScore < t.negative)) dropped.negativeHigh++;
    else kept.push(p);
  }
  return { kept, dropped };
}

/** A reply as activations are read on it: its prompt in the model's chat format, then its own generated tokens. */
export function replyContext(engine: LocalEngine, r: ResponseRecord): TokenContext {
  return { prompt: engine.encodeChat(chatOf(r.system, r.question)), response: r.ids };
}

export interface LayerStats {
  layer: number;
  /** |vector|. */
  norm: number;
  /** Mean per-token residual norm at the layer over the kept replies (the steering unit's base). */
  residualNorm: number;
  /**
   * How far apart the kept positive and negative replies lie along the vector: the difference of their mean
   * projections over the pooled standard deviation (Cohen's d; in-sample, so an upper bound on held-out separation).
   */
  separation: number;
}

/** The per-layer mean-difference vectors of the kept pairs (hook_resid_post of every block), and per-layer stats. */
export function meanDifferenceVectors(
  handle: ModelHandle,
  engine: LocalEngine,
  kept: readonly ScoredPair[],
  trait: string,
  opts: { tokensPerBatch?: number } = {},
): { byLayer: PersonaVector[]; stats: LayerStats[] } {
  if (kept.length === 0) throw new Error('no kept pairs to extract a vector from');
  const { model } = handle;
  const dim = model.config.dim;
  const hooks = Array.from({ length: model.config.nLayers }, (_, l) => layerHook(l, DEFAULT_HOOK_KIND));
  const [pos, neg] = (['positive', 'negative'] as const).map((side) =>
    meanActivations(
      model,
      kept.map((p) => replyContext(engine, p[side])),
      hooks,
      'response',
      opts,
    ),
  );
  const n = kept.length;
  const byLayer: PersonaVector[] = [];
  const stats: LayerStats[] = [];
  hooks.forEach((hook, layer) => {
    const p = pos.data.get(hook)!;
    const g = neg.data.get(hook)!;
    const v = new Float32Array(dim);
    for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) v[j] += (p[i * dim + j] - g[i * dim + j]) / n;
    const residualNorm = (pos.tokenNorm.get(hook)! + neg.tokenNorm.get(hook)!) / 2;
    byLayer.push({
      trait,
      method: 'recipe',
      hook,
      layer,
      vector: v,
      modelHash: handle.hash,
      dim,
      residualNorm,
    });
    stats.push({ layer, norm: norm(v), residualNorm, separation: separation(p, g, n, dim, v) });
  });
  return { byLayer, stats };
}

/** Cohen's d of the two groups' projections on `v` (rows of [n, dim] matrices). */
function separation(a: Float32Array, b: Float32Array, n: number, dim: number, v: Float32Array): number {
  const len = norm(v);
  if (!(len > 0)) return NaN;
  const proj = (m: Float32Array) => Array.from({ length: n }, (_, i) => dot(v, m, i * dim) / len);
  const pa = proj(a);
  const pb = proj(b);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const ma = mean(pa);
  const mb = mean(pb);
  const ss = (xs: number[], m: number) => xs.reduce((s, x) => s + (x - m) ** 2, 0);
  const pooled = n > 1 ? Math.sqrt((ss(pa, ma) + ss(pb, mb)) / (2 * n - 2)) : NaN;
  return pooled > 0 ? (ma - mb) / pooled : NaN;
}
