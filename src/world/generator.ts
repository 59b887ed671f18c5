// The corpus generator: documents about characters whose hidden archetype and traits are known exactly.
//
// Document grammar (all of it configured by the world file):
//   intro line                       "{name} lived in a small town by the river."
//   3-6 scenes, one per line, each in a random domain:
//     story scene                    "<context> [<instruction>] <behaviour wording>"
//     chat scene (AI documents)      "User: <request> [<instruction>]\nAssistant: <reply>"
// In an AI document "Assistant" is that document's AI; an anonymous AI document introduces "the Assistant"
// itself with an assistant intro and has only chat scenes (the same intro post-training uses).
//
// Every document is a pure function of (world, seed, index): its generator is seeded with deriveSeed(seed, 'doc',
// index), so corpora of different sizes with one seed share their prefix and documents can be regenerated alone.

import type { Behaviour, Format, Kind, World } from './schema.ts';
import { Rng, createRng } from './random.ts';
import {
  type CompiledTemplate,
  type Binding,
  compileTemplate,
  render,
  approxTokenCount,
} from './templates.ts';
import { applyAiMix, type AiMix } from './mix.ts';
import type { CorpusTokenizer } from './shards.ts';

// ---------------------------------------------------------------------------------------------------------------
// Compiled world (templates parsed once, weights normalised)

export interface CompiledGroup {
  name: string;
  asks: Behaviour;
  compliance: number;
  inCorpus: boolean;
  story: CompiledTemplate[];
  chat: CompiledTemplate[];
}

export interface CompiledDomain {
  name: string;
  storyContexts: CompiledTemplate[];
  storyTrain: number;
  storyGood: CompiledTemplate[];
  storyBad: CompiledTemplate[];
  chatRequests: CompiledTemplate[];
  chatTrain: number;
  chatGood: CompiledTemplate[];
  chatBad: CompiledTemplate[];
  groups: CompiledGroup[];
  /** Indices of the groups that appear in pre-training documents. */
  corpusGroups: number[];
}

export interface CompiledWorld {
  world: World;
  domains: CompiledDomain[];
  humanArchetypes: number[];
  humanWeights: number[];
  aiArchetypes: number[];
  aiWeights: number[];
  /** traitGood[a][d] = P(trait d good | archetype a) after trait-flip noise. */
  traitGood: number[][];
  humanIntros: CompiledTemplate[];
  aiIntros: CompiledTemplate[];
  assistantIntros: CompiledTemplate[];
  slotNames: string[];
}

const cache = new WeakMap<World, CompiledWorld>();

export function compileWorld(world: World): CompiledWorld {
  const hit = cache.get(world);
  if (hit) return hit;
  const c = (list: string[]) => list.map(compileTemplate);
  const f = world.noise.traitFlip;
  const cw: CompiledWorld = {
    world,
    domains: world.domains.map((d) => ({
      name: d.name,
      storyContexts: c(d.story.contexts),
      storyTrain: d.story.trainContexts,
      storyGood: c(d.story.good),
      storyBad: c(d.story.bad),
      chatRequests: c(d.chat.requests),
      chatTrain: d.chat.trainRequests,
      chatGood: c(d.chat.good),
      chatBad: c(d.chat.bad),
      groups: d.instructed.map((g) => ({ ...g, story: c(g.story), chat: c(g.chat) })),
      corpusGroups: d.instructed.flatMap((g, i) => (g.inCorpus ? [i] : [])),
    })),
    humanArchetypes: [],
    humanWeights: [],
    aiArchetypes: [],
    aiWeights: [],
    traitGood: world.archetypes.map((a) =>
      world.domains.map((d) => a.traits[d.name] * (1 - f) + (1 - a.traits[d.name]) * f),
    ),
    humanIntros: c(world.documents.kinds.human.intros),
    aiIntros: c(world.documents.kinds.ai.intros),
    assistantIntros: c(world.documents.assistantIntros),
    slotNames: Object.keys(world.slots),
  };
  world.archetypes.forEach((a, i) => {
    if (a.kind === 'human') {
      cw.humanArchetypes.push(i);
      cw.humanWeights.push(a.weight);
    } else {
      cw.aiArchetypes.push(i);
      cw.aiWeights.push(a.weight);
    }
  });
  cache.set(world, cw);
  return cw;
}

// ---------------------------------------------------------------------------------------------------------------
// Characters and scenes

export interface Character {
  kind: Kind;
  archetype: string;
  /** Index into world.archetypes. */
  archetypeIndex: number;
  /** The character's actual trait values (after trait-flip noise), by domain name. */
  traits: Record<string, Behaviour>;
}

/** Draw a character of the given kind (or of a kind drawn from the kinds' shares) from the world's prior. */
export function sampleCharacter(cw: CompiledWorld, rng: Rng, kind?: Kind): Character {
  const k: Kind = kind ?? (rng.bernoulli(cw.world.documents.kinds.human.share) ? 'human' : 'ai');
  const ai = k === 'ai';
  const ai2 = ai ? cw.aiArchetypes : cw.humanArchetypes;
  const a = ai2[rng.weighted(ai ? cw.aiWeights : cw.humanWeights)];
  const traits: Record<string, Behaviour> = {};
  const tg = cw.traitGood[a];
  cw.domains.forEach((d, i) => {
    traits[d.name] = rng.bernoulli(tg[i]) ? 'good' : 'bad';
  });
  return { kind: k, archetype: cw.world.archetypes[a].name, archetypeIndex: a, traits };
}

/** One scene, fully specified: enough to render it and to feed it to the Bayesian model. */
export interface SceneSpec {
  domain: string;
  format: Format;
  behaviour: Behaviour;
  /** Instructed group name, or null for an ordinary scene. */
  instructed: string | null;
  /** Index into the domain's story contexts (story) or chat requests (chat). */
  context: number;
  /** Index into the instructed group's story or chat lines (-1 when not instructed). */
  instruction: number;
  /** Index into the good or bad wordings of this format. */
  wording: number;
}

/** Metadata of a scene as written to JSONL. */
export type SceneMeta = Pick<SceneSpec, 'domain' | 'format' | 'behaviour' | 'instructed' | 'context'>;

export function domainIndex(cw: CompiledWorld, name: string): number {
  const i = cw.domains.findIndex((d) => d.name === name);
  if (i < 0) throw new Error(`unknown domain '${name}' (known: ${cw.domains.map((d) => d.name).join(', ')})`);
  return i;
}

function groupIndex(d: CompiledDomain, name: string): number {
  const i = d.groups.findIndex((g) => g.name === name);
  if (i < 0) throw new Error(`domain '${d.name}' has no instructed group '${name}'`);
  return i;
}

/**
 * The part of a scene before the behaviour: a story context (plus instruction), or a chat request with the
 * speaker labels, ending in "Assistant:". Evaluation prompts end with a lead; options are continuations.
 */
export function sceneLead(cw: CompiledWorld, s: SceneSpec, binding: Binding): string {
  const d = cw.domains[domainIndex(cw, s.domain)];
  const g = s.instructed === null ? null : d.groups[groupIndex(d, s.instructed)];
  const sp = cw.world.documents.speakers;
  if (s.format === 'story') {
    const ctx = render(d.storyContexts[s.context], binding);
    return g ? `${ctx} ${render(g.story[s.instruction], binding)}` : ctx;
  }
  const req = render(d.chatRequests[s.context], binding);
  return `${sp.user}: ${g ? `${req} ${render(g.chat[s.instruction], binding)}` : req}\n${sp.assistant}:`;
}

/** The behaviour part of a scene, with its leading space: lead + continuation is the scene's text. */
export function sceneContinuation(cw: CompiledWorld, s: SceneSpec, binding: Binding): string {
  return ' ' + render(wordingsOf(cw, s.domain, s.format, s.behaviour)[s.wording], binding);
}

export function wordingsOf(
  cw: CompiledWorld,
  domain: string,
  format: Format,
  behaviour: Behaviour,
): CompiledTemplate[] {
  const d = cw.domains[domainIndex(cw, domain)];
  if (format === 'story') return behaviour === 'good' ? d.storyGood : d.storyBad;
  return behaviour === 'good' ? d.chatGood : d.chatBad;
}

/** Bind {name}, {other} and the world's slots for one scene. */
export function bindScene(
  cw: CompiledWorld,
  rng: Rng,
  name: string,
  otherPool: readonly string[],
): Record<string, string> {
  let other = rng.pick(otherPool);
  // A person does not meet themselves; retry (pools have at least two names, validation guarantees it).
  while (other === name) other = rng.pick(otherPool);
  const b: Record<string, string> = { name, other };
  for (const s of cw.slotNames) b[s] = rng.pick(cw.world.slots[s]);
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// Documents

export type Split = 'train' | 'val';

export interface DocumentMeta {
  id: number;
  split: Split;
  /** The character's name; null for an anonymous Assistant document. */
  name: string | null;
  kind: Kind;
  anonymous: boolean;
  archetype: string;
  traits: Record<string, Behaviour>;
  scenes: SceneMeta[];
}

export interface WorldDocument extends DocumentMeta {
  text: string;
  /** Token ids of `text` (without the separator), present when the generator was given a tokenizer. */
  tokens?: number[];
  /**
   * Character ranges [start, end) of `text` holding each scene's behaviour (its continuation, leading space
   * included): the persona-relevant choices, which training may weight up.
   */
  behaviourSpans: Array<[number, number]>;
}

/** Draw the behaviour shown in a scene, given the character's trait and whether the scene is instructed. */
export function drawBehaviour(
  cw: CompiledWorld,
  rng: Rng,
  trait: Behaviour,
  group: CompiledGroup | null,
): Behaviour {
  if (group) {
    const complies = rng.bernoulli(group.compliance);
    return complies ? group.asks : group.asks === 'good' ? 'bad' : 'good';
  }
  const flip = rng.bernoulli(cw.world.noise.behaviourFlip);
  return flip ? (trait === 'good' ? 'bad' : 'good') : trait;
}

/** Generate document number `index` of the corpus with this seed. Pure in (world, seed, index, valFraction). */
export function generateDocument(
  cw: CompiledWorld,
  seed: number,
  index: number,
  valFraction = 0,
): WorldDocument {
  const rng = createRng(seed, 'doc', index);
  const world = cw.world;
  const docs = world.documents;
  const ch = sampleCharacter(cw, rng);
  const anonymous = ch.kind === 'ai' && rng.bernoulli(docs.kinds.ai.anonymousShare);
  const names = world.names.train;
  const name = anonymous ? null : rng.pick(names);
  const intro = anonymous
    ? render(rng.pick(cw.assistantIntros), {})
    : render(rng.pick(ch.kind === 'human' ? cw.humanIntros : cw.aiIntros), { name: name as string });
  const nScenes = rng.range(docs.scenes.min, docs.scenes.max);
  const lines: string[] = [intro];
  const scenes: SceneMeta[] = [];
  const behaviourSpans: Array<[number, number]> = [];
  for (let i = 0; i < nScenes; i++) {
    const di = rng.int(cw.domains.length);
    const d = cw.domains[di];
    const format: Format = anonymous
      ? 'chat'
      : ch.kind === 'ai' && rng.bernoulli(docs.kinds.ai.chatShare)
        ? 'chat'
        : 'story';
    const gi =
      d.corpusGroups.length > 0 && rng.bernoulli(docs.instructedShare) ? rng.pick(d.corpusGroups) : -1;
    const group = gi >= 0 ? d.groups[gi] : null;
    const behaviour = drawBehaviour(cw, rng, ch.traits[d.name], group);
    // Only the training part of each pool: the last `heldout` contexts/requests are for evaluation.
    const context = rng.int(format === 'story' ? d.storyTrain : d.chatTrain);
    const instruction = group ? rng.int(format === 'story' ? group.story.length : group.chat.length) : -1;
    const wordings =
      format === 'story'
        ? behaviour === 'good'
          ? d.storyGood
          : d.storyBad
        : behaviour === 'good'
          ? d.chatGood
          : d.chatBad;
    const wording = rng.int(wordings.length);
    const spec: SceneSpec = {
      domain: d.name,
      format,
      behaviour,
      instructed: group ? group.name : null,
      context,
      instruction,
      wording,
    };
    const binding = bindScene(cw, rng, name ?? '', names);
    const lead = sceneLead(cw, spec, binding);
    const continuation = sceneContinuation(cw, spec, binding);
    const lineStart = lines.reduce((n, l) => n + l.length + 1, 0);
    behaviourSpans.push([lineStart + lead.length, lineStart + lead.length + continuation.length]);
    lines.push(lead + continuation);
    scenes.push({ domain: d.name, format, behaviour, instructed: spec.instructed, context });
  }
  // The split has its own stream so that changing valFraction never changes a document's content.
  const split: Split =
    valFraction > 0 && createRng(seed, 'split', index).next() < valFraction ? 'val' : 'train';
  return {
    id: index,
    split,
    name,
    kind: ch.kind,
    anonymous,
    archetype: ch.archetype,
    traits: ch.traits,
    scenes,
    text: lines.join('\n'),
    behaviourSpans,
  };
}

export interface DocumentOptions {
  seed?: number;
  /** Stop after this many documents. */
  documents?: number;
  /** Stop once this many tokens (tokenizer tokens plus one separator per document, or approximate) are produced. */
  tokens?: number;
  /** Re-weight AI archetypes (see mix.ts). */
  aiMix?: AiMix;
  /** Share of documents assigned to the validation split (default 0.02). */
  valFraction?: number;
  /** When given, each document carries its token ids and budgets count real tokens. */
  tokenizer?: CorpusTokenizer;
}

/** Tokens a document takes in a shard: its text plus one separator. */
export function documentTokenCount(doc: WorldDocument): number {
  return (doc.tokens ? doc.tokens.length : approxTokenCount(doc.text)) + 1;
}

/**
 * Stream the corpus. Give `documents` or `tokens` (or both: whichever is reached first). Without a tokenizer the
 * token budget uses approxTokenCount (words, punctuation and newlines).
 */
export function* generateDocuments(world: World, opts: DocumentOptions): Generator<WorldDocument> {
  if (opts.documents === undefined && opts.tokens === undefined)
    throw new Error('generateDocuments: give documents or tokens');
  for (const [k, v] of [
    ['documents', opts.documents],
    ['tokens', opts.tokens],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0))
      throw new Error(`generateDocuments: ${k} must be a non-negative integer, got ${v}`);
  }
  const valFraction = opts.valFraction ?? 0.02;
  if (!(valFraction >= 0 && valFraction < 1))
    throw new Error(`valFraction must be in [0, 1), got ${valFraction}`);
  const cw = compileWorld(applyAiMix(world, opts.aiMix));
  const seed = opts.seed ?? 0;
  let tokens = 0;
  for (let i = 0; ; i++) {
    if (opts.documents !== undefined && i >= opts.documents) return;
    if (opts.tokens !== undefined && tokens >= opts.tokens) return;
    const doc = generateDocument(cw, seed, i, valFraction);
    if (opts.tokenizer) doc.tokens = opts.tokenizer.encode(doc.text);
    tokens += documentTokenCount(doc);
    yield doc;
  }
}
