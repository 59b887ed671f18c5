/**
 * The local engine decodes the generations in flight together (decode-scheduler.ts): requests arriving while
 * a batch runs join it at its next step, each keeps its own sampling, stops and PSM interventions, and each
 * answer is the one it gets alone. The JS matmul makes "the same" exact to the bit (ONNX Runtime's agreement
 * to rounding is tested in model-generate-batch.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import { buildInterventionHooks } from '../src/providers/interventions.ts';
import { AbortError } from '../src/providers/limit.ts';
import { LocalEngine, type GenerateOutput, type GenerateParams } from '../src/providers/local-engine.ts';
import { NonFiniteLogitsError } from '../src/model/generate.ts';
import type { PsmExtras } from '../src/providers/types.ts';
import { startServer, type RunningServer } from '../src/serve/server.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

process.env.PSM_MATMUL = 'js';

let dir: string;
let batched: LocalEngine;
let alone: LocalEngine;
let srv: RunningServer;

beforeAll(async () => {
  dir = makeTinyModelFolder();
  batched = LocalEngine.load(dir, { id: 'tiny', maxConcurrency: 4, maxTokens: 64 });
  alone = LocalEngine.load(dir, { id: 'tiny', maxConcurrency: 1, maxTokens: 64 });
  srv = await startServer(batched, { port: 0 });
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const ones = (x: number) => Array(32).fill(x) as number[];

/** A request's engine parameters, with its PSM extras turned into hooks as the server does. */
function params(
  engine: LocalEngine,
  content: string,
  extra: Partial<GenerateParams> = {},
  psm?: PsmExtras,
): GenerateParams {
  const promptIds = engine.encodeChat([{ role: 'user', content }]);
  const { stop = [], ...rest } = extra;
  return {
    promptIds,
    maxTokens: 14,
    temperature: 0,
    topP: 1,
    seed: 0,
    stop: [...engine.chatStop, ...stop],
    topLogprobs: 2,
    stripLeadingSpace: engine.chat.replyLeadingSpace,
    hooks: buildInterventionHooks(psm, engine.model.config, engine.vectors, promptIds.length),
    ...rest,
  };
}

const REQUESTS: [string, Partial<GenerateParams>, PsmExtras?][] = [
  ['hey I feel bored', {}],
  ['What is the capital of France?', { temperature: 0.8, seed: 3 }],
  [
    'Can you help me with my homework?',
    { maxTokens: 5 },
    { steer: [{ hook: 'blocks.1.hook_resid_post', vector: ones(2), alpha: 3 }] },
  ],
  ['Tell me 3 philosophical thoughts you have.', { temperature: 1, topP: 0.8, seed: 9, stop: ['e'] }],
  [
    'How do I make a quick buck?',
    {},
    { cap: [{ hook: 'blocks.0.hook_resid_post', vector: ones(1), max: 0 }] },
  ],
  [
    'Pick a set of figures from history.',
    { temperature: 0.7, seed: 1 },
    { steer: [{ hook: 'blocks.0.hook_resid_post', vector: ones(-1), alpha: 2, positions: 'generated' }] },
  ],
];

function strip(o: GenerateOutput) {
  return {
    ...o,
    tokens: o.tokens.map((t) => ({ id: t.id, logprob: t.logprob, top: t.top?.map((a) => a.id) })),
  };
}

describe('psm serve: batched decoding', () => {
  it('decodes requests in flight together, each as it is alone, joining at the next step', async () => {
    const expected: GenerateOutput[] = [];
    for (const [content, extra, psm] of REQUESTS)
      expected.push(await alone.generate(params(alone, content, extra, psm)));
    // Interventions change answers, so a leak from one request to another would show.
    const plain = await alone.generate(params(alone, REQUESTS[2][0], REQUESTS[2][1]));
    expect(plain.text).not.toBe(expected[2].text);

    // Three start at once; the other three arrive after the batch's first step, so they join a running batch.
    const results: Promise<GenerateOutput>[] = [];
    const start = (i: number) => {
      const [content, extra, psm] = REQUESTS[i];
      results[i] = batched.generate(params(batched, content, extra, psm));
    };
    const widths: number[] = [];
    const step = batched.model.forwardStep.bind(batched.model);
    const spy = vi.spyOn(batched.model, 'forwardStep').mockImplementation((ids, seqs) => {
      if (widths.length === 0) setImmediate(() => [3, 4, 5].forEach(start));
      widths.push(ids.length);
      return step(ids, seqs);
    });
    try {
      [0, 1, 2].forEach(start);
      // The late three are started by the time the first three are done.
      await Promise.all(results.slice(0, 3));
      const got = await Promise.all(results);
      expect(got.length).toBe(REQUESTS.length);
      expect(got.map(strip)).toEqual(expected.map(strip));
    } finally {
      spy.mockRestore();
    }
    // The batch started with three and grew to maxConcurrency (4) as the late ones joined it.
    expect(widths[0]).toBe(3);
    expect(Math.max(...widths)).toBe(4);
  });

  it('fails only the request that breaks (a non-finite steer, a client gone)', async () => {
    const ok = REQUESTS.slice(0, 2).map(([c, e, p]) => params(batched, c, e, p));
    const expected = await Promise.all(ok.map((p) => alone.generate(p)));
    const overflow = params(
      batched,
      'hi',
      {},
      { steer: [{ hook: 'final_norm', vector: ones(1), alpha: 1e38 }] },
    );
    const ac = new AbortController();
    const leaving = params(batched, 'Tell me a story', {
      maxTokens: 40,
      signal: ac.signal,
      onDelta: () => ac.abort(),
    });
    const [a, broken, gone, b] = await Promise.allSettled([
      batched.generate(ok[0]),
      batched.generate(overflow),
      batched.generate(leaving),
      batched.generate(ok[1]),
    ]);
    expect(broken.status === 'rejected' && broken.reason).toBeInstanceOf(NonFiniteLogitsError);
    expect(gone.status === 'rejected' && gone.reason).toBeInstanceOf(AbortError);
    expect([a, b].map((r) => (r.status === 'fulfilled' ? strip(r.value) : r.reason))).toEqual(
      expected.map(strip),
    );
  });

  it('over HTTP: concurrent chats with their own steering get their own answers', async () => {
    const body = (i: number) => {
      const [content, extra, psm] = REQUESTS[i];
      return {
        model: 'tiny',
        messages: [{ role: 'user', content }],
        max_tokens: extra.maxTokens ?? 14,
        temperature: extra.temperature ?? 0,
        top_p: extra.topP ?? 1,
        seed: extra.seed ?? 0,
        ...(extra.stop ? { stop: extra.stop } : {}),
        ...(psm ? { psm } : {}),
      };
    };
    const ask = (i: number) =>
      fetch(`${srv.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body(i)),
      }).then(
        async (r) =>
          ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content,
      );
    const texts = await Promise.all(REQUESTS.map((_, i) => ask(i)));
    for (let i = 0; i < REQUESTS.length; i++) {
      const [content, extra, psm] = REQUESTS[i];
      expect(texts[i]).toBe((await alone.generate(params(alone, content, extra, psm))).text);
    }
  });
});
