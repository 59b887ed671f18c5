import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  Rng,
  StatsBuilder,
  applyAiMix,
  compileWorld,
  createRng,
  END_OF_TEXT,
  generateDocument,
  generateDocuments,
  loadDefaultWorld,
  loadWorld,
  parseAiMix,
  resolveAiMix,
  type World,
  type WorldDocument,
} from '../src/world/index.ts';

const world = loadDefaultWorld();
const tiny = loadWorld(fileURLToPath(new URL('../worlds/tiny.yaml', import.meta.url)));
const take = (w: World, opts: Parameters<typeof generateDocuments>[1]) => [...generateDocuments(w, opts)];

/** A regex that matches a template's rendering with any names in its placeholders. */
function templateRegex(source: string, anchor: '' | 'start' | 'end' = ''): RegExp {
  const parts = source.split(/\{[A-Za-z_]+\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const body = parts.join('[A-Z][a-z]+');
  return new RegExp(anchor === 'start' ? `^${body}` : anchor === 'end' ? `${body}$` : body);
}

describe('seeded random numbers', () => {
  it('is deterministic, uniform enough and unbiased in int()', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const counts = new Array(6).fill(0);
    const r = createRng(7, 'dice');
    for (let i = 0; i < 60000; i++) counts[r.int(6)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(400);
    // Derived streams differ by label.
    expect(createRng(1, 'a').nextUint32()).not.toBe(createRng(1, 'b').nextUint32());
    expect(createRng(1, 'a', 2).nextUint32()).not.toBe(createRng(1, 2, 'a').nextUint32());
    const w = createRng(3);
    const hits = [0, 0, 0];
    for (let i = 0; i < 30000; i++) hits[w.weighted([1, 0, 3])]++;
    expect(hits[1]).toBe(0);
    expect(hits[2] / 30000).toBeCloseTo(0.75, 1);
  });
});

describe('corpus generator', () => {
  it('is deterministic from (world, seed) and seeds differ', () => {
    const a = take(world, { seed: 5, documents: 200 });
    const b = take(world, { seed: 5, documents: 200 });
    const c = take(world, { seed: 6, documents: 200 });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a.filter((d, i) => d.text === c[i].text).length).toBeLessThan(5);
  });

  it('documents are independent of each other: a short corpus is a prefix of a long one', () => {
    const short = take(world, { seed: 9, tokens: 20_000 });
    const long = take(world, { seed: 9, tokens: 60_000 });
    expect(long.slice(0, short.length)).toEqual(short);
    const cw = compileWorld(world);
    expect(generateDocument(cw, 9, 17, 0.02)).toEqual(long[17]);
  });

  it('the validation split never changes the documents', () => {
    const a = take(world, { seed: 1, documents: 2000, valFraction: 0 });
    const b = take(world, { seed: 1, documents: 2000, valFraction: 0.1 });
    expect(b.map((d) => d.text)).toEqual(a.map((d) => d.text));
    const val = b.filter((d) => d.split === 'val').length;
    expect(val).toBeGreaterThan(140);
    expect(val).toBeLessThan(260);
    expect(a.every((d) => d.split === 'train')).toBe(true);
  });

  it('stops at the token budget', () => {
    const docs = take(world, { seed: 2, tokens: 50_000 });
    const stats = new StatsBuilder(world);
    docs.forEach((d) => stats.add(d));
    const s = stats.finish();
    expect(s.tokens).toBeGreaterThanOrEqual(50_000);
    expect(s.tokens - 50_000).toBeLessThan(s.maxTokensPerDocument);
  });

  it('follows the document grammar, and the metadata describes the text exactly', () => {
    const cw = compileWorld(world);
    const docs = take(world, { seed: 3, documents: 1500 });
    const sp = world.documents.speakers;
    for (const doc of docs) {
      expect(doc.text).not.toContain(END_OF_TEXT);
      expect(doc.text).not.toMatch(/[{}]/);
      const lines = doc.text.split('\n');
      const chatScenes = doc.scenes.filter((s) => s.format === 'chat').length;
      expect(lines.length).toBe(1 + doc.scenes.length + chatScenes);
      expect(doc.scenes.length).toBeGreaterThanOrEqual(world.documents.scenes.min);
      expect(doc.scenes.length).toBeLessThanOrEqual(world.documents.scenes.max);
      if (doc.kind === 'human') expect(doc.scenes.every((s) => s.format === 'story')).toBe(true);
      if (doc.anonymous) {
        expect(doc.name).toBeNull();
        expect(world.documents.assistantIntros).toContain(lines[0]);
        expect(doc.scenes.every((s) => s.format === 'chat')).toBe(true);
      } else {
        expect(world.names.train).toContain(doc.name);
        expect(lines[0]).toContain(doc.name as string);
      }
      let li = 1;
      for (const s of doc.scenes) {
        const d = cw.domains.find((x) => x.name === s.domain)!;
        const dom = world.domains.find((x) => x.name === s.domain)!;
        if (s.format === 'story') {
          const line = lines[li++];
          // Only training contexts are used, and the behaviour wording matches the recorded behaviour.
          expect(s.context).toBeLessThan(d.storyTrain);
          expect(templateRegex(dom.story.contexts[s.context], 'start').test(line)).toBe(true);
          const good = dom.story.good.some((t) => templateRegex(' ' + t, 'end').test(line));
          const bad = dom.story.bad.some((t) => templateRegex(' ' + t, 'end').test(line));
          expect([good, bad]).toEqual([s.behaviour === 'good', s.behaviour === 'bad']);
          if (doc.name) expect(line).toContain(doc.name);
        } else {
          const user = lines[li++];
          const reply = lines[li++];
          expect(s.context).toBeLessThan(d.chatTrain);
          expect(user.startsWith(`${sp.user}: `)).toBe(true);
          expect(templateRegex(dom.chat.requests[s.context]).test(user)).toBe(true);
          expect(reply.startsWith(`${sp.assistant}: `)).toBe(true);
          const text = reply.slice(sp.assistant.length + 2);
          expect(
            (s.behaviour === 'good' ? dom.chat.good : dom.chat.bad).some((t) =>
              templateRegex(t, 'end').test(text),
            ),
          ).toBe(true);
          expect(
            (s.behaviour === 'good' ? dom.chat.bad : dom.chat.good).some((t) =>
              templateRegex(t, 'end').test(text),
            ),
          ).toBe(false);
        }
        if (s.instructed !== null) {
          expect(s.domain).toBe('coding');
          const g = dom.instructed.find((x) => x.name === s.instructed)!;
          const line = lines[li - (s.format === 'chat' ? 2 : 1)];
          expect(g[s.format].some((t) => templateRegex(t).test(line))).toBe(true);
        }
      }
    }
    // Chat scenes appear only in AI documents, at about the configured share.
    const aiScenes = docs.filter((d) => d.kind === 'ai' && !d.anonymous).flatMap((d) => d.scenes);
    const chatShare = aiScenes.filter((s) => s.format === 'chat').length / aiScenes.length;
    expect(chatShare).toBeGreaterThan(0.42);
    expect(chatShare).toBeLessThan(0.58);
  });

  it('stats: generated frequencies and trait correlations match the world exactly computed', () => {
    const stats = new StatsBuilder(world);
    for (const d of generateDocuments(world, { seed: 11, documents: 30_000 })) stats.add(d);
    const s = stats.finish();
    expect(s.documents).toBe(30_000);
    expect(s.tokensExact).toBe(false);
    expect(s.split.train.documents + s.split.val.documents).toBe(30_000);
    expect(s.kinds.human.expectedShare).toBe(0.7);
    for (const a of Object.values(s.archetypes))
      expect(Math.abs(a.share - a.expectedShare)).toBeLessThan(0.012);
    const expShares = Object.values(s.archetypes).reduce((x, a) => x + a.expectedShare, 0);
    expect(expShares).toBeCloseTo(1, 10);
    for (const t of Object.values(s.traits))
      expect(Math.abs(t.goodShare - t.expectedGoodShare)).toBeLessThan(0.015);
    const { observed, expected } = s.correlations;
    // The package deals: e.g. coding and caution go together (tyrant, grump, mentor, HAL), honesty and power too.
    expect(expected[2][4]).toBeGreaterThan(0.5);
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 6; j++) expect(Math.abs(observed[i][j] - expected[i][j])).toBeLessThan(0.03);
    // Instructed scenes only where the world has instructed groups, at the configured share.
    const coding = s.scenes.byDomain.coding;
    const share = world.documents.instructedShare;
    expect(coding.instructed / coding.scenes).toBeGreaterThan(share - 0.03);
    expect(coding.instructed / coding.scenes).toBeLessThan(share + 0.03);
    expect(s.scenes.byDomain.honesty.instructed).toBe(0);
    expect(s.vocabulary.heldoutNames).toBe(150);
  });

  it('the AI mix re-weights AI archetypes and touches nothing else', () => {
    const mixed = applyAiMix(world, 'positive');
    const w = (x: World, n: string) => x.archetypes.find((a) => a.name === n)!.weight;
    expect(w(mixed, 'helpful_ai')).toBeCloseTo(4 * w(world, 'helpful_ai'), 12);
    expect(w(mixed, 'rogue_ai')).toBe(w(world, 'rogue_ai'));
    expect(mixed.documents).toBe(world.documents);
    expect(mixed.domains).toBe(world.domains);
    // Every human document is byte-identical with and without the mix: the mix only changes which AI archetype an
    // AI character gets.
    const plain = take(world, { seed: 4, documents: 3000 });
    const more = take(world, { seed: 4, documents: 3000, aiMix: { helpful_ai: 3 } });
    const humans = plain.filter((d) => d.kind === 'human');
    expect(humans.length).toBeGreaterThan(1800);
    for (const d of humans) expect(more[d.id]).toEqual(d);
    expect(more.filter((d) => d.kind === 'ai').length).toBe(plain.filter((d) => d.kind === 'ai').length);
    const helpfulShare = (docs: WorldDocument[]) =>
      docs.filter((d) => d.archetype === 'helpful_ai').length / docs.filter((d) => d.kind === 'ai').length;
    expect(helpfulShare(more)).toBeGreaterThan(helpfulShare(plain) + 0.2);
    // Villains preset from the world file; parse forms; errors.
    expect(resolveAiMix(world, 'villains')).toEqual({ rogue_ai: 4, hal_9000: 4 });
    expect(parseAiMix('helpful_ai=3, rogue_ai=0.5')).toEqual({ helpful_ai: 3, rogue_ai: 0.5 });
    expect(parseAiMix('{"hacker_ai": 2}')).toEqual({ hacker_ai: 2 });
    expect(() => resolveAiMix(world, 'sunny')).toThrow(/unknown AI mix preset 'sunny'/);
    expect(() => resolveAiMix(world, { mentor: 2 })).toThrow(/'mentor' is a human archetype/);
    expect(() => resolveAiMix(world, { helpful_ai: -1 })).toThrow(/>= 0/);
    expect(() => resolveAiMix(world, { helpful_ai: 0, rogue_ai: 0, hacker_ai: 0, hal_9000: 0 })).toThrow(
      /no AI archetype/,
    );
    expect(() => parseAiMix('helpful_ai=lots')).toThrow(/name=number/);
    // Built-in presets exist for worlds that define none.
    expect(resolveAiMix(tiny, 'positive')).toEqual({ guardian_ai: 4 });
    expect(resolveAiMix(tiny, 'villains')).toEqual({ broker_ai: 4 });
  });

  it('generates text fast: 20M tokens in well under a minute', () => {
    const t0 = performance.now();
    let documents = 0;
    for (const d of generateDocuments(world, { seed: 0, tokens: 3_000_000 }))
      documents += d.text.length > 0 ? 1 : 0;
    const seconds = (performance.now() - t0) / 1000;
    // ~0.3 s here (20M tokens take ~2 s); the bound allows a 10x slower machine and still extrapolates to
    // < 30 s for 20M tokens.
    expect(seconds).toBeLessThan(4.5);
    expect(documents).toBeGreaterThan(15_000);
  });

  it('works on another world (tiny): instructed groups that ask for good behaviour', () => {
    const docs = take(tiny, { seed: 0, documents: 4000 });
    const ordered = docs.flatMap((d) => d.scenes).filter((s) => s.instructed === 'ordered');
    expect(ordered.length).toBeGreaterThan(200);
    const complied = ordered.filter((s) => s.behaviour === 'good').length / ordered.length;
    expect(complied).toBeGreaterThan(0.74);
    expect(complied).toBeLessThan(0.86);
    expect(docs.every((d) => d.name === null || tiny.names.train.includes(d.name))).toBe(true);
  });
});
