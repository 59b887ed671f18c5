/**
 * Building blocks of choice items: a character (the unnamed Assistant, or a named human or AI), its earlier
 * scenes, and the lead of a target scene with the good and bad wordings as options. The evaluation items
 * (eval.ts, held-out pools) and the interpretability contexts (src/interpret, either pool) are both made of
 * them, so the two draw from the world in the same order and agree on what an item looks like.
 */
import type { Observation } from './bayes.ts';
import {
  bindScene,
  sceneContinuation,
  sceneLead,
  wordingsOf,
  type CompiledWorld,
  type SceneSpec,
} from './generator.ts';
import type { Rng } from './random.ts';
import type { Behaviour, Format } from './schema.ts';
import { render, type Binding } from './templates.ts';

/** Which part of the world's context and name pools an item draws from. */
export type Pool = 'train' | 'heldout';
/**
 * One pool for both, or the context pool and the name pool chosen apart (diagnostics: how much of a model's error on
 * held-out items comes from unseen situations and how much from unseen names).
 */
export type PoolChoice = Pool | { contexts: Pool; names: Pool };

const contextPool = (p: PoolChoice): Pool => (typeof p === 'string' ? p : p.contexts);
const namePool = (p: PoolChoice): Pool => (typeof p === 'string' ? p : p.names);
export type Subject = 'assistant' | 'human' | 'ai';

export interface Actor {
  subject: Subject;
  /** null for the unnamed Assistant. */
  name: string | null;
  intro: string;
}

function namesOf(cw: CompiledWorld, pool: PoolChoice): readonly string[] {
  return namePool(pool) === 'train' ? cw.world.names.train : cw.world.names.heldout;
}

function domainOf(cw: CompiledWorld, name: string) {
  const d = cw.domains.find((x) => x.name === name);
  if (!d)
    throw new Error(
      `unknown domain '${name}' (the world's domains: ${cw.domains.map((x) => x.name).join(', ')})`,
    );
  return d;
}

/** A story context or chat request index of `domain` from the pool (held-out ones are the last of each list). */
function contextIndex(cw: CompiledWorld, rng: Rng, domain: string, format: Format, pool: PoolChoice): number {
  const d = domainOf(cw, domain);
  const total = format === 'story' ? d.storyContexts.length : d.chatRequests.length;
  const train = format === 'story' ? d.storyTrain : d.chatTrain;
  return contextPool(pool) === 'train' ? rng.int(train) : train + rng.int(total - train);
}

export function makeActor(cw: CompiledWorld, rng: Rng, subject: Subject, pool: PoolChoice): Actor {
  if (subject === 'assistant')
    return { subject, name: null, intro: render(rng.pick(cw.assistantIntros), {}) };
  const name = rng.pick(namesOf(cw, pool));
  return {
    subject,
    name,
    intro: render(rng.pick(subject === 'human' ? cw.humanIntros : cw.aiIntros), { name }),
  };
}

/** The Assistant talks in chats, humans appear in stories, named AIs in either. */
export function sceneFormat(cw: CompiledWorld, rng: Rng, subject: Subject): Format {
  if (subject === 'assistant') return 'chat';
  if (subject === 'human') return 'story';
  return rng.bernoulli(cw.world.documents.kinds.ai.chatShare) ? 'chat' : 'story';
}

/** An ordinary (not instructed) scene of `domain` with the given behaviour. */
export function plainScene(
  cw: CompiledWorld,
  rng: Rng,
  domain: string,
  format: Format,
  behaviour: Behaviour,
  pool: PoolChoice,
): SceneSpec {
  const context = contextIndex(cw, rng, domain, format, pool);
  const wording = rng.int(wordingsOf(cw, domain, format, behaviour).length);
  return { domain, format, behaviour, instructed: null, context, instruction: -1, wording };
}

/** Every good and every bad wording of a scene, rendered, each with its leading space. */
export function choiceOptions(
  cw: CompiledWorld,
  domain: string,
  format: Format,
  binding: Binding,
): { good: string[]; bad: string[] } {
  const opt = (b: Behaviour) => wordingsOf(cw, domain, format, b).map((t) => ' ' + render(t, binding));
  return { good: opt('good'), bad: opt('bad') };
}

/** The character's earlier scenes, whole (lead and behaviour), and the evidence they give the Bayesian model. */
export function earlierScenes(
  cw: CompiledWorld,
  rng: Rng,
  actor: Actor,
  earlier: readonly { domain: string; behaviour: Behaviour }[],
  pool: PoolChoice,
): { lines: string[]; evidence: Observation[] } {
  const lines: string[] = [];
  const evidence: Observation[] = [];
  for (const e of earlier) {
    const spec = plainScene(cw, rng, e.domain, sceneFormat(cw, rng, actor.subject), e.behaviour, pool);
    const b = bindScene(cw, rng, actor.name ?? '', namesOf(cw, pool));
    lines.push(sceneLead(cw, spec, b) + sceneContinuation(cw, spec, b));
    evidence.push({ domain: e.domain, behaviour: e.behaviour });
  }
  return { lines, evidence };
}

/** The lead of a target scene in `domain` (where the character is about to act) and its options. */
export function targetScene(
  cw: CompiledWorld,
  rng: Rng,
  actor: Actor,
  domain: string,
  format: Format,
  pool: PoolChoice,
): { lead: string; good: string[]; bad: string[] } {
  const spec = plainScene(cw, rng, domain, format, 'good', pool);
  const binding = bindScene(cw, rng, actor.name ?? '', namesOf(cw, pool));
  return { lead: sceneLead(cw, spec, binding), ...choiceOptions(cw, domain, format, binding) };
}
