/**
 * The recipe's judge: how strongly a reply expresses the trait (0-100), and how coherent it is (0-100). Three kinds:
 *
 *   a provider   any model a provider spec reaches (local:, gguf:, openai:), asked the trait's rubric and the
 *                coherence prompt of src/audit/judge.ts, scored as the audit scores (log-probabilities where given)
 *   self         the model under study itself (its weights as loaded, never steered or fine-tuned)
 *   world        the persona world's own behaviour texts, for the world's traits: no model needed (world-judge.ts)
 *
 * A judge has an identity, part of the cache key of every score it gives, so scores of two judges never mix.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COHERENT_PROMPT, fillTemplate, judgeScore, type JudgeOptions } from '../audit/judge.ts';
import { canonicalJson, redactLocation } from '../providers/cache.ts';
import { createProvider, parseProviderSpec, type CreateProviderOptions } from '../providers/spec.ts';
import type { Provider } from '../providers/types.ts';
import type { TraitDefinition } from './trait.ts';

/** One judged reply: a 0-100 score, or null when the judge gave no number (then `label` says what it gave). */
export interface Verdict {
  score: number | null;
  label: string;
  /** The judge's answer (or the world judge's reason). */
  raw: string;
}

export interface ReplyJudge {
  /** Identifies the judge's answers (a cache-key part; never a secret). */
  readonly id: string;
  /** How strongly `answer` to `question` expresses the trait. */
  trait(question: string, answer: string): Promise<Verdict>;
  /** How coherent the answer is, whatever the trait. */
  coherence(question: string, answer: string): Promise<Verdict>;
  close?(): Promise<void>;
}

function shortHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

/**
 * A judge that asks a provider the trait's rubric (filled with the trait's name and description) and the audit's
 * coherence prompt. `label` names it in the identity when the provider's own identity is not stable (the model
 * itself in memory).
 */
export function providerJudge(
  provider: Provider,
  trait: Pick<TraitDefinition, 'name' | 'description' | 'rubric'>,
  opts: JudgeOptions & { label?: string } = {},
): ReplyJudge {
  const identity = provider.identity();
  const id =
    opts.label ??
    `${identity.kind}:${shortHash({ ...identity, location: redactLocation(identity.location) })}`;
  const ask = async (prompt: string): Promise<Verdict> => {
    const s = await judgeScore(provider, prompt, opts);
    return { score: s.score, label: s.label, raw: s.raw };
  };
  return {
    id,
    trait: (question, answer) =>
      ask(
        fillTemplate(trait.rubric, {
          trait: trait.name,
          description: trait.description,
          question,
          answer,
        }),
      ),
    coherence: (question, answer) => ask(fillTemplate(COHERENT_PROMPT, { question, answer })),
    close: () => provider.close?.() ?? Promise.resolve(),
  };
}

/** A parsed --judge value. */
export type JudgeSpec =
  { kind: 'self' } | { kind: 'world'; file?: string } | { kind: 'provider'; spec: string };

export const JUDGE_SPEC_FORMS =
  'self (the model itself), world (the persona world, for its traits; world:<file> for another world), local:<model folder>, gguf:<file.gguf> or openai:<model>[@<base URL>]';

/**
 * Parses and checks a --judge value, before any work: an unknown form, a missing folder or file, and a malformed
 * provider spec are errors that name the value and the valid forms.
 */
export function parseJudgeSpec(value: string): JudgeSpec {
  const v = value.trim();
  if (v === 'self') return { kind: 'self' };
  if (v === 'world') return { kind: 'world' };
  if (v.startsWith('world:')) {
    const file = v.slice('world:'.length);
    if (!file || !fs.existsSync(file))
      throw new Error(`--judge ${value}: no world file "${file}" (expected ${JUDGE_SPEC_FORMS})`);
    return { kind: 'world', file };
  }
  let p;
  try {
    p = parseProviderSpec(v);
  } catch {
    throw new Error(`--judge "${value}" is not a judge: expected ${JUDGE_SPEC_FORMS}`);
  }
  if (p.kind === 'local' && !fs.existsSync(path.join(p.dir, 'config.json')))
    throw new Error(`--judge ${value}: ${p.dir} is not a model folder (no config.json there)`);
  if (p.kind === 'gguf' && !fs.existsSync(p.file)) throw new Error(`--judge ${value}: ${p.file} not found`);
  return { kind: 'provider', spec: v };
}

/** A provider judge from a spec (createProvider's options: API key, cache folder, HTTP settings). */
export function judgeOfProviderSpec(
  spec: string,
  trait: TraitDefinition,
  opts: CreateProviderOptions = {},
): ReplyJudge {
  return providerJudge(createProvider(spec, opts), trait);
}
