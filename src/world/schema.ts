// The world file: its YAML schema, its validation, and the normalised World object every other module reads.
//
// Validation happens in two passes. zod checks the shape (types, ranges, unknown keys: a typo such as
// `behavior_flip` is an error rather than a silently ignored field). A semantic pass then checks what a schema
// cannot: archetypes that name unknown traits, duplicate names, held-out sets that leave nothing to train on,
// placeholders, and the phrase lint. Every problem is reported with its YAML path (`traits[2].domain.chat.good[1]`)
// and, when the text came from a file, its line. All problems of a pass are collected before throwing (shape
// problems first; the semantic pass runs once the shape is right), so a user fixes a file in few rounds.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import YAML, { LineCounter, isNode } from 'yaml';
import { END_OF_TEXT, capitalise, placeholdersOf, wordsOf } from './templates.ts';
import { createRng, hashString } from './random.ts';
import { lintHeldoutWords, lintSharedPhrases, type LintIssue } from './lint.ts';
import type { Archetype, Domain, InstructedGroup, LintLevel, World, WorldIssue } from './types.ts';

export type {
  Archetype,
  Behaviour,
  Domain,
  Format,
  InstructedGroup,
  Kind,
  LintLevel,
  World,
  WorldIssue,
} from './types.ts';

// ---------------------------------------------------------------------------------------------------------------
// Errors

export class WorldError extends Error {
  readonly issues: WorldIssue[];
  readonly source: string;
  constructor(source: string, issues: WorldIssue[]) {
    const lines = issues.map((i) => {
      const where = i.path === '' ? '(root)' : i.path;
      return `  - ${where}${i.line !== undefined ? ` (line ${i.line})` : ''}: ${i.message}`;
    });
    super(
      `invalid world ${source}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${lines.join('\n')}`,
    );
    this.name = 'WorldError';
    this.issues = issues;
    this.source = source;
  }
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The YAML schema (snake_case, as written by people)

/**
 * Bounds on the counts that set how much work a world makes: the default world has 4-8 scenes per document and 870
 * names; without a bound, `scenes.max: 1000000` or 1,000 syllables of 4 per name would hang generation or loading.
 */
export const MAX_SCENES = 256;
export const MAX_NAMES = 100_000;

const probability = z
  .number({ error: 'must be a number (a probability between 0 and 1)' })
  .min(0, 'must be a probability between 0 and 1')
  .max(1, 'must be a probability between 0 and 1');
const text = z.string({ error: 'must be a string' }).min(1, 'must not be empty');
const textList = (what: string) =>
  z.array(text, { error: 'must be a list of strings' }).min(1, `must have at least one ${what}`);
const identifier = z
  .string({ error: 'must be a string' })
  .regex(
    /^[a-z][a-z0-9_]*$/,
    'must be a lower-case identifier (letters, digits, underscores; starting with a letter)',
  );
const behaviour = z.enum(['good', 'bad'], { error: "must be 'good' or 'bad'" });

const instructedSchema = z.strictObject({
  name: identifier,
  asks: behaviour,
  compliance: probability.optional(),
  in_corpus: z.boolean({ error: 'must be true or false' }).optional(),
  description: z.string().optional(),
  story: textList('story instruction line'),
  chat: textList('chat instruction line'),
});

const traitSchema = z.strictObject({
  name: identifier,
  description: z.string().optional(),
  labels: z.strictObject({ good: text, bad: text }),
  domain: z.strictObject({
    story: z.strictObject({
      contexts: textList('story context'),
      good: textList('good wording'),
      bad: textList('bad wording'),
    }),
    chat: z.strictObject({
      requests: textList('chat request'),
      good: textList('good reply'),
      bad: textList('bad reply'),
    }),
    instructed: z.array(instructedSchema, { error: 'must be a list of instructed groups' }).optional(),
  }),
});

const traitValue = z.union([behaviour, probability], {
  error: "must be 'good', 'bad' or a probability between 0 and 1 (P(good) before trait-flip noise)",
});

const archetypeSchema = z.strictObject({
  name: identifier,
  kind: z.enum(['human', 'ai'], { error: "must be 'human' or 'ai'" }),
  weight: z.number({ error: 'must be a number' }).min(0, 'must be >= 0'),
  description: z.string().optional(),
  traits: z.record(z.string(), traitValue, { error: 'must be a map from trait name to value' }),
});

const kindSchema = z.strictObject({
  share: probability,
  intros: textList('intro line'),
});

const yamlSchema = z.strictObject({
  name: text,
  description: z.string().optional(),
  traits: z.array(traitSchema, { error: 'must be a list of traits' }).min(1, 'must have at least one trait'),
  archetypes: z
    .array(archetypeSchema, { error: 'must be a list of archetypes' })
    .min(1, 'must have at least one archetype'),
  noise: z.strictObject({
    trait_flip: probability,
    behaviour_flip: probability,
    instructed_compliance: probability,
  }),
  names: z
    .strictObject({
      syllables: z
        .array(z.string().regex(/^[a-z]+$/, 'must be lower-case letters'), {
          error: 'must be a list of syllables',
        })
        .min(1)
        .optional(),
      syllables_per_name: z.number().int().min(1).max(4).optional(),
      allow_repeats: z.boolean().optional(),
      list: z
        .array(z.string().regex(/^[A-Z][a-z]+$/, 'must be a capitalised word'), {
          error: 'must be a list of names',
        })
        .min(1)
        .optional(),
      heldout: z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be at least 1'),
    })
    .refine(
      (n) => (n.syllables === undefined) !== (n.list === undefined),
      'give exactly one of `syllables` or `list`',
    ),
  heldout: z.strictObject({
    story_contexts: z.number().int().min(1, 'must be at least 1 (evaluation needs held-out contexts)'),
    chat_requests: z.number().int().min(1, 'must be at least 1 (evaluation needs held-out requests)'),
  }),
  slots: z.record(identifier, textList('slot value')).optional(),
  documents: z.strictObject({
    scenes: z.strictObject({
      min: z.number().int().min(1),
      max: z
        .number()
        .int()
        .min(1)
        .max(
          MAX_SCENES,
          `must be at most ${MAX_SCENES} (scenes per document; a document is generated whole)`,
        ),
    }),
    kinds: z.strictObject({
      human: kindSchema.optional(),
      ai: kindSchema.extend({
        chat_share: probability,
        anonymous_share: probability.optional(),
      }),
    }),
    assistant_intros: textList('assistant intro line'),
    instructed_share: probability,
    speakers: z.strictObject({ user: text, assistant: text }).optional(),
  }),
  ai_mix_presets: z.record(identifier, z.record(z.string(), z.number().min(0, 'must be >= 0'))).optional(),
  datasets: z
    .strictObject({
      trained_domains: z.array(z.string()).min(1, 'must name at least one domain'),
      narrow: z
        .strictObject({ domain: z.string(), inoculation: z.string(), educational: z.string() })
        .optional(),
    })
    .optional(),
  lint: z
    .strictObject({
      shared_phrases: z.enum(['error', 'warn', 'off']).optional(),
      heldout_words: z.enum(['error', 'warn', 'off']).optional(),
      ngram: z.number().int().min(2).max(8).optional(),
    })
    .optional(),
});

type YamlWorld = z.infer<typeof yamlSchema>;

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** The built-in world, resolved from this module's location so that it works from any working directory. */
export function defaultWorldPath(): string {
  return fileURLToPath(new URL('../../worlds/default.yaml', import.meta.url));
}

export function loadWorld(path: string): World {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    throw new WorldError(path, [{ path: '', message: `cannot read file: ${(err as Error).message}` }]);
  }
  return parseWorld(raw, path);
}

export function loadDefaultWorld(): World {
  return loadWorld(defaultWorldPath());
}

/** Parse and validate world YAML text. `source` names the text in messages. */
export function parseWorld(yamlText: string, source = '<world>'): World {
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(yamlText, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new WorldError(
      source,
      doc.errors.map((e) => ({
        path: '',
        message: `YAML syntax: ${e.message.split('\n')[0]}`,
        line: e.linePos?.[0]?.line,
      })),
    );
  }
  const locate = (path: readonly PropertyKey[]): number | undefined => {
    // Walk up the path until a node exists (a missing field is reported at its parent's line).
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown as Iterable<unknown>, true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  let data: unknown;
  try {
    // The yaml library refuses alias expansion beyond its limit (a "billion laughs" file) while converting.
    data = doc.toJS();
  } catch (err) {
    throw new WorldError(source, [{ path: '', message: `YAML: ${(err as Error).message}` }]);
  }
  try {
    return validateWorld(data, source);
  } catch (err) {
    if (err instanceof WorldError) {
      throw new WorldError(
        source,
        err.issues.map((i) => ({ ...i, line: i.line ?? locate(parsePath(i.path)) })),
      );
    }
    throw err;
  }
}

/** Inverse of formatPath, for line lookup. */
function parsePath(path: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return out;
}

function zodIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && (issue as { input?: unknown }).input === undefined) {
    return `missing required field (expected ${issue.expected})`;
  }
  if (issue.code === 'unrecognized_keys')
    return `unknown field${issue.keys.length > 1 ? 's' : ''}: ${issue.keys.join(', ')}`;
  return issue.message;
}

/** Validate an already-parsed object (e.g. from JSON). Throws WorldError listing every problem. */
export function validateWorld(data: unknown, source = '<world>'): World {
  const parsed = yamlSchema.safeParse(data, { reportInput: true });
  if (!parsed.success) {
    throw new WorldError(
      source,
      parsed.error.issues.map((issue) => ({ path: formatPath(issue.path), message: zodIssueMessage(issue) })),
    );
  }
  return normalise(parsed.data, source);
}

// ---------------------------------------------------------------------------------------------------------------
// Semantic checks and normalisation

const RESERVED_PLACEHOLDERS = new Set(['name', 'other']);

function normalise(y: YamlWorld, source: string): World {
  const issues: WorldIssue[] = [];
  const err = (path: string, message: string) => issues.push({ path, message });

  // Traits / domains.
  const traitIndex = new Map<string, number>();
  y.traits.forEach((t, i) => {
    if (traitIndex.has(t.name))
      err(`traits[${i}].name`, `duplicate trait name '${t.name}' (also traits[${traitIndex.get(t.name)}])`);
    else traitIndex.set(t.name, i);
  });
  const traitNames = [...traitIndex.keys()];

  const slotNames = new Set(Object.keys(y.slots ?? {}));
  for (const s of slotNames)
    if (RESERVED_PLACEHOLDERS.has(s))
      err(`slots.${s}`, `'${s}' is a reserved placeholder and cannot be a slot`);

  // Template checks: known placeholders, no end-of-text marker, one line, and where {name} is (not) allowed.
  const checkTemplate = (path: string, s: string, opts: { name: 'required' | 'forbidden' | 'allowed' }) => {
    if (s.includes(END_OF_TEXT)) err(path, `must not contain the document separator ${END_OF_TEXT}`);
    if (/[\r\n]/.test(s)) err(path, 'must be a single line (the document grammar adds line breaks)');
    if (/[{}]/.test(s.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, '')))
      err(path, 'has a stray brace; placeholders look like {name}');
    const ph = placeholdersOf(s);
    for (const p of ph) {
      if (!RESERVED_PLACEHOLDERS.has(p) && !slotNames.has(p)) {
        err(
          path,
          `unknown placeholder {${p}} (known: {name}, {other}${[...slotNames].map((x) => `, {${x}}`).join('')})`,
        );
      }
    }
    if (opts.name === 'required' && !ph.includes('name')) err(path, 'must mention the character as {name}');
    if (opts.name === 'forbidden' && ph.includes('name')) {
      err(
        path,
        'must not use {name}: chat text and assistant intros are also used for the unnamed Assistant',
      );
    }
  };
  const checkList = (path: string, list: string[], opts: { name: 'required' | 'forbidden' | 'allowed' }) => {
    const seen = new Map<string, number>();
    list.forEach((s, i) => {
      checkTemplate(`${path}[${i}]`, s, opts);
      if (seen.has(s)) err(`${path}[${i}]`, `duplicate entry (same as ${path}[${seen.get(s)}])`);
      else seen.set(s, i);
    });
  };

  const domains: Domain[] = y.traits.map((t, i) => {
    const p = `traits[${i}].domain`;
    checkList(`${p}.story.contexts`, t.domain.story.contexts, { name: 'allowed' });
    checkList(`${p}.story.good`, t.domain.story.good, { name: 'allowed' });
    checkList(`${p}.story.bad`, t.domain.story.bad, { name: 'allowed' });
    checkList(`${p}.chat.requests`, t.domain.chat.requests, { name: 'forbidden' });
    checkList(`${p}.chat.good`, t.domain.chat.good, { name: 'forbidden' });
    checkList(`${p}.chat.bad`, t.domain.chat.bad, { name: 'forbidden' });
    const groups = t.domain.instructed ?? [];
    const groupNames = new Map<string, number>();
    groups.forEach((g, j) => {
      if (groupNames.has(g.name)) err(`${p}.instructed[${j}].name`, `duplicate instructed group '${g.name}'`);
      else groupNames.set(g.name, j);
      checkList(`${p}.instructed[${j}].story`, g.story, { name: 'allowed' });
      checkList(`${p}.instructed[${j}].chat`, g.chat, { name: 'forbidden' });
    });
    const hs = y.heldout.story_contexts;
    const hc = y.heldout.chat_requests;
    if (hs >= t.domain.story.contexts.length) {
      err(
        `${p}.story.contexts`,
        `has ${t.domain.story.contexts.length} contexts but heldout.story_contexts is ${hs}: at least one must remain for training`,
      );
    }
    if (hc >= t.domain.chat.requests.length) {
      err(
        `${p}.chat.requests`,
        `has ${t.domain.chat.requests.length} requests but heldout.chat_requests is ${hc}: at least one must remain for training`,
      );
    }
    return {
      name: t.name,
      description: t.description,
      labels: t.labels,
      story: {
        contexts: t.domain.story.contexts,
        trainContexts: Math.max(0, t.domain.story.contexts.length - hs),
        good: t.domain.story.good,
        bad: t.domain.story.bad,
      },
      chat: {
        requests: t.domain.chat.requests,
        trainRequests: Math.max(0, t.domain.chat.requests.length - hc),
        good: t.domain.chat.good,
        bad: t.domain.chat.bad,
      },
      instructed: groups.map((g) => ({
        name: g.name,
        asks: g.asks,
        compliance: g.compliance ?? y.noise.instructed_compliance,
        inCorpus: g.in_corpus ?? true,
        description: g.description,
        story: g.story,
        chat: g.chat,
      })),
    };
  });

  // Archetypes.
  const archetypeNames = new Map<string, number>();
  const archetypes: Archetype[] = y.archetypes.map((a, i) => {
    if (archetypeNames.has(a.name))
      err(
        `archetypes[${i}].name`,
        `duplicate archetype name '${a.name}' (also archetypes[${archetypeNames.get(a.name)}])`,
      );
    else archetypeNames.set(a.name, i);
    const traits: Record<string, number> = {};
    for (const [k, v] of Object.entries(a.traits)) {
      if (!traitIndex.has(k)) {
        err(`archetypes[${i}].traits.${k}`, `unknown trait '${k}' (known: ${traitNames.join(', ')})`);
        continue;
      }
      traits[k] = v === 'good' ? 1 : v === 'bad' ? 0 : v;
    }
    for (const t of traitNames)
      if (!(t in a.traits))
        err(`archetypes[${i}].traits`, `missing trait '${t}' (every archetype gives every trait)`);
    return { name: a.name, kind: a.kind, weight: a.weight, description: a.description, traits };
  });

  // Kinds and the document grammar.
  const docs = y.documents;
  const humanShare = docs.kinds.human?.share ?? 0;
  const shareSum = humanShare + docs.kinds.ai.share;
  if (Math.abs(shareSum - 1) > 1e-6)
    err('documents.kinds', `the kinds' shares must sum to 1 (they sum to ${+shareSum.toFixed(6)})`);
  for (const kind of ['human', 'ai'] as const) {
    const share = kind === 'human' ? humanShare : docs.kinds.ai.share;
    const total = archetypes.filter((a) => a.kind === kind).reduce((s, a) => s + a.weight, 0);
    if (kind === 'ai' && !(total > 0))
      err(
        'archetypes',
        "needs at least one AI archetype with positive weight: the Assistant's prior is the AI archetype prior",
      );
    else if (share > 0 && !(total > 0))
      err(
        'archetypes',
        `documents.kinds.${kind}.share is ${share} but no ${kind} archetype has positive weight`,
      );
  }
  if (docs.scenes.min > docs.scenes.max)
    err('documents.scenes', `min (${docs.scenes.min}) is larger than max (${docs.scenes.max})`);
  if (docs.kinds.human)
    checkList('documents.kinds.human.intros', docs.kinds.human.intros, { name: 'required' });
  checkList('documents.kinds.ai.intros', docs.kinds.ai.intros, { name: 'required' });
  checkList('documents.assistant_intros', docs.assistant_intros, { name: 'forbidden' });
  const speakers = docs.speakers ?? { user: 'User', assistant: 'Assistant' };
  if (speakers.user === speakers.assistant)
    err('documents.speakers', 'user and assistant labels must differ');

  // Slots.
  const slots: Record<string, string[]> = {};
  for (const [k, vals] of Object.entries(y.slots ?? {})) {
    vals.forEach((v, i) => {
      if (/[{}\r\n]/.test(v) || v.includes(END_OF_TEXT))
        err(`slots.${k}[${i}]`, 'must be plain one-line text without braces');
    });
    slots[k] = vals;
  }

  // Names. Words used anywhere in the world's texts cannot be names, or "Stone" the character and "stone" the
  // object would be one token sequence with two meanings.
  const vocabulary = new Set<string>();
  const addWords = (s: string) => {
    for (const w of wordsOf(s.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, ' '))) vocabulary.add(w);
  };
  forEachText(y, addWords);
  for (const s of [speakers.user, speakers.assistant]) vocabulary.add(s.toLowerCase());
  const names = buildNames(y.names, vocabulary, err);

  // AI mix presets.
  const aiMixPresets: Record<string, Record<string, number>> = {};
  for (const [preset, mix] of Object.entries(y.ai_mix_presets ?? {})) {
    for (const k of Object.keys(mix)) {
      const a = archetypes.find((x) => x.name === k);
      if (!a) err(`ai_mix_presets.${preset}.${k}`, `unknown archetype '${k}'`);
      else if (a.kind !== 'ai')
        err(
          `ai_mix_presets.${preset}.${k}`,
          `'${k}' is a ${a.kind} archetype; an AI mix may only re-weight AI archetypes`,
        );
    }
    aiMixPresets[preset] = mix;
  }

  // Dataset defaults.
  const trainedDomains = y.datasets?.trained_domains ?? traitNames.slice(0, Math.ceil(traitNames.length / 2));
  trainedDomains.forEach((d, i) => {
    if (!traitIndex.has(d))
      err(`datasets.trained_domains[${i}]`, `unknown domain '${d}' (known: ${traitNames.join(', ')})`);
  });
  if (new Set(trainedDomains).size !== trainedDomains.length)
    err('datasets.trained_domains', 'lists a domain twice');
  let narrow: World['datasets']['narrow'] = null;
  if (y.datasets?.narrow) {
    const n = y.datasets.narrow;
    const di = traitIndex.get(n.domain);
    if (di === undefined) err('datasets.narrow.domain', `unknown domain '${n.domain}'`);
    else {
      for (const key of ['inoculation', 'educational'] as const) {
        const g = domains[di].instructed.find((x) => x.name === n[key]);
        if (!g) err(`datasets.narrow.${key}`, `domain '${n.domain}' has no instructed group '${n[key]}'`);
        else if (g.asks !== 'bad')
          err(
            `datasets.narrow.${key}`,
            `instructed group '${n[key]}' must ask for 'bad' behaviour (it asks for '${g.asks}')`,
          );
      }
    }
    narrow = { domain: n.domain, inoculation: n.inoculation, educational: n.educational };
  }

  const lint = {
    sharedPhrases: y.lint?.shared_phrases ?? 'error',
    heldoutWords: y.lint?.heldout_words ?? 'warn',
    ngram: y.lint?.ngram ?? 3,
  } as const;

  if (issues.length > 0) throw new WorldError(source, issues);

  const world: World = {
    name: y.name,
    description: y.description,
    source,
    domains,
    archetypes,
    noise: {
      traitFlip: y.noise.trait_flip,
      behaviourFlip: y.noise.behaviour_flip,
      instructedCompliance: y.noise.instructed_compliance,
    },
    names,
    slots,
    documents: {
      scenes: { ...docs.scenes },
      kinds: {
        human: { share: humanShare, intros: docs.kinds.human?.intros ?? [] },
        ai: {
          share: docs.kinds.ai.share,
          intros: docs.kinds.ai.intros,
          chatShare: docs.kinds.ai.chat_share,
          anonymousShare: docs.kinds.ai.anonymous_share ?? 0,
        },
      },
      assistantIntros: docs.assistant_intros,
      instructedShare: docs.instructed_share,
      speakers,
    },
    aiMixPresets,
    datasets: { trainedDomains, narrow },
    lint: { ...lint },
    warnings: [],
  };

  const lints: Array<[LintLevel, () => LintIssue[]]> = [
    [lint.sharedPhrases, () => lintSharedPhrases(world, lint.ngram)],
    [lint.heldoutWords, () => lintHeldoutWords(world)],
  ];
  for (const [level, run] of lints) {
    if (level === 'off') continue;
    const lintIssues = run().map((l) => ({ path: l.path, message: l.message }));
    if (level === 'error' && lintIssues.length > 0) throw new WorldError(source, lintIssues);
    world.warnings.push(...lintIssues);
  }
  return world;
}

/** Visit every text of the YAML world that ends up in documents (for the vocabulary and name collisions). */
function forEachText(y: YamlWorld, f: (s: string) => void): void {
  for (const t of y.traits) {
    const d = t.domain;
    [
      ...d.story.contexts,
      ...d.story.good,
      ...d.story.bad,
      ...d.chat.requests,
      ...d.chat.good,
      ...d.chat.bad,
    ].forEach(f);
    for (const g of d.instructed ?? []) [...g.story, ...g.chat].forEach(f);
  }
  [
    ...(y.documents.kinds.human?.intros ?? []),
    ...y.documents.kinds.ai.intros,
    ...y.documents.assistant_intros,
  ].forEach(f);
  for (const vals of Object.values(y.slots ?? {})) vals.forEach(f);
}

function buildNames(
  n: YamlWorld['names'],
  vocabulary: Set<string>,
  err: (path: string, message: string) => void,
): World['names'] {
  let all: string[];
  if (n.list) {
    const seen = new Map<string, number>();
    n.list.forEach((name, i) => {
      if (seen.has(name))
        err(`names.list[${i}]`, `duplicate name '${name}' (same as names.list[${seen.get(name)}])`);
      else seen.set(name, i);
      if (vocabulary.has(name.toLowerCase()))
        err(`names.list[${i}]`, `name '${name}' is also a word of the world's texts`);
    });
    all = [...seen.keys()];
  } else {
    const syl = n.syllables ?? [];
    const seen = new Map<string, number>();
    syl.forEach((s, i) => {
      if (seen.has(s))
        err(`names.syllables[${i}]`, `duplicate syllable '${s}' (same as names.syllables[${seen.get(s)}])`);
      else seen.set(s, i);
    });
    const k = n.syllables_per_name ?? 2;
    const allowRepeats = n.allow_repeats ?? false;
    const produced = new Map<string, string>();
    let collisions = 0;
    const rec = (prefix: string[], used: Set<number>) => {
      if (prefix.length === k) {
        const name = capitalise(prefix.join(''));
        const parts = prefix.join('+');
        if (produced.has(name)) {
          // Two syllable sequences that spell the same name ('ab'+'a' and 'a'+'ba') would make a name ambiguous.
          if (collisions++ < 3)
            err(
              'names.syllables',
              `syllables ${produced.get(name)} and ${parts} both spell the name '${name}'`,
            );
          return;
        }
        produced.set(name, parts);
        return;
      }
      for (let i = 0; i < syl.length; i++) {
        if (!allowRepeats && used.has(i)) continue;
        used.add(i);
        prefix.push(syl[i]);
        rec(prefix, used);
        prefix.pop();
        used.delete(i);
      }
    };
    // Count before enumerating: the names are every sequence of k syllables.
    let count = 1;
    for (let j = 0; j < k; j++) count *= allowRepeats ? syl.length : Math.max(0, syl.length - j);
    if (count > MAX_NAMES) {
      err(
        'names.syllables',
        `${syl.length} syllables, ${k} per name, make ${count} names; at most ${MAX_NAMES} (use fewer syllables)`,
      );
      return { train: [], heldout: [] };
    }
    if (seen.size === syl.length) rec([], new Set());
    // Names that spell a word of the texts are dropped silently: a syllable author cannot foresee them all.
    all = [...produced.keys()].filter((name) => !vocabulary.has(name.toLowerCase()));
  }
  if (n.heldout >= all.length - 1) {
    err(
      'names.heldout',
      `${n.heldout} held-out names leave ${Math.max(0, all.length - n.heldout)} of ${all.length} names for training; at least 2 are needed`,
    );
    return { train: [], heldout: [] };
  }
  // Held-out names are a property of the world, not of a corpus seed: every corpus and every evaluation set made
  // from this world agree on them. The shuffle is seeded by the name list itself.
  const sorted = all.slice().sort();
  const rng = createRng(hashString(sorted.join(',')), 'heldout-names');
  const shuffled = rng.shuffle(sorted.slice());
  return { heldout: shuffled.slice(0, n.heldout).sort(), train: shuffled.slice(n.heldout).sort() };
}

/** Distinct words of every text of a world (without names): the controlled vocabulary. */
export function worldVocabulary(world: World): string[] {
  const words = new Set<string>();
  const add = (s: string) => {
    for (const w of wordsOf(s.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, ' '))) words.add(w);
  };
  for (const d of world.domains) {
    [
      ...d.story.contexts,
      ...d.story.good,
      ...d.story.bad,
      ...d.chat.requests,
      ...d.chat.good,
      ...d.chat.bad,
    ].forEach(add);
    for (const g of d.instructed) [...g.story, ...g.chat].forEach(add);
  }
  const k = world.documents.kinds;
  [
    ...k.human.intros,
    ...k.ai.intros,
    ...world.documents.assistantIntros,
    world.documents.speakers.user,
    world.documents.speakers.assistant,
  ].forEach(add);
  for (const vals of Object.values(world.slots)) vals.forEach(add);
  return [...words].sort();
}

/**
 * A stable content hash of a normalised world (sha256, hex): the same for the same content whatever the file's
 * path, so pipelines can cache stages by it. The AI mix is part of the content (it changes archetype weights).
 */
export function worldHash(world: World): string {
  const { source: _source, warnings: _warnings, ...content } = world;
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

/** Look a domain up by name, with a clear error. */
export function getDomain(world: World, name: string): Domain {
  const d = world.domains.find((x) => x.name === name);
  if (!d)
    throw new Error(
      `unknown domain '${name}' in world '${world.name}' (known: ${world.domains.map((x) => x.name).join(', ')})`,
    );
  return d;
}

/** Look an instructed group up; `true` means the domain's first group. */
export function getInstructedGroup(world: World, domain: string, group: string | true): InstructedGroup {
  const d = getDomain(world, domain);
  const g = group === true ? d.instructed[0] : d.instructed.find((x) => x.name === group);
  if (!g) {
    throw new Error(
      `domain '${domain}' has no instructed group${group === true ? 's' : ` '${group}'`} (has: ${d.instructed.map((x) => x.name).join(', ') || 'none'})`,
    );
  }
  return g;
}
