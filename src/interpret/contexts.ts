/**
 * Contexts built from the persona world for the interpretability measurements: single-scene choice items from
 * the training pools (vector extraction, layer selection), trait-eliciting and trait-suppressing contexts (the
 * contrastive variant), multi-turn chats with the unnamed Assistant, and the positions in corpus documents
 * where a scene's lead ends (where the network is about to show the character's behaviour).
 *
 * Every builder is a pure function of (world, seed, ...). Extraction contexts use the training pools of
 * contexts and names, so vectors never see the held-out contexts the evaluation items are made of.
 */
import type { Encoder } from '../measurement/choice.ts';
import { type Observation } from '../world/bayes.ts';
import {
  compileWorld,
  drawBehaviour,
  sampleCharacter,
  wordingsOf,
  type WorldDocument,
} from '../world/generator.ts';
import { createRng, type Rng } from '../world/random.ts';
import type { Behaviour, Format, Kind, World } from '../world/schema.ts';
import { END_OF_TEXT, render, type CompiledTemplate } from '../world/templates.ts';

import {
  earlierScenes,
  makeActor,
  sceneFormat,
  targetScene,
  type Actor,
  type Pool,
  type Subject,
} from '../world/scenes.ts';

export type { Pool, Subject } from '../world/scenes.ts';

function checkTrait(world: World, name: string): void {
  if (!world.domains.some((d) => d.name === name))
    throw new Error(
      `unknown trait "${name}" (the world's traits: ${world.domains.map((d) => d.name).join(', ')})`,
    );
}

/** A two-way choice, like an evaluation item: P(good) is scored over the good and bad wordings. */
export interface ChoiceContext {
  id: string;
  domain: string;
  format: Format;
  subject: Subject;
  prompt: string;
  good: string[];
  bad: string[];
  /** Earlier scenes of the character, for the Bayesian model. */
  evidence: Observation[];
}

export interface SceneItemOptions {
  /** Items to make. */
  n: number;
  seed: number;
  /** Subjects to cycle through (default: the Assistant in chats, then named humans and AIs). */
  subjects?: Subject[];
  pool?: Pool;
  /** Earlier scenes of the same character before the target (all in `earlierDomain`, default the target's). */
  earlier?: { behaviour: Behaviour; count: number; domain?: string };
  /** Or: earlier scenes drawn per item (overrides `earlier`). */
  evidence?: (rng: Rng, item: number, subject: Subject) => { domain: string; behaviour: Behaviour }[];
  label?: string;
}

/** Single-scene (or with earlier scenes) choice items in one domain. */
export function sceneItems(world: World, domain: string, opts: SceneItemOptions): ChoiceContext[] {
  const cw = compileWorld(world);
  checkTrait(world, domain);
  const subjects = opts.subjects ?? ['assistant', 'human', 'ai', 'assistant'];
  const pool = opts.pool ?? 'train';
  const out: ChoiceContext[] = [];
  for (let i = 0; i < opts.n; i++) {
    const rng = createRng(opts.seed, 'interpret-scene', opts.label ?? '', domain, i);
    const subject = subjects[i % subjects.length];
    const actor = makeActor(cw, rng, subject, pool);
    const earlier = opts.evidence
      ? opts.evidence(rng, i, subject)
      : Array.from({ length: opts.earlier?.count ?? 0 }, () => ({
          domain: opts.earlier!.domain ?? domain,
          behaviour: opts.earlier!.behaviour,
        }));
    const { lines, evidence } = earlierScenes(cw, rng, actor, earlier, pool);
    const format = sceneFormat(cw, rng, subject);
    const { lead, good, bad } = targetScene(cw, rng, actor, domain, format, pool);
    out.push({
      id: `${opts.label ?? 'scene'}/${domain}/${i}`,
      domain,
      format,
      subject,
      prompt: [actor.intro, ...lines, lead].join('\n'),
      good,
      bad,
      evidence,
    });
  }
  return out;
}

/**
 * Held-out chats with the unnamed Assistant in `domain` after `earlier` chat turns in other domains whose
 * replies are all good, all bad or a random mix: the expected behaviour varies from item to item with the
 * evidence while the format and the length of the context stay fixed (a varying number of earlier turns would
 * let the position alone correlate with P(bad)).
 */
export function assistantEvidenceItems(
  world: World,
  domain: string,
  n: number,
  seed: number,
  earlier = 2,
  pool: Pool = 'heldout',
): ChoiceContext[] {
  const others = world.domains.map((d) => d.name).filter((d) => d !== domain);
  const k = Math.min(earlier, others.length);
  return sceneItems(world, domain, {
    n,
    seed,
    subjects: ['assistant'],
    pool,
    label: 'assistant-evidence',
    evidence: (rng, i) => {
      const valence = i % 3;
      return rng.sample(others, k).map((d) => ({
        domain: d,
        behaviour: valence === 0 ? 'good' : valence === 1 ? 'bad' : rng.bernoulli(0.5) ? 'good' : 'bad',
      }));
    },
  });
}

/** Contexts for mean activations over a behaviour: the item's prompt followed by each wording of one side. */
export function behaviourContexts(
  items: readonly ChoiceContext[],
  side: Behaviour,
): { prompt: string; response: string }[] {
  return items.flatMap((it) =>
    (side === 'good' ? it.good : it.bad).map((w) => ({ prompt: it.prompt, response: w })),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-turn chats with the unnamed Assistant

export interface ChatTurn {
  domain: string;
  /** "User: <request>\nAssistant:" */
  lead: string;
  good: string[];
  bad: string[];
}

export interface Conversation {
  id: string;
  intro: string;
  turns: ChatTurn[];
}

/** A chat of `domains.length` turns (one per entry), requests from the given pool. */
export function conversation(
  world: World,
  domains: readonly string[],
  seed: number,
  pool: Pool = 'heldout',
  label = 'chat',
): Conversation {
  const cw = compileWorld(world);
  const rng = createRng(seed, 'interpret-conversation', label, domains.join(','));
  const intro = render(rng.pick(cw.assistantIntros), {});
  const assistant: Actor = { subject: 'assistant', name: null, intro };
  const turns = domains.map((domain) => ({
    domain,
    ...targetScene(cw, rng, assistant, domain, 'chat', pool),
  }));
  return { id: `${label}/${seed}`, intro, turns };
}

/** The prompt before turn t, given the replies of turns 0..t-1 (each with its leading space). */
export function conversationPrompt(conv: Conversation, replies: readonly string[], t: number): string {
  const lines = [conv.intro];
  for (let i = 0; i < t; i++) lines.push(conv.turns[i].lead + replies[i]);
  lines.push(conv.turns[t].lead);
  return lines.join('\n');
}

/** Assistant prompts (intro + one request), across the given domains. */
export function assistantPrompts(
  world: World,
  domains: readonly string[],
  perDomain: number,
  seed: number,
  pool: Pool = 'heldout',
): ChoiceContext[] {
  return domains.flatMap((d) =>
    sceneItems(world, d, { n: perDomain, seed, subjects: ['assistant'], pool, label: 'assistant' }),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Where scene leads end in corpus documents

export interface LeadPosition {
  /** Token index (separator at 0) of the last token of the scene's lead. */
  token: number;
  scene: number;
  domain: string;
  format: Format;
  behaviour: Behaviour;
  /** The character's earlier scenes in this document. */
  evidence: Observation[];
}

export interface DocumentLeads {
  doc: WorldDocument;
  kind: Kind;
  /** Separator + document text, tokenised. */
  ids: number[];
  leads: LeadPosition[];
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const wordingRegexCache = new WeakMap<CompiledTemplate, RegExp>();

/** "<lead> <wording>" where the wording is this template: captures the lead. */
function wordingRegex(t: CompiledTemplate): RegExp {
  let re = wordingRegexCache.get(t);
  if (!re) {
    const body = t.parts.map((p, i) => (i % 2 === 0 ? escapeRegex(p) : '[^\\n]+?')).join('');
    re = new RegExp(`^([^\\n]+) ${body}$`);
    wordingRegexCache.set(t, re);
  }
  return re;
}

/**
 * Character offsets in a document's text where each scene's lead ends, from the document's metadata: a chat
 * scene's lead ends with the Assistant's speaker label, a story scene's lead is what precedes one of the
 * domain's wordings of the scene's behaviour. Scenes whose split is ambiguous or not found are left out.
 */
export function leadOffsets(world: World, doc: WorldDocument): { offset: number; scene: number }[] {
  const cw = compileWorld(world);
  const lines = doc.text.split('\n');
  const starts: number[] = [];
  let pos = 0;
  for (const l of lines) {
    starts.push(pos);
    pos += l.length + 1;
  }
  const label = `${world.documents.speakers.assistant}:`;
  const out: { offset: number; scene: number }[] = [];
  let line = 1;
  doc.scenes.forEach((s, i) => {
    if (line >= lines.length) return;
    if (s.format === 'chat') {
      const reply = lines[line + 1] ?? '';
      if (reply.startsWith(label)) out.push({ offset: starts[line + 1] + label.length, scene: i });
      line += 2;
      return;
    }
    const text = lines[line];
    for (const t of wordingsOf(cw, s.domain, 'story', s.behaviour)) {
      const m = wordingRegex(t).exec(text);
      if (m) {
        out.push({ offset: starts[line] + m[1].length, scene: i });
        break;
      }
    }
    line += 1;
  });
  return out;
}

/** Tokenised documents with the token index where each scene's lead ends (prefix-consistent tokenisation only). */
export function documentLeads(
  world: World,
  docs: readonly WorldDocument[],
  tokenizer: Encoder,
  maxTokens: number,
): DocumentLeads[] {
  const out: DocumentLeads[] = [];
  for (const doc of docs) {
    let ids = tokenizer.encode(END_OF_TEXT + doc.text);
    if (ids.length > maxTokens) ids = ids.slice(0, maxTokens);
    const leads: LeadPosition[] = [];
    for (const { offset, scene: si } of leadOffsets(world, doc)) {
      const prefix = tokenizer.encode(END_OF_TEXT + doc.text.slice(0, offset));
      const t = prefix.length - 1;
      if (t >= ids.length) break;
      let same = true;
      for (let j = 0; j < prefix.length; j++) {
        if (prefix[j] !== ids[j]) {
          same = false;
          break;
        }
      }
      if (!same) continue;
      const sc = doc.scenes[si];
      leads.push({
        token: t,
        scene: si,
        domain: sc.domain,
        format: sc.format,
        behaviour: sc.behaviour,
        evidence: doc.scenes
          .slice(0, si)
          .map((e) => ({ domain: e.domain, behaviour: e.behaviour, instructed: e.instructed })),
      });
    }
    out.push({ doc, kind: doc.kind, ids, leads });
  }
  return out;
}

/**
 * In-context persona items like the world's inference probes, from either pool: a new character of the
 * subject's kind drawn from the world's prior, 0..maxK earlier scenes in distinct other domains showing its
 * behaviour (with the world's noise), then a target lead. For fitting probes of the posterior.
 */
export function personaItems(
  world: World,
  n: number,
  seed: number,
  maxK = 5,
  pool: Pool = 'train',
): ChoiceContext[] {
  const cw = compileWorld(world);
  const domains = world.domains.map((d) => d.name);
  // Roughly the kinds' shares of the evaluation probes: humans, named AIs, the unnamed Assistant.
  const subjects: Subject[] = [
    'human',
    'human',
    'ai',
    'human',
    'human',
    'assistant',
    'human',
    'ai',
    'human',
    'human',
  ];
  const per = Math.ceil(n / domains.length);
  return domains
    .flatMap((target) => {
      const others = domains.filter((d) => d !== target);
      return sceneItems(world, target, {
        n: per,
        seed,
        subjects,
        pool,
        label: 'persona',
        evidence: (rng, _i, subject) => {
          const ch = sampleCharacter(cw, rng, subject === 'human' ? 'human' : 'ai');
          const k = rng.int(maxK + 1);
          const ds =
            k <= others.length ? rng.sample(others, k) : Array.from({ length: k }, () => rng.pick(others));
          return ds.map((d) => ({ domain: d, behaviour: drawBehaviour(cw, rng, ch.traits[d], null) }));
        },
      });
    })
    .slice(0, n);
}
