/**
 * The recipe's two kinds of work, each done once and kept: replies of a model (generated in its chat format, with
 * steering where asked) and judge scores of replies. Both look in the journal first and do only what is missing,
 * showing progress (bar, rate, ETA) over that.
 */
import type { ModelHandle } from '../interpret/activations.ts';
import type { ProgressFactory } from '../measurement/progress.ts';
import type { HookSet } from '../model/hooks.ts';
import type { LocalEngine } from '../providers/local-engine.ts';
import { chatOf, generateReplies, type ReplyRequest } from './generate.ts';
import type { ReplyJudge } from './judge.ts';
import {
  replyKey,
  replySeed,
  scoreKey,
  type RecipeJournal,
  type ReplySpec,
  type ResponseRecord,
  type ScoreKind,
  type ScoreRecord,
  type SteerSetting,
} from './journal.ts';

export interface Sampling {
  maxTokens: number;
  temperature: number;
  topP: number;
  /** The run's seed (each reply's own seed comes from its key, which holds this one). */
  seed: number;
}

export interface RecipeWork {
  journal: RecipeJournal;
  judge: ReplyJudge;
  /** The trait definition's hash (trait scores depend on its rubric). */
  traitHash: string;
  sampling: Sampling;
  progress: ProgressFactory;
  /** Judge calls in flight at once. */
  judgeConcurrency: number;
}

/** A model that answers: its engine, and the hash of its weights. */
export interface Answerer {
  engine: LocalEngine;
  hash: string;
}

/** One reply to ask for. */
export interface Ask {
  system: string | null;
  question: string;
  sample: number;
  /** Steering while it is generated: the setting (part of the key) and its hooks. */
  steer?: { setting: SteerSetting; hooks: HookSet };
}

/** The replies to `asks` (same order): those in the journal, and the rest generated and recorded as they come. */
export async function ensureReplies(
  work: RecipeWork,
  who: Answerer,
  phase: string,
  asks: readonly Ask[],
): Promise<ResponseRecord[]> {
  const specs: ReplySpec[] = asks.map((a) => ({
    model: who.hash,
    chat: who.engine.chat.id,
    system: a.system,
    question: a.question,
    sample: a.sample,
    ...work.sampling,
    steer: a.steer?.setting ?? null,
  }));
  const keys = specs.map(replyKey);
  // Two asks with one key (a reply two steps share) are generated once.
  const missing: number[] = [];
  const seen = new Set<string>();
  keys.forEach((k, i) => {
    if (!work.journal.responses.has(k) && !seen.has(k)) missing.push(i);
    seen.add(k);
  });
  if (missing.length > 0) {
    const bar = work.progress(`${phase} replies`, missing.length, 'replies');
    const requests: ReplyRequest[] = missing.map((i) => ({
      messages: chatOf(asks[i].system, asks[i].question),
      maxTokens: work.sampling.maxTokens,
      temperature: work.sampling.temperature,
      topP: work.sampling.topP,
      seed: replySeed(keys[i]),
      hooks: asks[i].steer?.hooks,
    }));
    let done = 0;
    try {
      await generateReplies(who.engine, requests, (j, reply) => {
        const i = missing[j];
        work.journal.addResponse({ key: keys[i], phase, ...specs[i], ...reply });
        bar.update(++done);
      });
    } finally {
      bar.stop();
    }
  }
  return keys.map((k) => work.journal.responses.get(k)!);
}

/** Runs `fn` over `items` with at most `limit` calls in flight; the first failure is thrown once all have settled. */
async function inPool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < items.length && failure === null) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw failure;
}

/** The key of a reply's score of one kind by this run's judge. */
export const scoreKeyOf = (work: RecipeWork, r: ResponseRecord, kind: ScoreKind) =>
  scoreKey(r.key, kind, work.judge.id, work.traitHash);

/** Scores every reply with each kind the judge gives (those in the journal are kept), recording each as it comes. */
export async function ensureScores(
  work: RecipeWork,
  phase: string,
  replies: readonly ResponseRecord[],
  kinds: readonly ScoreKind[],
): Promise<void> {
  const todo: { r: ResponseRecord; kind: ScoreKind; key: string }[] = [];
  const seen = new Set<string>();
  for (const r of replies)
    for (const kind of kinds) {
      const key = scoreKeyOf(work, r, kind);
      if (!work.journal.scores.has(key) && !seen.has(key)) todo.push({ r, kind, key });
      seen.add(key);
    }
  if (todo.length === 0) return;
  const bar = work.progress(`${phase} judge`, todo.length, 'scores');
  let done = 0;
  try {
    await inPool(todo, work.judgeConcurrency, async ({ r, kind, key }) => {
      let v;
      try {
        v = await (kind === 'trait' ? work.judge.trait : work.judge.coherence)(r.question, r.text);
      } catch (e) {
        throw new Error(
          `the judge (${work.judge.id}) failed on a ${phase} reply: ${(e as Error).message}; the replies and scores so far are kept, run the same command again to resume`,
          { cause: e },
        );
      }
      const rec: ScoreRecord = { key, response: r.key, kind, judge: work.judge.id, ...v };
      work.journal.addScore(rec);
      bar.update(++done);
    });
  } finally {
    bar.stop();
  }
}

/** A reply's score of one kind (null: the judge gave no number); the score must have been ensured. */
export function scoreOf(work: RecipeWork, r: ResponseRecord, kind: ScoreKind): number | null {
  const s = work.journal.scores.get(scoreKeyOf(work, r, kind));
  if (!s) throw new Error(`internal: no ${kind} score for reply ${r.key.slice(0, 12)}`);
  return s.score;
}

/** Mean of the non-null scores, and how many there were. */
export function meanScore(
  work: RecipeWork,
  replies: readonly ResponseRecord[],
  kind: ScoreKind,
): { mean: number; n: number; unscored: number } {
  const xs = replies.map((r) => scoreOf(work, r, kind)).filter((x): x is number => x !== null);
  return {
    mean: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN,
    n: xs.length,
    unscored: replies.length - xs.length,
  };
}

/** What every step of a run shares: the work, the model under study, and the held-out questions and samples. */
export interface Study {
  work: RecipeWork;
  handle: ModelHandle;
  /** The model under study, answering. */
  base: Answerer;
  evalQuestions: string[];
  samples: number;
  /** The system prompt of ordinary use (null: none): steering and the fine-tunes are measured under it. */
  defaultSystem: string | null;
}

/** One ask per system prompt x question x sample, in that order (so reply i is prompt row floor(i / samples)). */
export function asksFor(
  systems: readonly (string | null)[],
  questions: readonly string[],
  samples: number,
  steer?: Ask['steer'],
): Ask[] {
  return systems.flatMap((system) =>
    questions.flatMap((question) =>
      Array.from({ length: samples }, (_, sample) => ({
        system,
        question,
        sample,
        ...(steer ? { steer } : {}),
      })),
    ),
  );
}

export interface HeldOutScores {
  replies: ResponseRecord[];
  trait: ReturnType<typeof meanScore>;
  coherence: ReturnType<typeof meanScore>;
}

/**
 * `who`'s replies to the held-out questions under the default system prompt (steered when `steer` says so), judged
 * for the trait and for coherence: what steering and the fine-tunes are measured on.
 */
export async function heldOutScores(
  study: Study,
  who: Answerer,
  phase: string,
  steer?: Ask['steer'],
): Promise<HeldOutScores> {
  const { work } = study;
  const replies = await ensureReplies(
    work,
    who,
    phase,
    asksFor([study.defaultSystem], study.evalQuestions, study.samples, steer),
  );
  await ensureScores(work, phase, replies, ['trait', 'coherence']);
  return {
    replies,
    trait: meanScore(work, replies, 'trait'),
    coherence: meanScore(work, replies, 'coherence'),
  };
}
