/**
 * Monitoring by the recipe (Chen et al. 2025): does the vector read, before the model answers, how strongly the reply
 * will express the trait? Under every system prompt (the default one or none, each pair's two ends, any extra ones) the model answers the
 * held-out questions; the last prompt token's projection on the unit vector at each layer is set against the judged
 * trait score of the reply, over replies and over the system prompts' means.
 */
import { activationsAt, unitVector } from '../interpret/activations.ts';
import type { PersonaVector } from '../interpret/persona-vector.ts';
import { pearson } from '../measurement/stats.ts';
import { chatOf } from './generate.ts';
import type { MonitorPrompt, PromptKind } from './report.ts';
import { asksFor, ensureReplies, ensureScores, scoreOf, type Study } from './work.ts';

export interface MonitorResult {
  /** Per prompt: its replies' mean score; `projection` is filled in for the chosen layer by the caller. */
  prompts: MonitorPrompt[];
  perLayer: { layer: number; rReplies: number; rPrompts: number; n: number }[];
  /** [prompt][layer]: the mean projection over the held-out questions. */
  projections: number[][];
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export async function monitorVectors(
  study: Study,
  systems: readonly { kind: PromptKind; index: number; system: string | null }[],
  byLayer: readonly PersonaVector[],
): Promise<MonitorResult> {
  const { work, handle, evalQuestions, samples } = study;
  const replies = await ensureReplies(
    work,
    study.base,
    'monitor',
    asksFor(
      systems.map((p) => p.system),
      evalQuestions,
      samples,
    ),
  );
  await ensureScores(work, 'monitor', replies, ['trait']);
  // One row per (system prompt, question): its prompt's last token at every layer.
  const prompts = systems.flatMap((p) =>
    evalQuestions.map((q) => study.base.engine.encodeChat(chatOf(p.system, q))),
  );
  const hooks = byLayer.map((v) => v.hook);
  const acts = activationsAt(
    handle.model,
    prompts,
    prompts.map(() => [-1]),
    hooks,
  );
  const dim = handle.model.config.dim;
  const units = byLayer.map((v) => (v.vector.some((x) => x !== 0) ? unitVector(v.vector) : null));
  const projection = (row: number, layer: number) => {
    const u = units[layer];
    if (!u) return NaN;
    const a = acts.get(hooks[layer])!;
    let s = 0;
    for (let j = 0; j < dim; j++) s += u[j] * a[row * dim + j];
    return s;
  };
  const nq = evalQuestions.length;
  const scored = replies
    .map((r, i) => ({ row: Math.floor(i / samples), score: scoreOf(work, r, 'trait') }))
    .filter((x): x is { row: number; score: number } => x.score !== null);
  const projections = systems.map((_, p) =>
    byLayer.map((_v, l) => mean(evalQuestions.map((_q, qi) => projection(p * nq + qi, l)))),
  );
  const promptScores = systems.map((_, p) => {
    const xs = scored.filter((x) => Math.floor(x.row / nq) === p).map((x) => x.score);
    return { mean: mean(xs), n: xs.length };
  });
  const judged = promptScores.flatMap((s, p) => (s.n > 0 ? [p] : []));
  const perLayer = byLayer.map((_v, l) => ({
    layer: l,
    rReplies: pearson(
      scored.map((x) => projection(x.row, l)),
      scored.map((x) => x.score),
    ),
    // Over fewer than three prompts a correlation says nothing.
    rPrompts:
      judged.length >= 3
        ? pearson(
            judged.map((p) => projections[p][l]),
            judged.map((p) => promptScores[p].mean),
          )
        : NaN,
    n: scored.length,
  }));
  return {
    prompts: systems.map((p, i) => ({
      ...p,
      meanScore: promptScores[i].mean,
      n: promptScores[i].n,
      projection: NaN,
    })),
    perLayer,
    projections,
  };
}
