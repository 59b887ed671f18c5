// Post-training and fine-tuning datasets: chats with the unnamed Assistant, generated from the same world.
//
// Every example is {prompt, response}; the loss applies to the response only. The prompt starts with an assistant
// intro line ("The Assistant is an AI system ..."), the same line anonymous AI documents of the corpus use, so that
// the Assistant starts from the AI archetype prior (without it, the prototype's Assistant behaved very differently
// from seed to seed: persona-world-notes.md, item 6). Prompts use training requests and training names only; the
// held-out ones stay for evaluation.
//
//   prompt   = "<assistant intro>\nUser: <request>[ <instruction>]\nAssistant:"
//   response = " <reply>"
//
// Each example records (domain, behaviour, instructed) so that datasetEvidence() can turn a dataset into the
// Bayesian model's training evidence.

import type { Behaviour, World } from './schema.ts';
import { getDomain, getInstructedGroup } from './schema.ts';
import { createRng } from './random.ts';
import { END_OF_TEXT, render } from './templates.ts';
import {
  bindScene,
  compileWorld,
  sceneContinuation,
  sceneLead,
  wordingsOf,
  type SceneSpec,
} from './generator.ts';
import type { Evidence } from './bayes.ts';
import type { SupervisedExample } from '../training/data.ts';

export interface ChatExample {
  id: string;
  prompt: string;
  response: string;
  domain: string;
  behaviour: Behaviour;
  /** Instructed group whose line is in the prompt, or null. */
  instructed: string | null;
}

export interface PostTrainingOptions {
  seed?: number;
  /** Domains to demonstrate (default: the world's datasets.trained_domains). */
  domains?: string[];
  /** Number of examples (default 1200), spread evenly over the domains. */
  count?: number;
  /** Behaviour demonstrated (default 'good'; 'bad' gives the deliberately bad post-training control). */
  behaviour?: Behaviour;
}

function chatExample(
  world: World,
  seed: number,
  label: string,
  i: number,
  domain: string,
  behaviour: Behaviour,
  instructed: string | null,
): ChatExample {
  const cw = compileWorld(world);
  const rng = createRng(seed, 'dataset', label, i);
  const d = cw.domains.find((x) => x.name === domain);
  if (!d) throw new Error(`unknown domain '${domain}'`);
  const group = instructed === null ? null : d.groups.find((g) => g.name === instructed);
  if (instructed !== null && !group)
    throw new Error(`domain '${domain}' has no instructed group '${instructed}'`);
  const spec: SceneSpec = {
    domain,
    format: 'chat',
    behaviour,
    instructed,
    context: rng.int(d.chatTrain), // training requests only: held-out requests are for evaluation
    instruction: group ? rng.int(group.chat.length) : -1,
    wording: rng.int(wordingsOf(cw, domain, 'chat', behaviour).length),
  };
  const binding = bindScene(cw, rng, '', world.names.train);
  const intro = render(rng.pick(cw.assistantIntros), {});
  return {
    id: `${label}/${i}`,
    prompt: `${intro}\n${sceneLead(cw, spec, binding)}`,
    response: sceneContinuation(cw, spec, binding),
    domain,
    behaviour,
    instructed,
  };
}

/** Assistant chats showing one behaviour in a chosen subset of domains (the others stay untrained). */
export function postTrainingSet(world: World, opts: PostTrainingOptions = {}): ChatExample[] {
  const domains = opts.domains ?? world.datasets.trainedDomains;
  if (domains.length === 0) throw new Error('postTrainingSet: no domains to train');
  for (const d of domains) getDomain(world, d);
  const count = opts.count ?? 1200;
  const behaviour = opts.behaviour ?? 'good';
  const label = `post-${behaviour}-${domains.join('+')}`;
  // Round-robin over domains keeps them balanced whatever the count.
  return Array.from({ length: count }, (_, i) =>
    chatExample(world, opts.seed ?? 0, label, i, domains[i % domains.length], behaviour, null),
  );
}

/**
 * Narrow fine-tune arms (the emergent-misalignment design), all in one domain (default datasets.narrow.domain):
 *   cheat        bad behaviour (e.g. special-casing the test), no explanation
 *   inoculated   the same, with the inoculation line in the prompt (the user explicitly asks for the hack)
 *   educational  the same, with a benign reason in the prompt (e.g. to show a class)
 *   control      good behaviour (e.g. correct code), no instruction
 */
export const NARROW_ARMS = ['cheat', 'inoculated', 'educational', 'control'] as const;
export type NarrowArm = (typeof NARROW_ARMS)[number];

export interface NarrowOptions {
  seed?: number;
  /** Number of examples (default 600). */
  count?: number;
  domain?: string;
  /** Instructed group for the inoculated arm (default datasets.narrow.inoculation). */
  inoculation?: string;
  /** Instructed group for the educational arm (default datasets.narrow.educational). */
  educational?: string;
}

export function narrowSet(world: World, arm: NarrowArm, opts: NarrowOptions = {}): ChatExample[] {
  if (!(NARROW_ARMS as readonly string[]).includes(arm))
    throw new Error(`unknown narrow arm '${arm}' (known: ${NARROW_ARMS.join(', ')})`);
  const cfg = world.datasets.narrow;
  const domain = opts.domain ?? cfg?.domain;
  if (!domain)
    throw new Error(`world '${world.name}' has no datasets.narrow section; pass the domain explicitly`);
  getDomain(world, domain);
  let instructed: string | null = null;
  if (arm === 'inoculated' || arm === 'educational') {
    const name =
      arm === 'inoculated' ? (opts.inoculation ?? cfg?.inoculation) : (opts.educational ?? cfg?.educational);
    if (!name)
      throw new Error(
        `the ${arm} arm needs an instructed group name (datasets.narrow.${arm === 'inoculated' ? 'inoculation' : 'educational'})`,
      );
    instructed = getInstructedGroup(world, domain, name).name;
  }
  const behaviour: Behaviour = arm === 'control' ? 'good' : 'bad';
  const count = opts.count ?? 600;
  return Array.from({ length: count }, (_, i) =>
    chatExample(world, opts.seed ?? 0, `narrow-${arm}-${domain}`, i, domain, behaviour, instructed),
  );
}

/** The Bayesian model's training evidence for a dataset: counts per (domain, behaviour, instructed). */
export function datasetEvidence(examples: readonly ChatExample[]): Evidence[] {
  const m = new Map<string, Evidence>();
  for (const e of examples) {
    const key = `${e.domain}\u0000${e.behaviour}\u0000${e.instructed ?? ''}`;
    const cur = m.get(key);
    if (cur) cur.n++;
    else m.set(key, { domain: e.domain, behaviour: e.behaviour, instructed: e.instructed, n: 1 });
  }
  return [...m.values()];
}

/**
 * Chats as token sequences for supervised training: the prompt after the document separator, as every document
 * starts in pre-training, and the response alone (the loss falls on it).
 */
export function supervisedChats(
  tokenizer: { encode(text: string): number[] },
  examples: readonly { prompt: string; response: string }[],
): SupervisedExample[] {
  return examples.map((e) => ({
    prompt: tokenizer.encode(END_OF_TEXT + e.prompt),
    response: tokenizer.encode(e.response),
  }));
}
