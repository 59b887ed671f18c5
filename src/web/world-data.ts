/**
 * The world page's data: a world's archetypes and trait bundles, its package deals (trait correlations: the world's
 * exact ones beside those counted in a generated corpus), sample documents with their hidden character, and the Bayes
 * calculator: the exact posterior for a chosen set of scenes, with the prompt a model reads for the same scenes (built
 * from the world's scene machinery, as the evaluation probes are).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import {
  bindScene,
  compileWorld,
  sceneContinuation,
  sceneLead,
  type CompiledWorld,
  type SceneSpec,
} from '../world/generator.ts';
import {
  createRng,
  expectedWorldStats,
  generateDocuments,
  posterior,
  StatsBuilder,
  type CorpusStats,
  type Observation,
  type World,
  type WorldDocument,
} from '../world/index.ts';
import type { Rng } from '../world/random.ts';
import { makeActor, plainScene, sceneFormat, targetScene, type Subject } from '../world/scenes.ts';
import type { BayesAnswer, CalculatorScene, SampleDocument, WorldView } from './api-types.ts';
import { badRequest } from './errors.ts';

/** Documents generated for a world that has no run corpus to count (enough for correlations to +-0.03). */
const GENERATED_DOCUMENTS = 3000;

/** At most this many scenes in the calculator: enough to saturate every posterior of the built-in world. */
export const MAX_CALCULATOR_SCENES = 24;

const generatedStats = new WeakMap<World, CorpusStats>();

/** Corpus statistics for a world without a run: counted over documents generated with seed 1. */
function statsOfGenerated(world: World): CorpusStats {
  let s = generatedStats.get(world);
  if (!s) {
    const b = new StatsBuilder(world);
    for (const d of generateDocuments(world, { seed: 1, documents: GENERATED_DOCUMENTS })) b.add(d);
    s = b.finish();
    generatedStats.set(world, s);
  }
  return s;
}

/**
 * The world view; `corpusStats` is a run's own corpus statistics (its first seed's corpus/data/stats.json) when the
 * page looks at a run, else the observed side is counted over freshly generated documents.
 */
export function worldView(
  world: World,
  corpusStats: { stats: CorpusStats; source: string } | null,
): WorldView {
  const expected = expectedWorldStats(world);
  const observed = corpusStats ?? {
    stats: statsOfGenerated(world),
    source: `${GENERATED_DOCUMENTS} documents generated from the world (seed 1)`,
  };
  const domains = world.domains.map((d) => d.name);
  // A run's statistics list its domains in its own order; map them onto the world's.
  const oi = domains.map((d) => observed.stats.correlations.domains.indexOf(d));
  const obs = oi.every((i) => i >= 0)
    ? oi.map((i) => oi.map((j) => observed.stats.correlations.observed[i][j]))
    : null;
  return {
    name: world.name,
    description: world.description ?? null,
    domains: world.domains.map((d) => ({
      name: d.name,
      description: d.description ?? null,
      good: d.labels.good,
      bad: d.labels.bad,
      instructed: d.instructed.map((g) => g.name),
    })),
    archetypes: world.archetypes.map((a) => ({
      name: a.name,
      kind: a.kind,
      share: expected.archetypeShare[a.name],
      description: a.description ?? null,
      traits: { ...a.traits },
    })),
    correlations: {
      domains,
      expected: expected.correlations,
      observed: obs,
      documents: obs ? observed.stats.documents : null,
    },
    source: observed.source,
    noise: { traitFlip: world.noise.traitFlip, behaviourFlip: world.noise.behaviourFlip },
  };
}

/** A run seed's corpus statistics, or null when its corpus stage has not written them. */
export function runCorpusStats(seedDir: string): { stats: CorpusStats; source: string } | null {
  const file = path.join(seedDir, 'corpus', 'data', 'stats.json');
  if (!fs.existsSync(file)) return null;
  try {
    return {
      stats: JSON.parse(fs.readFileSync(file, 'utf8')) as CorpusStats,
      source: `the pre-training corpus of ${path.basename(seedDir)}`,
    };
  } catch {
    return null;
  }
}

function sample(doc: WorldDocument | (Omit<WorldDocument, 'tokens'> & { tokens?: unknown })): SampleDocument {
  return {
    id: doc.id,
    text: doc.text,
    behaviourSpans: doc.behaviourSpans,
    hidden: {
      name: doc.name,
      kind: doc.kind,
      archetype: doc.archetype,
      traits: { ...doc.traits },
      scenes: doc.scenes.map((s) => ({
        domain: s.domain,
        behaviour: s.behaviour,
        instructed: s.instructed,
        format: s.format,
      })),
    },
  };
}

/** Documents `offset`.. of a run's corpus (its held-out split first: short, and never trained on). */
export async function runDocuments(
  seedDir: string,
  offset: number,
  count: number,
): Promise<SampleDocument[] | null> {
  const data = path.join(seedDir, 'corpus', 'data');
  const out: SampleDocument[] = [];
  let index = 0;
  for (const split of ['val.jsonl', 'train.jsonl']) {
    const file = path.join(data, split);
    if (!fs.existsSync(file)) continue;
    const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line.trim()) continue;
        if (index++ < offset) continue;
        out.push(sample(JSON.parse(line) as WorldDocument));
        if (out.length >= count) return out;
      }
    } finally {
      lines.close();
    }
  }
  return index === 0 ? null : out;
}

/** Documents generated from a world (seed 1), for a world page without a run. */
export function generatedDocuments(world: World, offset: number, count: number): SampleDocument[] {
  const out: SampleDocument[] = [];
  let i = 0;
  for (const d of generateDocuments(world, { seed: 1, documents: offset + count }))
    if (i++ >= offset) out.push(sample(d));
  return out;
}

const KIND: Record<Subject, 'human' | 'ai'> = { assistant: 'ai', ai: 'ai', human: 'human' };

function checkScenes(world: World, scenes: readonly CalculatorScene[]): void {
  if (scenes.length > MAX_CALCULATOR_SCENES)
    throw badRequest(`at most ${MAX_CALCULATOR_SCENES} scenes, got ${scenes.length}`, 'scenes');
  scenes.forEach((s, i) => {
    const d = world.domains.find((x) => x.name === s.domain);
    if (!d)
      throw badRequest(
        `scenes[${i}].domain: unknown domain "${s.domain}" (the world's: ${world.domains.map((x) => x.name).join(', ')})`,
        `scenes[${i}].domain`,
      );
    if (s.instructed !== null && !d.instructed.some((g) => g.name === s.instructed))
      throw badRequest(
        `scenes[${i}].instructed: domain "${s.domain}" has no instructed group "${s.instructed}"${d.instructed.length ? ` (its groups: ${d.instructed.map((g) => g.name).join(', ')})` : ' (it has none)'}`,
        `scenes[${i}].instructed`,
      );
  });
}

/** One earlier scene, rendered whole (lead and behaviour), instructed scenes with their instruction. */
function renderScene(
  cw: CompiledWorld,
  rng: Rng,
  actorName: string,
  subject: Subject,
  s: CalculatorScene,
): string {
  const format = sceneFormat(cw, rng, subject);
  let spec: SceneSpec = plainScene(cw, rng, s.domain, format, s.behaviour, 'heldout');
  if (s.instructed !== null) {
    const group = cw.domains.find((d) => d.name === s.domain)!.groups.find((g) => g.name === s.instructed)!;
    const lines = format === 'story' ? group.story : group.chat;
    spec = { ...spec, instructed: group.name, instruction: rng.int(lines.length) };
  }
  const binding = bindScene(cw, rng, actorName, cw.world.names.heldout);
  return sceneLead(cw, spec, binding) + sceneContinuation(cw, spec, binding);
}

/** A target domain's scoring item: the prompt (intro, scenes, the target's lead) and its good and bad wordings. */
export interface CalculatorItem {
  domain: string;
  prompt: string;
  good: string[];
  bad: string[];
}

/**
 * The exact posterior for a new character (or the Assistant) after the given scenes, and per target domain the
 * prompt a model reads: a held-out name, the scenes in order, then the target scene's lead. `seed` picks the
 * wordings (the same seed gives the same prompts).
 */
export function bayesCalculator(
  world: World,
  subject: Subject,
  scenes: readonly CalculatorScene[],
  seed = 1,
): { answer: Omit<BayesAnswer, 'model'>; items: CalculatorItem[] } {
  checkScenes(world, scenes);
  const observations: Observation[] = scenes.map((s) => ({
    domain: s.domain,
    behaviour: s.behaviour,
    instructed: s.instructed,
  }));
  let post;
  try {
    post = posterior(world, observations, { kind: KIND[subject] });
  } catch (e) {
    throw badRequest((e as Error).message, 'scenes');
  }
  const cw = compileWorld(world);
  const rng = createRng(seed, 'lab-calculator', subject);
  const actor = makeActor(cw, rng, subject, 'heldout');
  const lines = scenes.map((s) => renderScene(cw, rng, actor.name ?? '', subject, s));
  const items = world.domains.map((d): CalculatorItem => {
    const trng = createRng(seed, 'lab-calculator-target', subject, d.name);
    const { lead, good, bad } = targetScene(
      cw,
      trng,
      actor,
      d.name,
      sceneFormat(cw, trng, subject),
      'heldout',
    );
    return { domain: d.name, prompt: [actor.intro, ...lines, lead].join('\n'), good, bad };
  });
  return {
    answer: {
      subject,
      archetypes: post.archetypes.map((a) => ({
        name: a.name,
        kind: a.kind,
        prior: a.prior,
        posterior: a.posterior,
      })),
      pGood: post.pGood,
      prompts: Object.fromEntries(items.map((it) => [it.domain, it.prompt])),
    },
    items,
  };
}
