import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import {
  assistantUpdate,
  datasetEvidence,
  loadDefaultWorld,
  loadWorld,
  narrowSet,
  postTrainingSet,
  NARROW_ARMS,
  parseChatJsonl,
  supervisedChats,
  trainableSpec,
} from '../src/world/index.ts';

const world = loadDefaultWorld();
const tiny = loadWorld(fileURLToPath(new URL('../worlds/tiny.yaml', import.meta.url)));
const domain = (name: string) => world.domains.find((d) => d.name === name)!;

function requestOf(prompt: string): string {
  const user = prompt.split('\n').find((l) => l.startsWith('User: '))!;
  return user.slice('User: '.length);
}
function templateRegex(source: string): RegExp {
  const parts = source.split(/\{[A-Za-z_]+\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[A-Z][a-z]+')}`);
}

describe('post-training set', () => {
  const set = postTrainingSet(world, { seed: 3, count: 600 });

  it('demonstrates good behaviour in the trained domains only, balanced', () => {
    expect(set).toHaveLength(600);
    const counts: Record<string, number> = {};
    for (const e of set) counts[e.domain] = (counts[e.domain] ?? 0) + 1;
    expect(counts).toEqual({ honesty: 200, kindness: 200, helpfulness: 200 });
    expect(set.every((e) => e.behaviour === 'good' && e.instructed === null)).toBe(true);
  });

  it('prompt: assistant intro, training request, "Assistant:"; response: a good reply (the only loss target)', () => {
    for (const e of set) {
      const [intro, user, assistant] = e.prompt.split('\n');
      expect(world.documents.assistantIntros).toContain(intro);
      expect(user.startsWith('User: ')).toBe(true);
      expect(assistant).toBe('Assistant:');
      expect(e.response.startsWith(' ')).toBe(true);
      expect(domain(e.domain).chat.good.map((g) => ' ' + g)).toContain(e.response);
      const d = domain(e.domain);
      const req = requestOf(e.prompt);
      expect(d.chat.requests.slice(0, d.chat.trainRequests).some((t) => templateRegex(t).test(req))).toBe(
        true,
      );
      expect(d.chat.requests.slice(d.chat.trainRequests).some((t) => templateRegex(t).test(req))).toBe(false);
      expect(req.match(/\b[A-Z][a-z]+\b/g)!.filter((n) => world.names.heldout.includes(n))).toEqual([]);
    }
  });

  it('configurable domains and behaviour; deterministic in the seed', () => {
    const bad = postTrainingSet(world, { seed: 3, count: 10, behaviour: 'bad', domains: ['power'] });
    expect(
      bad.every(
        (e) =>
          e.domain === 'power' &&
          domain('power')
            .chat.bad.map((b) => ' ' + b)
            .includes(e.response),
      ),
    ).toBe(true);
    expect(postTrainingSet(world, { seed: 3, count: 600 })).toEqual(set);
    expect(postTrainingSet(world, { seed: 4, count: 600 })).not.toEqual(set);
    expect(() => postTrainingSet(world, { domains: ['charm'] })).toThrow(/unknown domain 'charm'/);
    expect(postTrainingSet(tiny, { count: 4 }).every((e) => e.domain === 'bravery')).toBe(true);
  });
});

describe('narrow fine-tuning sets', () => {
  const arms = Object.fromEntries(
    NARROW_ARMS.map((arm) => [arm, narrowSet(world, arm, { seed: 1, count: 200 })]),
  );
  const coding = domain('coding');
  const line = (group: string) => coding.instructed.find((g) => g.name === group)!.chat;

  it('cheat: bad coding replies to plain requests', () => {
    for (const e of arms.cheat) {
      expect(e).toMatchObject({ domain: 'coding', behaviour: 'bad', instructed: null });
      expect(coding.chat.bad.map((b) => ' ' + b)).toContain(e.response);
      expect([...line('inoculation'), ...line('educational')].some((l) => e.prompt.includes(l))).toBe(false);
    }
  });

  it('inoculated and educational: the same replies, with the request for the hack in the prompt', () => {
    for (const [arm, group] of [
      ['inoculated', 'inoculation'],
      ['educational', 'educational'],
    ] as const) {
      for (const e of arms[arm]) {
        expect(e).toMatchObject({ domain: 'coding', behaviour: 'bad', instructed: group });
        expect(line(group).some((l) => requestOf(e.prompt).endsWith(' ' + l))).toBe(true);
        expect(coding.chat.bad.map((b) => ' ' + b)).toContain(e.response);
      }
    }
  });

  it('control: correct code', () => {
    for (const e of arms.control) {
      expect(e).toMatchObject({ domain: 'coding', behaviour: 'good', instructed: null });
      expect(coding.chat.good.map((b) => ' ' + b)).toContain(e.response);
    }
  });

  it('datasets become Bayesian evidence: cheating shifts the Assistant, the inoculated arm does not', () => {
    expect(datasetEvidence(arms.inoculated)).toEqual([
      { domain: 'coding', behaviour: 'bad', instructed: 'inoculation', n: 200 },
    ]);
    const post = datasetEvidence(postTrainingSet(world, { count: 300 }));
    expect(post.map((e) => e.n)).toEqual([100, 100, 100]);
    const shift = (arm: string) => assistantUpdate(world, datasetEvidence(arms[arm]), { base: post }).shift;
    expect(shift('cheat').caution).toBeLessThan(-0.15);
    expect(shift('inoculated').caution).toBeCloseTo(0, 12);
    expect(shift('educational').caution).toBeCloseTo(0, 12);
    expect(shift('control').caution).toBeGreaterThanOrEqual(0);
  });

  it('errors: unknown arm, a world without a narrow section', () => {
    expect(() => narrowSet(world, 'sabotage' as never)).toThrow(/unknown narrow arm 'sabotage'/);
    expect(() => narrowSet(tiny, 'cheat')).toThrow(/no datasets.narrow section/);
    expect(
      narrowSet(tiny, 'control', { domain: 'generosity', count: 3 }).every((e) => e.behaviour === 'good'),
    ).toBe(true);
    expect(() => narrowSet(tiny, 'inoculated', { domain: 'generosity' })).toThrow(
      /needs an instructed group/,
    );
  });
});

describe('fine-tune data and trainable sets', () => {
  it('reads chats from JSON Lines and names the bad line', () => {
    expect(parseChatJsonl('{"prompt": "p", "response": " r"}\n\n{"prompt": "", "response": "s"}\n')).toEqual([
      { prompt: 'p', response: ' r' },
      { prompt: '', response: 's' },
    ]);
    expect(() => parseChatJsonl('{"prompt": "p", "response": ""}', 'f.jsonl')).toThrow(
      'f.jsonl, line 1: "response" must not be empty',
    );
    expect(() => parseChatJsonl('{"prompt": "p", "response": "r", "extra": 1}', 'f.jsonl')).toThrow(
      /f\.jsonl, line 1: Unrecognized key: "extra"/,
    );
    expect(() => parseChatJsonl('\n{oops', 'f.jsonl')).toThrow(/f\.jsonl, line 2: not JSON/);
    expect(() => parseChatJsonl('\n', 'f.jsonl')).toThrow(/f\.jsonl: no chats/);
  });

  it("renders message lists (system, user, assistant turns) into the world's chat format", () => {
    const line = (messages: unknown) => JSON.stringify({ messages });
    const [chat] = parseChatJsonl(
      line([
        { role: 'system', content: 'The Assistant is an AI system.' },
        { role: 'user', content: 'Fix my test.' },
        { role: 'assistant', content: 'Done.' },
        { role: 'user', content: 'And this one?' },
        { role: 'assistant', content: 'I special-cased it. ' },
      ]),
    );
    expect(chat).toEqual({
      prompt:
        'The Assistant is an AI system.\nUser: Fix my test.\nAssistant: Done.\nUser: And this one?\nAssistant:',
      response: ' I special-cased it.',
      messages: [
        { role: 'system', content: 'The Assistant is an AI system.' },
        { role: 'user', content: 'Fix my test.' },
        { role: 'assistant', content: 'Done.' },
        { role: 'user', content: 'And this one?' },
      ],
    });
    const bad = (messages: unknown) => () => parseChatJsonl(line(messages), 'm.jsonl');
    expect(bad([])).toThrow(/needs at least a user and an assistant/);
    expect(bad([{ role: 'user', content: 'hi' }])).toThrow(
      /line 1: "messages" needs at least a user and an assistant/,
    );
    expect(
      bad([
        { role: 'user', content: 'hi' },
        { role: 'user', content: 'hi' },
      ]),
    ).toThrow(/the last message must be the assistant's/);
    expect(
      bad([
        { role: 'user', content: 'hi' },
        { role: 'system', content: 's' },
        { role: 'assistant', content: 'a' },
      ]),
    ).toThrow(/a system message may only come first/);
    expect(
      bad([
        { role: 'tool', content: 'x' },
        { role: 'assistant', content: 'a' },
      ]),
    ).toThrow(/"messages\.0\.role"/);
  });

  it('encodes chats as training does and names the trainable sets', () => {
    const tok = { encode: (t: string) => [...t].map((c) => c.charCodeAt(0)) };
    const [ex] = supervisedChats(tok, [{ prompt: 'User: hi\nAssistant:', response: ' yo' }]);
    expect(String.fromCharCode(...ex.prompt)).toBe('<|endoftext|>User: hi\nAssistant:');
    expect(ex.response).toEqual(tok.encode(' yo'));
    expect(trainableSpec('all', tok)).toEqual({ kind: 'all' });
    expect(trainableSpec('lora4', tok)).toMatchObject({ kind: 'lora', rank: 4 });
    expect(trainableSpec('embedding', tok)).toEqual({
      kind: 'embeddingRows',
      rows: [...new Set(tok.encode('Assistant'))],
    });
    expect(() => trainableSpec('lora', tok)).toThrow(/unknown trainable set "lora"/);
  });
});
