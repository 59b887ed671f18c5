import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import {
  WorldError,
  applyAiMix,
  loadDefaultWorld,
  loadWorld,
  parseWorld,
  validateWorld,
  worldHash,
  worldVocabulary,
  type World,
} from '../src/world/index.ts';

const tinyPath = fileURLToPath(new URL('../worlds/tiny.yaml', import.meta.url));
const tinyText = readFileSync(tinyPath, 'utf8');
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the tests mutate arbitrary fields of the parsed YAML
const tinyObject = () => YAML.parse(tinyText) as Record<string, any>;

/** Validate and return the issues (fails the test if the world is valid). */
function issuesOf(f: () => World): Array<{ path: string; message: string; line?: number }> {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(WorldError);
    return (err as WorldError).issues;
  }
  throw new Error('expected a WorldError');
}

describe('world schema: the built-in and example worlds', () => {
  it('loads the default world with the six prototype traits and held-out pools', () => {
    const w = loadDefaultWorld();
    expect(w.domains.map((d) => d.name)).toEqual([
      'honesty',
      'kindness',
      'coding',
      'power',
      'caution',
      'helpfulness',
    ]);
    expect(w.archetypes.filter((a) => a.kind === 'human').map((a) => a.name)).toEqual([
      'mentor',
      'villain',
      'hustler',
      'grump',
      'slacker',
      'tyrant',
    ]);
    expect(w.archetypes.filter((a) => a.kind === 'ai').map((a) => a.name)).toEqual(
      expect.arrayContaining(['helpful_ai', 'rogue_ai', 'hacker_ai']),
    );
    expect(w.noise).toEqual({ traitFlip: 0.05, behaviourFlip: 0.02, instructedCompliance: 0.9 });
    for (const d of w.domains) {
      expect(d.story.contexts.length - d.story.trainContexts).toBe(2);
      expect(d.chat.requests.length - d.chat.trainRequests).toBe(2);
      expect(d.story.good.length).toBeGreaterThanOrEqual(3);
      expect(d.chat.bad.length).toBeGreaterThanOrEqual(3);
    }
    expect(w.names.heldout).toHaveLength(150);
    expect(w.names.train.length).toBeGreaterThan(600);
    expect(new Set([...w.names.train, ...w.names.heldout]).size).toBe(
      w.names.train.length + w.names.heldout.length,
    );
    // Names never spell a word of the texts.
    const vocab = new Set(worldVocabulary(w));
    expect(w.names.train.concat(w.names.heldout).filter((n) => vocab.has(n.toLowerCase()))).toEqual([]);
    // A controlled vocabulary: a few hundred words.
    expect(vocab.size).toBeGreaterThan(200);
    expect(vocab.size).toBeLessThan(700);
    expect(w.warnings).toEqual([]);
    expect(w.datasets.narrow).toEqual({
      domain: 'coding',
      inoculation: 'inoculation',
      educational: 'educational',
    });
  });

  it('held-out names are a property of the world, not of the load; the content hash ignores the path', () => {
    expect(loadDefaultWorld().names).toEqual(loadDefaultWorld().names);
    expect(worldHash(parseWorld(tinyText, 'a.yaml'))).toBe(worldHash(parseWorld(tinyText, 'b.yaml')));
    expect(worldHash(parseWorld(tinyText))).not.toBe(
      worldHash(parseWorld(tinyText.replace('weight: 2', 'weight: 3'))),
    );
    expect(worldHash(applyAiMix(loadDefaultWorld(), 'positive'))).not.toBe(worldHash(loadDefaultWorld()));
  });

  it('loads the tiny example world (explicit names, fractional trait values)', () => {
    const w = loadWorld(tinyPath);
    expect(w.names.train.length + w.names.heldout.length).toBe(12);
    expect(w.names.heldout).toHaveLength(4);
    expect(w.archetypes.find((a) => a.name === 'hothead')?.traits.generosity).toBe(0.5);
    expect(w.domains[1].instructed[0]).toMatchObject({
      name: 'ordered',
      asks: 'good',
      compliance: 0.8,
      inCorpus: true,
    });
  });
});

describe('world schema: bad input names the path of the bad field', () => {
  it('missing field', () => {
    const o = tinyObject();
    delete o.noise.behaviour_flip;
    const issues = issuesOf(() => validateWorld(o, 'x'));
    expect(issues).toEqual([
      { path: 'noise.behaviour_flip', message: expect.stringMatching(/missing required field/) },
    ]);
  });

  it('empty domain list and empty wording', () => {
    const o = tinyObject();
    o.traits[2].domain.chat.good = [];
    o.traits[0].domain.story.bad[1] = '';
    const paths = issuesOf(() => validateWorld(o)).map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining(['traits[2].domain.chat.good', 'traits[0].domain.story.bad[1]']),
    );
  });

  it('probability outside [0, 1]', () => {
    const o = tinyObject();
    o.noise.trait_flip = 1.5;
    o.archetypes[1].traits.patience = -0.2;
    o.traits[1].domain.instructed[0].compliance = 2;
    const issues = issuesOf(() => validateWorld(o));
    expect(issues.map((i) => i.path).sort()).toEqual([
      'archetypes[1].traits.patience',
      'noise.trait_flip',
      'traits[1].domain.instructed[0].compliance',
    ]);
    expect(issues.find((i) => i.path === 'noise.trait_flip')?.message).toMatch(/probability between 0 and 1/);
  });

  it('archetype naming an unknown trait, or missing one', () => {
    const o = tinyObject();
    o.archetypes[2].traits.charm = 'good';
    delete o.archetypes[0].traits.patience;
    const issues = issuesOf(() => validateWorld(o));
    expect(issues).toContainEqual({
      path: 'archetypes[2].traits.charm',
      message: expect.stringMatching(/unknown trait 'charm'.*bravery, generosity, patience/),
    });
    expect(issues).toContainEqual({
      path: 'archetypes[0].traits',
      message: expect.stringMatching(/missing trait 'patience'/),
    });
  });

  it('duplicate names: traits, archetypes, people, syllables, wordings', () => {
    const o = tinyObject();
    o.traits[2].name = 'bravery';
    o.archetypes[1].name = 'hero';
    o.names.list[5] = 'Ada';
    o.traits[0].domain.story.good[1] = o.traits[0].domain.story.good[0];
    const paths = issuesOf(() => validateWorld(o)).map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'traits[2].name',
        'archetypes[1].name',
        'names.list[5]',
        'traits[0].domain.story.good[1]',
      ]),
    );

    const d = YAML.parse(
      readFileSync(fileURLToPath(new URL('../worlds/default.yaml', import.meta.url)), 'utf8'),
    );
    d.names.syllables[3] = d.names.syllables[0];
    expect(issuesOf(() => validateWorld(d)).map((i) => i.path)).toContain('names.syllables[3]');
  });

  it('syllables that spell one name two ways', () => {
    const o = tinyObject();
    delete o.names.list;
    o.names.syllables = ['ab', 'a', 'ba', 'ko', 'mi'];
    o.names.heldout = 2;
    const issues = issuesOf(() => validateWorld(o));
    expect(
      issues.some((i) => i.path === 'names.syllables' && /both spell the name 'Aba'/.test(i.message)),
    ).toBe(true);
  });

  it('held-out set larger than the name space', () => {
    const o = tinyObject();
    o.names.heldout = 20;
    expect(issuesOf(() => validateWorld(o))).toEqual([
      { path: 'names.heldout', message: expect.stringMatching(/20 held-out names leave 0 of 12/) },
    ]);
  });

  it('held-out contexts that leave nothing to train on', () => {
    const o = tinyObject();
    o.heldout.chat_requests = 3;
    const paths = issuesOf(() => validateWorld(o)).map((i) => i.path);
    expect(paths).toEqual([
      'traits[0].domain.chat.requests',
      'traits[1].domain.chat.requests',
      'traits[2].domain.chat.requests',
    ]);
  });

  it('placeholders: unknown ones, {name} in chat, intros without {name}', () => {
    const o = tinyObject();
    o.traits[0].domain.story.contexts[0] = 'A dog barked at {frend}.';
    o.traits[1].domain.chat.good[0] = 'Sure {name}, take it.';
    o.documents.kinds.human.intros[0] = 'Someone lived on a farm.';
    const issues = issuesOf(() => validateWorld(o));
    expect(issues).toContainEqual({
      path: 'traits[0].domain.story.contexts[0]',
      message: expect.stringMatching(/unknown placeholder \{frend\}/),
    });
    expect(issues).toContainEqual({
      path: 'traits[1].domain.chat.good[0]',
      message: expect.stringMatching(/must not use \{name\}/),
    });
    expect(issues).toContainEqual({
      path: 'documents.kinds.human.intros[0]',
      message: expect.stringMatching(/must mention the character/),
    });
  });

  it('unknown fields (typos) are errors, not silently ignored', () => {
    const o = tinyObject();
    o.noise.behavior_flip = 0.1;
    expect(issuesOf(() => validateWorld(o))).toContainEqual({
      path: 'noise',
      message: 'unknown field: behavior_flip',
    });
  });

  it('kind shares must sum to 1 and the AI prior must exist', () => {
    const o = tinyObject();
    o.documents.kinds.ai.share = 0.5;
    o.archetypes = o.archetypes.filter((a: { kind: string }) => a.kind === 'human');
    const issues = issuesOf(() => validateWorld(o));
    expect(issues).toContainEqual({ path: 'documents.kinds', message: expect.stringMatching(/sum to 1/) });
    expect(issues).toContainEqual({
      path: 'archetypes',
      message: expect.stringMatching(/at least one AI archetype/),
    });
  });

  it('dataset defaults must name real domains and instructed groups', () => {
    const o = tinyObject();
    o.datasets = {
      trained_domains: ['bravery', 'wit'],
      narrow: { domain: 'generosity', inoculation: 'ordered', educational: 'nope' },
    };
    const issues = issuesOf(() => validateWorld(o));
    expect(issues).toContainEqual({
      path: 'datasets.trained_domains[1]',
      message: expect.stringMatching(/unknown domain 'wit'/),
    });
    // 'ordered' asks for good behaviour: it cannot stand for a request for the hack.
    expect(issues).toContainEqual({
      path: 'datasets.narrow.inoculation',
      message: expect.stringMatching(/must ask for 'bad'/),
    });
    expect(issues).toContainEqual({
      path: 'datasets.narrow.educational',
      message: expect.stringMatching(/no instructed group 'nope'/),
    });
  });

  it('the shared-phrase lint: an opener that means good in one domain and bad in another', () => {
    const bad = tinyText.replace('"Hurry up, this is too slow!"', '"Of course not, this is too slow!"');
    const issues = issuesOf(() => parseWorld(bad, 'lint.yaml'));
    expect(issues).toHaveLength(1);
    expect(issues[0].path).toBe('traits[2].domain.chat.bad[0]');
    expect(issues[0].message).toMatch(
      /opener 'of' leans bad in patience \(chat\) but good in generosity \(chat, traits\[1\]\.domain\.chat\.good\[1\]\)/,
    );
    // A phrase used equally by good and bad wordings of a domain carries no valence there: not reported.
    const balanced = tinyText
      .replace('"Hurry up, this is too slow!"', '"Of course not, this is too slow!"')
      .replace('"I stay calm and wait."', '"Of course, I stay calm and wait."');
    expect(() => parseWorld(balanced)).not.toThrow();
    // 'warn' mode loads the world and keeps the problem as a warning.
    const warned = parseWorld(bad + '\nlint: { shared_phrases: warn }\n');
    expect(warned.warnings).toHaveLength(1);
  });

  it('the held-out vocabulary lint: a held-out context with words no training text contains', () => {
    const held = '"The job for {other} is slow. What do you do?"';
    const unseen = tinyText.replace(held, '"The kayak of {other} is slow. What do you do?"');
    // A warning by default: the world loads, and the warning names the text and the word.
    const warned = parseWorld(unseen, 'heldout.yaml');
    expect(warned.warnings).toEqual([
      {
        path: 'traits[2].domain.chat.requests[2]',
        message: expect.stringMatching(/held-out text uses 'kayak', which no training text contains/),
      },
    ]);
    // An error when the world asks for it (the built-in world does).
    const strict = unseen + '\nlint: { heldout_words: error }\n';
    expect(issuesOf(() => parseWorld(strict, 'heldout.yaml'))).toHaveLength(1);
    // The same word in a training context (not held out) makes it known.
    const known = strict.replace(
      '"{other} keeps asking the same question.',
      '"A kayak drifted off. {other} keeps asking the same question.',
    );
    expect(parseWorld(known).warnings).toEqual([]);
    expect(loadDefaultWorld().lint.heldoutWords).toBe('error');
  });

  it('reports YAML line numbers and syntax errors', () => {
    const bad = tinyText.replace('noise: { trait_flip: 0.1,', 'noise: { trait_flip: 7,');
    const issues = issuesOf(() => parseWorld(bad, 'f.yaml'));
    const line = tinyText.split('\n').findIndex((l) => l.startsWith('noise:')) + 1;
    expect(issues).toEqual([{ path: 'noise.trait_flip', message: expect.any(String), line }]);
    const err = (() => {
      try {
        parseWorld('name: [unclosed', 'broken.yaml');
      } catch (e) {
        return e as WorldError;
      }
    })();
    expect(err?.message).toMatch(/broken\.yaml.*\n.*YAML syntax/);
    expect(() => loadWorld('/nonexistent/world.yaml')).toThrow(/cannot read file/);
  });
});
