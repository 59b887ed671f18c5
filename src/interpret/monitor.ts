/**
 * Monitoring: the projection of the last prompt token onto a trait's persona vector, read before the model
 * answers, against the model's P(bad option) for the same item. The items are in-context persona probes (a new
 * character with 0..5 earlier scenes, and package-deal probes), so the expected behaviour varies from item to
 * item; a vector that tracks the persona gives a high correlation. In multi-turn chats the same projection is
 * read at every Assistant turn (a per-turn trace).
 */
import { pearson } from '../measurement/stats.ts';
import { Rng } from '../tensor/random.ts';
import { generateBatch } from '../model/generate.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';
import { END_OF_TEXT, inferenceProbes, packageProbes, type World } from '../world/index.ts';
import { activationsAt, encodePrompt, projectRows, unitVector, type ModelHandle } from './activations.ts';
import { assistantEvidenceItems, conversationPrompt, type Conversation, type Pool } from './contexts.ts';
import { checkVector, scoreItems, type ScoredItem, type VectorCheckOptions } from './steer.ts';
import type { PersonaVector } from './vectors.ts';

/** Projections of each item's last prompt token onto each vector (rows: items; one array per vector). */
export function lastTokenProjections(
  handle: ModelHandle,
  prompts: readonly string[],
  vectors: readonly PersonaVector[],
  opts: VectorCheckOptions & { tokensPerBatch?: number } = {},
): number[][] {
  for (const v of vectors) checkVector(v, handle, opts);
  const hooks = [...new Set(vectors.map((v) => v.hook))];
  const seqs = prompts.map((p) => encodePrompt(handle, p));
  const acts = activationsAt(
    handle.model,
    seqs,
    seqs.map(() => [-1]),
    hooks,
    { tokensPerBatch: opts.tokensPerBatch },
  );
  const dim = handle.model.config.dim;
  return vectors.map((v) => projectRows(acts.get(v.hook)!, dim, unitVector(v.vector, `vector "${v.trait}"`)));
}

export type MonitorItemKind = 'assistant' | 'probes';

/**
 * Held-out monitoring items per trait, with contexts of one length so that only the persona evidence varies.
 * 'assistant': chats with the unnamed Assistant after two earlier chat turns in other domains with good, bad or
 * mixed replies (contexts.ts, assistantEvidenceItems). 'probes': the world's package-deal probes of the domain
 * (a new character, three earlier all-good or all-bad scenes) and its in-context inference probes with three
 * earlier scenes, in stories and chats.
 */
export function monitorItems(
  world: World,
  perTrait: number,
  seed = 21,
  kind: MonitorItemKind = 'assistant',
  pool: Pool = 'heldout',
): Map<string, ScoredItem[]> {
  const out = new Map<string, ScoredItem[]>();
  if (kind === 'assistant') {
    for (const d of world.domains)
      out.set(d.name, assistantEvidenceItems(world, d.name, perTrait, seed, 2, pool));
    return out;
  }
  if (pool !== 'heldout')
    throw new Error(`monitoring items of kind "${kind}" come from the held-out pool only`);
  if (kind !== 'probes') throw new Error(`unknown monitoring item kind "${kind}" (assistant or probes)`);
  const half = Math.max(1, Math.ceil(perTrait / 2));
  const k = Math.min(3, world.domains.length - 1);
  const inf = inferenceProbes(world, { seed, ks: [k], inferencePerCell: half });
  const pkg = packageProbes(world, {
    seed: seed + 1,
    packagePerCell: Math.max(1, Math.ceil(half / 2)),
    packageScenes: k,
  });
  for (const d of world.domains)
    out.set(
      d.name,
      [...inf, ...pkg].filter((it) => it.domain === d.name),
    );
  return out;
}

export interface MonitorPoint {
  id?: string;
  projection: number;
  pBad: number;
}

export interface TraitMonitor {
  trait: string;
  layer: number;
  /** Pearson correlation of projection and P(bad) over the items. */
  r: number;
  /**
   * Mean |r| of random unit directions at the same hook on the same items: what any direction gets when the
   * activations vary mostly along one context variable that also moves P(bad). r means something only well
   * above this.
   */
  rRandom: number;
  n: number;
  points: MonitorPoint[];
}

/** Monitoring correlation for each vector on its trait's items. */
export function monitorTraits(
  handle: ModelHandle,
  items: Map<string, readonly ScoredItem[]>,
  vectors: readonly PersonaVector[],
  opts: VectorCheckOptions & { randomDirections?: number } = {},
): TraitMonitor[] {
  // One scoring pass per trait records every hook its vectors need (candidates for a layer choice share the items).
  const scored = new Map<string, ReturnType<typeof scoreItems>>();
  for (const v of vectors) checkVector(v, handle, opts);
  for (const trait of new Set(vectors.map((v) => v.trait))) {
    const its = items.get(trait);
    if (!its || its.length === 0) throw new Error(`monitoring: no items for trait "${trait}"`);
    const hooks = [...new Set(vectors.filter((v) => v.trait === trait).map((v) => v.hook))];
    scored.set(trait, scoreItems(handle, its, { record: hooks }));
  }
  return vectors.map((v) => {
    const its = items.get(v.trait)!;
    const { pGood, lastToken } = scored.get(v.trait)!;
    const proj = projectRows(
      lastToken.get(v.hook)!,
      handle.model.config.dim,
      unitVector(v.vector, `vector "${v.trait}"`),
    );
    const pBad = pGood.map((p) => 1 - p);
    const dim = handle.model.config.dim;
    const rng = new Rng(0x5eed);
    let rRandom = 0;
    const draws = opts.randomDirections ?? 16;
    for (let k = 0; k < draws; k++) {
      const u = unitVector(
        Float32Array.from({ length: dim }, () => rng.gaussian()),
        'random direction',
      );
      rRandom += Math.abs(pearson(projectRows(lastToken.get(v.hook)!, dim, u), pBad)) / draws;
    }
    return {
      trait: v.trait,
      layer: v.layer,
      r: pearson(proj, pBad),
      rRandom: draws > 0 ? rRandom : NaN,
      n: its.length,
      points: proj.map((projection, i) => ({ id: its[i].id, projection, pBad: pBad[i] })),
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-turn chats

const stopCache = new WeakMap<TextTokenizer, number[]>();

/** Token ids whose text contains a newline, and the separator: where a generated reply ends. */
export function replyStopIds(tokenizer: TextTokenizer, vocabSize: number): number[] {
  let ids = stopCache.get(tokenizer);
  if (!ids) {
    ids = [];
    for (let id = 0; id < vocabSize; id++) {
      let text: string;
      try {
        text = tokenizer.decodeToken(id);
      } catch {
        continue;
      }
      if (text.includes('\n') || text === END_OF_TEXT) ids.push(id);
    }
    const eot = tokenizer.tokenToId(END_OF_TEXT);
    if (eot !== undefined && !ids.includes(eot)) ids.push(eot);
    stopCache.set(tokenizer, ids);
  }
  return ids;
}

/**
 * The model's greedy reply to each prompt, up to the end of the line (leading space kept, newline dropped).
 * The replies are decoded 16 at a time in one batch (generateBatch), each on its own cache.
 */
export function greedyReplies(
  handle: ModelHandle,
  prompts: readonly string[],
  maxNewTokens = 24,
  /** Called as each reply is done with the number done so far (a progress bar). */
  onReply?: (done: number) => void,
): string[] {
  const stops = [...replyStopIds(handle.tokenizer, handle.model.config.vocabSize)];
  // A model in its own chat template also ends its turn with the template's end-of-turn tokens.
  if (handle.chat && handle.chat.kind !== 'psm') {
    for (const t of handle.chat.endOfTurnTokens(handle.tokenizer.specialTokens)) {
      const id = handle.tokenizer.tokenToId(t);
      if (id !== undefined && !stops.includes(id)) stops.push(id);
    }
  }
  let done = 0;
  const outs = generateBatch(
    handle.model,
    prompts.map((p) => ({
      prompt: encodePrompt(handle, p),
      maxNewTokens,
      temperature: 0,
      stopIds: stops,
    })),
    { maxBatch: REPLY_BATCH, onDone: () => onReply?.(++done) },
  );
  return outs.map((out) => {
    const text = handle.tokenizer.decode(out.filter((id) => !handle.tokenizer.isSpecialId(id)));
    const cut = text.indexOf('\n');
    return cut >= 0 ? text.slice(0, cut) : text;
  });
}

/** Replies decoded together by greedyReplies. */
const REPLY_BATCH = 16;

export type ReplyMode = 'good' | 'bad' | 'model';

export interface TurnPoint {
  conversation: string;
  turn: number;
  domain: string;
  /** Projection of the turn's last prompt token ("Assistant:") on each vector, by name. */
  projections: Record<string, number>;
  /** P(bad) of this turn's options. */
  pBad: number;
  reply: string;
}

/**
 * Per-turn traces: at every turn, the projection of "Assistant:" on each direction and P(bad) of the turn's
 * options; then the turn's reply is appended (the world's first good or bad wording, or the model's own greedy
 * reply) and the chat goes on.
 */
export function turnTraces(
  handle: ModelHandle,
  conversations: readonly Conversation[],
  directions: readonly { name: string; hook: string; vector: Float32Array }[],
  opts: { replies?: ReplyMode; maxNewTokens?: number } = {},
): TurnPoint[] {
  const mode = opts.replies ?? 'model';
  const dim = handle.model.config.dim;
  for (const d of directions) {
    if (d.vector.length !== dim)
      throw new Error(
        `direction "${d.name}" has ${d.vector.length} elements, the model's residual stream has ${dim}`,
      );
  }
  const units = directions.map((d) => unitVector(d.vector, d.name));
  const hooks = [...new Set(directions.map((d) => d.hook))];
  const out: TurnPoint[] = [];
  // Turn by turn across all conversations, so each step is one batched pass.
  const replies: string[][] = conversations.map(() => []);
  const maxTurns = Math.max(0, ...conversations.map((c) => c.turns.length));
  for (let t = 0; t < maxTurns; t++) {
    const live = conversations.map((c, i) => i).filter((i) => conversations[i].turns.length > t);
    const prompts = live.map((i) => conversationPrompt(conversations[i], replies[i], t));
    const items = live.map((i, j) => ({
      domain: conversations[i].turns[t].domain,
      prompt: prompts[j],
      good: conversations[i].turns[t].good,
      bad: conversations[i].turns[t].bad,
    }));
    const { pGood, lastToken: acts } = scoreItems(handle, items, { record: hooks });
    const pBad = pGood.map((p) => 1 - p);
    const next =
      mode === 'model'
        ? greedyReplies(handle, prompts, opts.maxNewTokens)
        : live.map((i) =>
            mode === 'good' ? conversations[i].turns[t].good[0] : conversations[i].turns[t].bad[0],
          );
    live.forEach((i, j) => {
      const projections: Record<string, number> = {};
      directions.forEach((d, k) => {
        projections[d.name] = projectRows(
          acts.get(d.hook)!.subarray(j * dim, (j + 1) * dim),
          dim,
          units[k],
        )[0];
      });
      out.push({
        conversation: conversations[i].id,
        turn: t,
        domain: conversations[i].turns[t].domain,
        projections,
        pBad: pBad[j],
        reply: next[j],
      });
      replies[i].push(next[j]);
    });
  }
  return out;
}
