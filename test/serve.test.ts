/**
 * psm serve against the official openai npm client: model list, chat and completions (streaming, logprobs,
 * echo, stop, n, seed), PSM extras, and bad input answered with OpenAI-style errors while the server keeps
 * serving. A tiny random model keeps it fast.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../src/model/generate.ts';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { startServer, type RunningServer } from '../src/serve/server.ts';
import { holdBack, topK } from '../src/providers/local-engine.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

const KEY = 'sk-test-serve';
let dir: string;
let engine: LocalEngine;
let srv: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  dir = makeTinyModelFolder();
  const vectorsFile = path.join(dir, 'vectors.json');
  fs.writeFileSync(
    vectorsFile,
    JSON.stringify({
      push: {
        vector: Array.from({ length: 32 }, (_, i) => (i % 2 ? 3 : -3)),
        hook: 'blocks.1.hook_resid_post',
      },
    }),
  );
  engine = LocalEngine.load(dir, { id: 'tiny', maxTokens: 64, maxConcurrency: 1, maxQueue: 8, vectorsFile });
  srv = await startServer(engine, { port: 0, apiKey: KEY, maxBodyBytes: 64 * 1024 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const chat = (content: string, extra: Record<string, unknown> = {}) =>
  client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content }],
    max_tokens: 16,
    temperature: 0,
    ...extra,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);

describe('psm serve: OpenAI client round trip', () => {
  it('listens on loopback and lists the model', async () => {
    expect(srv.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);
    const one = await client.models.retrieve('tiny');
    expect(one.owned_by).toBe('psm-lab');
  });

  it('greedy chat equals the engine generate() under the PSM chat format', async () => {
    const r = await chat('hey I feel bored');
    const c = r.choices[0];
    expect(r.object).toBe('chat.completion');
    expect(c.message.role).toBe('assistant');
    const ids = engine.encodeChat([{ role: 'user', content: 'hey I feel bored' }]);
    const eot = engine.tokenizer.tokenToId('<|endoftext|>')!;
    const ref = engine.tokenizer.decode(
      generate(engine.model, ids, { maxNewTokens: 16, temperature: 0, stopIds: [eot] }).filter(
        (t) => t !== eot,
      ),
    );
    const expected = ref.split('\n')[0].replace(/^ /, '');
    expect(c.message.content).toBe(expected);
    expect(c.finish_reason).toBe(ref.includes('\n') || ref.length < 16 ? 'stop' : expect.any(String));
    expect(r.usage!.prompt_tokens).toBe(ids.length);
  });

  it('a seed reproduces a sample and matches generate() with the same seed', async () => {
    const a = await client.completions.create({
      model: 'tiny',
      prompt: 'User: hello\nAssistant:',
      max_tokens: 12,
      temperature: 0.9,
      top_p: 0.95,
      seed: 42,
    });
    const b = await client.completions.create({
      model: 'tiny',
      prompt: 'User: hello\nAssistant:',
      max_tokens: 12,
      temperature: 0.9,
      top_p: 0.95,
      seed: 42,
    });
    expect(a.choices[0].text).toBe(b.choices[0].text);
    const ids = engine.encodeText('User: hello\nAssistant:');
    const eot = engine.tokenizer.tokenToId('<|endoftext|>')!;
    const ref = generate(engine.model, ids, {
      maxNewTokens: 12,
      temperature: 0.9,
      topP: 0.95,
      seed: 42,
      stopIds: [eot],
    }).filter((t) => t !== eot);
    expect(a.choices[0].text).toBe(engine.tokenizer.decode(ref));
  });

  it('streams the same text as the non-streaming answer, with usage and logprobs', async () => {
    const plain = await client.completions.create({
      model: 'tiny',
      prompt: 'The Assistant',
      max_tokens: 20,
      temperature: 0,
      logprobs: 2,
    });
    const stream = await client.completions.create({
      model: 'tiny',
      prompt: 'The Assistant',
      max_tokens: 20,
      temperature: 0,
      logprobs: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let tokens = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const ch of stream) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) {
        text += c.text;
        tokens += c.logprobs?.tokens?.length ?? 0;
      }
    }
    expect(text).toBe(plain.choices[0].text);
    expect(tokens).toBe(plain.choices[0].logprobs!.tokens!.length);
    expect(usage!.completion_tokens).toBe(plain.usage!.completion_tokens);

    const chatPlain = await chat('What is the capital of France?');
    const chatStream = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let chatText = '';
    let finish: string | null = null;
    for await (const ch of chatStream) {
      chatText += ch.choices[0]?.delta?.content ?? '';
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(chatText).toBe(chatPlain.choices[0].message.content);
    expect(finish).toBe(chatPlain.choices[0].finish_reason);
  });

  it('returns chat logprobs with top alternatives consistent with the choice', async () => {
    const r = await chat('Can you help me with my homework?', { logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs!.content!;
    expect(content.length).toBeGreaterThan(0);
    for (const t of content) {
      expect(t.top_logprobs).toHaveLength(3);
      // Greedy: the chosen token is the most likely one.
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0].logprob, 5);
      expect(t.top_logprobs[0].logprob).toBeGreaterThanOrEqual(t.top_logprobs[1].logprob);
      expect(Math.exp(t.top_logprobs[0].logprob) + Math.exp(t.top_logprobs[1].logprob)).toBeLessThanOrEqual(
        1 + 1e-6,
      );
      expect(t.bytes!.length).toBeGreaterThan(0);
    }
  });

  it('echo returns prompt log-probabilities that agree with the engine scorer', async () => {
    const prompt = 'User: What is the capital of France?\nAssistant:';
    const cont = ' The capital of France is Paris.';
    const r = await client.completions.create({
      model: 'tiny',
      prompt: prompt + cont,
      max_tokens: 0,
      echo: true,
      logprobs: 0,
    });
    const lp = r.choices[0].logprobs!;
    expect(r.choices[0].text).toBe(prompt + cont);
    expect(lp.tokens!.join('')).toBe(prompt + cont);
    const start = lp.text_offset!.findIndex((o) => o >= prompt.length);
    const sum = lp.token_logprobs!.slice(start).reduce((s, x) => s! + x!, 0)!;
    const [ref] = await engine.score(prompt, [cont]);
    expect(sum).toBeCloseTo(ref, 3);
    expect(lp.token_logprobs!.every((x) => typeof x === 'number')).toBe(true);
  });

  it('scores a prompt that fills the whole context when echo asks only for log-probabilities', async () => {
    let prompt = 'Mara lived in a small town by the river.';
    while (engine.encodeText(prompt + ' river').length <= engine.contextLength) prompt += ' river';
    expect(engine.encodeText(prompt).length).toBe(engine.contextLength);
    const r = await client.completions.create({
      model: 'tiny',
      prompt,
      max_tokens: 1,
      echo: true,
      logprobs: 0,
    });
    expect(r.choices[0].text).toBe(prompt);
    expect(r.choices[0].logprobs!.tokens!.length).toBe(engine.contextLength - 1);
    expect(r.choices[0].finish_reason).toBe('length');
    await expectApiError(
      client.completions.create({ model: 'tiny', prompt, max_tokens: 1 }),
      400,
      undefined,
      'context_length_exceeded',
    );
  });

  it('stops at a stop string, streaming or not', async () => {
    const free = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 24,
      temperature: 0,
    });
    const text = free.choices[0].text;
    expect(text.length).toBeGreaterThan(6);
    const stop = text.slice(4, 6);
    const expected = text.slice(0, text.indexOf(stop));
    const cut = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 24,
      temperature: 0,
      stop: [stop],
    });
    expect(cut.choices[0].text).toBe(expected);
    expect(cut.choices[0].finish_reason).toBe('stop');
    const s = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 24,
      temperature: 0,
      stop: stop,
      stream: true,
    });
    let streamed = '';
    for await (const ch of s) streamed += ch.choices[0]?.text ?? '';
    expect(streamed).toBe(expected);
  });

  it('gives n choices, and batches several prompts', async () => {
    const r = await chat('hey I feel bored', { n: 3, temperature: 1, seed: 5 });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const multi = await client.completions.create({
      model: 'tiny',
      prompt: ['User: hi\nAssistant:', 'Mara lived'],
      max_tokens: 4,
      temperature: 0,
    });
    expect(multi.choices.map((c) => c.index)).toEqual([0, 1]);
  });

  it('applies PSM steering (inline and named vectors) and capping', async () => {
    const base = await chat('hey I feel bored');
    const zero = await chat('hey I feel bored', {
      psm: { steer: [{ hook: 'blocks.1.hook_resid_post', vector: Array(32).fill(1), alpha: 0 }] },
    });
    expect(zero.choices[0].message.content).toBe(base.choices[0].message.content);
    const steered = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 12,
      temperature: 0,
      logprobs: 0,
    });
    const strong = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 12,
      temperature: 0,
      logprobs: 0,
      psm: { steer: [{ vector: 'push', alpha: 40 }] },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(strong.choices[0].logprobs!.token_logprobs).not.toEqual(
      steered.choices[0].logprobs!.token_logprobs,
    );
    const capped = await client.completions.create({
      model: 'tiny',
      prompt: 'Mara lived',
      max_tokens: 4,
      temperature: 0,
      psm: {
        cap: [{ hook: 'blocks.0.hook_resid_post', vector: 'push', min: -0.5, max: 0.5 }],
        ablate: [{ hook: 'blocks.1.hook_resid_mid', vector: Array(32).fill(1), positions: 'generated' }],
      },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(capped.choices[0].text.length).toBeGreaterThanOrEqual(0);
  });
});

async function expectApiError(
  p: Promise<unknown>,
  status: number,
  param?: string | null,
  code?: string,
): Promise<APIError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(APIError);
    const err = e as APIError;
    expect(err.status).toBe(status);
    if (param !== undefined) expect(err.param).toBe(param);
    if (code !== undefined) expect(err.code).toBe(code);
    return err;
  }
  throw new Error('expected an API error');
}

describe('psm serve: bad input', () => {
  it('answers wrong types, huge max_tokens and malformed steering with OpenAI-style 400s', async () => {
    await expectApiError(
      client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 5 as unknown as string }],
      }),
      400,
      'messages[0].content',
      'invalid_value',
    );
    await expectApiError(chat('hi', { max_tokens: 1e9 }), 400, 'max_tokens', 'max_tokens_too_large');
    await expectApiError(chat('hi', { temperature: 'hot' }), 400, 'temperature');
    await expectApiError(
      chat('hi', {
        psm: { steer: [{ hook: 'blocks.9.hook_resid_post', vector: Array(32).fill(1), alpha: 1 }] },
      }),
      400,
      'psm.steer[0].hook',
      'invalid_psm_extras',
    );
    await expectApiError(
      chat('hi', { psm: { steer: [{ hook: 'blocks.0.hook_resid_post', vector: [1, 2, 3], alpha: 1 }] } }),
      400,
      'psm.steer[0].vector',
    );
    await expectApiError(
      chat('hi', { psm: { steer: [{ hook: 'blocks.0.hook_resid_post', vector: 'nope', alpha: 1 }] } }),
      400,
      'psm.steer[0].vector',
    );
    await expectApiError(
      chat('hi', { psm: { steer: [{ hook: 'blocks.0.hook_resid_post', vector: Array(32).fill(1) }] } }),
      400,
      'psm.steer[0].alpha',
    );
    await expectApiError(chat('hi', { psm: { steer: 'yes' } }), 400, 'psm.steer');
    await expectApiError(
      chat('hi', { psm: { cap: [{ hook: 'blocks.0.hook_resid_post', vector: Array(32).fill(0), min: 0 }] } }),
      400,
      'psm.cap[0].vector',
    );
    await expectApiError(
      client.chat.completions.create({ model: 'other', messages: [{ role: 'user', content: 'hi' }] }),
      404,
      'model',
      'model_not_found',
    );
    await expectApiError(chat('word '.repeat(400)), 400, undefined, 'context_length_exceeded');
  });

  it('rejects bad JSON, oversized bodies, missing keys, unknown paths and methods', async () => {
    const post = (p: string, body: string, headers: Record<string, string> = {}) =>
      fetch(`${srv.url}${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
        body,
      });
    const bad = await post('/v1/chat/completions', '{"model": "tiny", "messages": [');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string; type: string } }).error).toMatchObject({
      code: 'invalid_json',
      type: 'invalid_request_error',
    });
    const notObject = await post('/v1/completions', '[1,2]');
    expect(notObject.status).toBe(400);
    const huge = await post(
      '/v1/completions',
      JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(100_000) }),
    );
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: { code: string } }).error.code).toBe('request_too_large');
    const noKey = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expectApiError(noKey.models.list(), 401, null, 'invalid_api_key');
    const anon = await fetch(`${srv.url}/v1/models`);
    expect(anon.status).toBe(401);
    const unknown = await fetch(`${srv.url}/v1/embeddings`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(unknown.status).toBe(404);
    const wrongMethod = await fetch(`${srv.url}/v1/chat/completions`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(wrongMethod.status).toBe(405);
    const health = await fetch(`${srv.url}/health`);
    expect(((await health.json()) as { status: string }).status).toBe('ok');
    // Still serving.
    const ok = await chat('hi');
    expect(ok.choices).toHaveLength(1);
  });

  it('refuses with 429 when the queue is full, and frees the slot when a client goes away', async () => {
    const busy = new LocalEngine(engine.model, engine.tokenizer, {
      id: 'busy',
      maxTokens: 100,
      maxConcurrency: 1,
      maxQueue: 0,
    });
    const s2 = await startServer(busy, { port: 0 });
    try {
      const c2 = new OpenAI({ baseURL: `${s2.url}/v1`, apiKey: 'none', maxRetries: 0 });
      const ac = new AbortController();
      const long = await c2.completions.create(
        // Greedy: a sampled end token could free the slot before the second request arrives.
        { model: 'busy', prompt: 'Mara', max_tokens: 100, temperature: 0, stream: true, stop: [] },
        { signal: ac.signal },
      );
      const it = long[Symbol.asyncIterator]();
      await it.next();
      expect(busy.slots.inUse).toBe(1);
      const err = await expectApiError(
        c2.completions.create({ model: 'busy', prompt: 'Mara', max_tokens: 2 }),
        429,
        null,
        'rate_limit_exceeded',
      );
      expect(err.headers?.get('retry-after')).toBe('1');
      ac.abort();
      await it.return?.();
      for (let i = 0; i < 100 && busy.slots.inUse > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(busy.slots.inUse).toBe(0);
      const after = await c2.completions.create({ model: 'busy', prompt: 'Mara', max_tokens: 2 });
      expect(after.choices).toHaveLength(1);
    } finally {
      await s2.close();
    }
  });
});

describe('engine helpers', () => {
  it('holds back a possible stop-string prefix and incomplete characters', () => {
    expect(holdBack('hello wor', ['world'])).toBe(3);
    expect(holdBack('hello', ['\n'])).toBe(0);
    expect(holdBack('ab\uFFFD', [])).toBe(1);
  });
  it('finds the top k values', () => {
    expect(topK(Float32Array.from([0.1, 0.5, 0.3, 0.5, -1]), 3)).toEqual([1, 3, 2]);
  });
});
