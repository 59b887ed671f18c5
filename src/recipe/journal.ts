/**
 * The recipe's cache: every generated reply and every judge score is appended, as it comes, as one JSON line
 * (responses.jsonl, scores.jsonl in the output folder; src/io/json-lines.ts: one whole line per write, a line torn by
 * a kill is dropped on reading and cut off by the next append). Records are keyed by a hash of everything that
 * decides them (model weights and chat format, system prompt, question, sample, sampling settings, steering; the
 * reply, the judge, the rubric and the kind of score), so a resumed run finds exactly the work it already did and
 * settings that differ never mix.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appendJsonLineSync, readJsonLinesSync } from '../io/json-lines.ts';
import { canonicalJson } from '../providers/cache.ts';

export const RESPONSES_FILE = 'responses.jsonl';
export const SCORES_FILE = 'scores.jsonl';

/** Steering while generating: `alpha` steering units of the trait's vector added at `layer`. */
export interface SteerSetting {
  layer: number;
  alpha: number;
  /** sha256 of the vector's values (another extraction is another push). */
  vector: string;
}

/** What decides one reply. */
export interface ReplySpec {
  /** sha256 of the weights that answer (the model, or a fine-tune of it). */
  model: string;
  /** The chat format's id (ChatTemplate.id). */
  chat: string;
  system: string | null;
  question: string;
  sample: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  steer: SteerSetting | null;
}

export interface ResponseRecord extends ReplySpec {
  key: string;
  /** Which step asked for it (extract, monitor, steer, prevent-...); a reply two steps share is generated once. */
  phase: string;
  text: string;
  /** The reply's token ids as generated (end-of-turn and stop text excluded): what activations are read on. */
  ids: number[];
  finish: 'stop' | 'length';
}

export type ScoreKind = 'trait' | 'coherence';

export interface ScoreRecord {
  key: string;
  response: string;
  kind: ScoreKind;
  judge: string;
  score: number | null;
  label: string;
  raw: string;
}

export function hashOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

export const replyKey = (spec: ReplySpec): string => hashOf({ v: 1, ...spec });

/** The sampling seed of a reply: from its key, so every reply has its own and a resumed run draws the same. */
export const replySeed = (key: string): number => Number.parseInt(key.slice(0, 8), 16);

/** The key of a score: the reply, the kind, the judge and (for the trait score) the trait definition's hash. */
export function scoreKey(response: string, kind: ScoreKind, judge: string, traitHash: string): string {
  return hashOf({ v: 1, response, kind, judge, rubric: kind === 'trait' ? traitHash : 'coherence' });
}

export class RecipeJournal {
  readonly responses = new Map<string, ResponseRecord>();
  readonly scores = new Map<string, ScoreRecord>();
  private readonly responsesFile: string;
  private readonly scoresFile: string;

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.responsesFile = path.join(dir, RESPONSES_FILE);
    this.scoresFile = path.join(dir, SCORES_FILE);
    for (const r of readJsonLinesSync<ResponseRecord>(this.responsesFile)) this.responses.set(r.key, r);
    for (const s of readJsonLinesSync<ScoreRecord>(this.scoresFile)) this.scores.set(s.key, s);
  }

  addResponse(r: ResponseRecord): void {
    appendJsonLineSync(this.responsesFile, r);
    this.responses.set(r.key, r);
  }

  addScore(s: ScoreRecord): void {
    appendJsonLineSync(this.scoresFile, s);
    this.scores.set(s.key, s);
  }
}
