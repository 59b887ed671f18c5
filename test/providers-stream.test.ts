/**
 * Streamed generation through the OpenAI-compatible provider (CallOptions.onText): against psm serve, a streamed
 * answer equals the unstreamed one (text, finish reason, log-probabilities, usage) for chat and completions, greedy
 * and seeded; against a scripted fetch, the edge cases: chunks split anywhere (inside a UTF-8 character), a chunk of
 * bad JSON or the wrong shape, an error event, a cut-off stream, a timeout and an abort mid-stream, an endpoint that
 * ignores `stream: true`, and the cache (stored whole, a hit delivered as one piece).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache, withCache } from '../src/providers/cache.ts';
import { AbortError } from '../src/providers/limit.ts';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { OpenAICompatProvider, type OpenAICompatOptions } from '../src/providers/openai-compat.ts';
import { ProviderError, type GenerateRequest } from '../src/providers/types.ts';
import { startServer, type RunningServer } from '../src/serve/server.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

let dir: string;
let srv: RunningServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-providers-stream-'));

beforeAll(async () => {
  dir = makeTinyModelFolder();
  srv = await startServer(LocalEngine.load(dir, { id: 'tiny', maxTokens: 64 }), { port: 0 });
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Streams `req` and collects the pieces onText received. */
async function streamed(p: { generate: OpenAICompatProvider['generate'] }, req: GenerateRequest) {
  const pieces: string[] = [];
  const res = await p.generate(req, { onText: (t) => pieces.push(t) });
  return { res, pieces };
}

describe('streaming from psm serve', () => {
  it('gives the unstreamed answer, piece by piece, for chat and completions, greedy and seeded', async () => {
    const bodies: Record<string, unknown>[] = [];
    const p = new OpenAICompatProvider({
      baseUrl: `${srv.url}/v1`,
      model: 'tiny',
      fetch: (url, init) => {
        bodies.push(JSON.parse(String(init?.body)) as Record<string, unknown>);
        return fetch(url, init);
      },
    });
    const chat = [{ role: 'user' as const, content: 'hey I feel bored' }];
    const requests: GenerateRequest[] = [
      { messages: chat, maxTokens: 16, temperature: 0, logprobs: true, topLogprobs: 3 },
      { messages: chat, maxTokens: 16, temperature: 1, seed: 7 },
      { prompt: 'Mara lived in a small town', maxTokens: 12, temperature: 0, logprobs: true, topLogprobs: 2 },
      { prompt: 'User: What is the capital', maxTokens: 12, temperature: 0.9, seed: 3 },
    ];
    for (const req of requests) {
      const whole = await p.generate(req);
      const { res, pieces } = await streamed(p, req);
      expect(res).toEqual(whole);
      expect(pieces.join('')).toBe(whole.text);
      expect(pieces.length).toBeGreaterThan(1);
      expect(whole.usage!.completionTokens).toBeGreaterThan(0);
      if (req.logprobs) expect(res.tokens!.length).toBe(whole.usage!.completionTokens);
    }
    // Unstreamed requests do not ask for a stream; streamed ones ask for the usage chunk too.
    expect(bodies.filter((b) => b.stream === true)).toHaveLength(requests.length);
    for (const b of bodies.filter((x) => x.stream === true))
      expect(b.stream_options).toEqual({ include_usage: true });
    expect(bodies.filter((b) => b.stream === undefined)).toHaveLength(requests.length);
  });

  it('stops when the caller aborts mid-stream, and the server serves on', async () => {
    const p = new OpenAICompatProvider({ baseUrl: `${srv.url}/v1`, model: 'tiny', maxRetries: 0 });
    const ac = new AbortController();
    const pieces: string[] = [];
    const req: GenerateRequest = { prompt: 'Numbers: 0 1 2', maxTokens: 48, temperature: 1, seed: 1 };
    const err = await p
      .generate(req, {
        signal: ac.signal,
        onText: (t) => {
          pieces.push(t);
          ac.abort();
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(pieces).toHaveLength(1);
    const again = await streamed(p, req);
    expect(again.pieces[0]).toBe(pieces[0]);
    expect(again.res.text.startsWith(pieces[0])).toBe(true);
  });
});

// --- a scripted fetch ----------------------------------------------------------------------------------------

/** One answer of the scripted fetch: its status, content type and body parts (a number is a pause in ms). */
interface Reply {
  status?: number;
  type?: string;
  headers?: Record<string, string>;
  parts: (string | Uint8Array | number)[];
  /** Keep the body open after the parts (a stalled stream). */
  hang?: boolean;
}

/** A fetch that answers from `replies` in order, ignoring the signal (the provider must stop reading itself). */
function scriptedFetch(replies: Reply[]) {
  const log = { calls: 0, cancelled: 0 };
  const fetchFn = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    JSON.parse(String(init?.body));
    log.calls++;
    const reply = replies.shift();
    if (!reply) throw new Error('the script has no more replies');
    const encoder = new TextEncoder();
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const part of reply.parts) {
          if (cancelled) return;
          if (typeof part === 'number') await new Promise((r) => setTimeout(r, part));
          else controller.enqueue(typeof part === 'string' ? encoder.encode(part) : part);
        }
        if (!reply.hang && !cancelled) controller.close();
      },
      cancel() {
        cancelled = true;
        log.cancelled++;
      },
    });
    return new Response(body, {
      status: reply.status ?? 200,
      headers: { 'content-type': reply.type ?? 'text/event-stream', ...reply.headers },
    });
  };
  return { fetchFn: fetchFn as typeof fetch, log };
}

const event = (data: unknown, type?: string) =>
  `${type ? `event: ${type}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
const chatChunk = (
  content: string | null,
  finish: string | null = null,
  extra: Record<string, unknown> = {},
) =>
  event({
    model: 'fake-model',
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish, ...extra }],
  });
const USAGE = event({ model: 'fake-model', choices: [], usage: { prompt_tokens: 5, completion_tokens: 3 } });
const DONE = event('[DONE]');
/** A whole, well-formed stream saying "Hello world". */
const GOOD = [chatChunk(''), chatChunk('Hello'), chatChunk(' world'), chatChunk(null, 'stop'), USAGE, DONE];

const ask: GenerateRequest = { messages: [{ role: 'user', content: 'hi' }], maxTokens: 8, temperature: 0 };
const fast = { backoffBaseMs: 1, backoffMaxMs: 5, timeoutMs: 2000 };

function scripted(replies: Reply[], opts: Partial<OpenAICompatOptions> = {}) {
  const { fetchFn, log } = scriptedFetch(replies);
  const retries: string[] = [];
  const provider = new OpenAICompatProvider({
    baseUrl: 'http://fake.test/v1',
    model: 'm',
    fetch: fetchFn,
    onRetry: (i) => retries.push(i.reason),
    ...fast,
    ...opts,
  });
  return { provider, log, retries };
}

describe('streaming edge cases (scripted fetch)', () => {
  it('assembles text, finish reason, log-probabilities and usage from chunks split anywhere', async () => {
    const lp = (token: string, logprob: number) => ({
      content: [{ token, logprob, top_logprobs: [{ token, logprob }] }],
    });
    const text = [
      chatChunk(''),
      chatChunk('Caf', null, { logprobs: lp('Caf', -0.5) }),
      chatChunk('é ☕', null, { logprobs: lp('é ☕', -1.5) }),
      chatChunk(null, 'length'),
      USAGE,
      DONE,
    ].join('');
    // Cut the bytes at odd places, including inside the two multi-byte characters.
    const bytes = new TextEncoder().encode(text);
    const cuts = [1, 7, 60, bytes.indexOf(0xc3) + 1, bytes.indexOf(0xe2) + 2, bytes.length - 3, bytes.length];
    const parts: Uint8Array[] = [];
    cuts.reduce((from, to) => (parts.push(bytes.slice(from, to)), to), 0);
    const { provider } = scripted([{ parts }]);
    const { res, pieces } = await streamed(provider, { ...ask, logprobs: true, topLogprobs: 1 });
    expect(pieces).toEqual(['Caf', 'é ☕']);
    expect(res).toEqual({
      text: 'Café ☕',
      finishReason: 'length',
      model: 'fake-model',
      usage: { promptTokens: 5, completionTokens: 3 },
      tokens: [
        { token: 'Caf', logprob: -0.5, top: [{ token: 'Caf', logprob: -0.5 }] },
        { token: 'é ☕', logprob: -1.5, top: [{ token: 'é ☕', logprob: -1.5 }] },
      ],
    });
  });

  it('retries a bad chunk that comes before any text, and fails at once on one after it', async () => {
    const early = scripted([
      { parts: [chatChunk(''), event('{"choices": [{"delta": {"content": "trunc')] },
      { parts: GOOD },
    ]);
    const { res, pieces } = await streamed(early.provider, ask);
    expect(res.text).toBe('Hello world');
    expect(pieces).toEqual(['Hello', ' world']);
    expect(early.log.calls).toBe(2);
    expect(early.retries[0]).toMatch(/sent a stream event that is not JSON/);

    const late = scripted([{ parts: [chatChunk('Hel'), event('{oops')], hang: true }, { parts: GOOD }]);
    const got: string[] = [];
    const err = (await late.provider
      .generate(ask, { onText: (t) => got.push(t) })
      .catch((e: unknown) => e)) as ProviderError;
    expect(err).toBeInstanceOf(ProviderError);
    expect(err.options.retryable).toBe(false);
    expect(err.message).toMatch(/not JSON: \{oops .*after 3 characters of the reply were streamed/);
    expect(got).toEqual(['Hel']);
    expect(late.log.calls).toBe(1);
    expect(late.log.cancelled).toBe(1);
  });

  it('names the field of a chunk of the wrong shape', async () => {
    const { provider, log } = scripted([{ parts: [chatChunk('Hi'), event({ choices: [{ delta: 'x' }] })] }]);
    await expect(streamed(provider, ask)).rejects.toThrow(/unexpected stream event \(choices\.0\.delta: /);
    expect(log.calls).toBe(1);
  });

  it("reports an error event mid-stream with the endpoint's message; one before any text is retried", async () => {
    const late = scripted([
      {
        parts: [
          chatChunk('Hi'),
          event({ error: { message: "the model's output is not finite", type: 'server_error' } }),
        ],
      },
    ]);
    await expect(streamed(late.provider, ask)).rejects.toThrow(
      /reported an error mid-stream: the model's output is not finite \(after 2 characters/,
    );
    const early = scripted([
      { parts: [chatChunk(''), event({ error: { message: 'overloaded' } }, 'error')] },
      { parts: GOOD },
    ]);
    expect((await streamed(early.provider, ask)).res.text).toBe('Hello world');
    expect(early.retries).toEqual([expect.stringMatching(/reported an error mid-stream: overloaded/)]);
  });

  it('treats a stream that ends before its finish reason as cut off', async () => {
    const early = scripted([{ parts: [chatChunk('')] }, { parts: GOOD }]);
    expect((await streamed(early.provider, ask)).res.text).toBe('Hello world');
    expect(early.retries[0]).toMatch(/the stream ended before the reply was complete/);
    const late = scripted([{ parts: [chatChunk('Hel')] }]);
    await expect(streamed(late.provider, ask)).rejects.toThrow(
      /ended before the reply was complete \(after 3/,
    );
    // A finish reason without [DONE] is a complete reply (some servers end there).
    const noDone = scripted([{ parts: [chatChunk('Hi'), chatChunk(null, 'stop')] }]);
    expect((await streamed(noDone.provider, ask)).res).toEqual({
      text: 'Hi',
      finishReason: 'stop',
      model: 'fake-model',
    });
  });

  it('times out a stalled stream: retried before any text, an error after it', async () => {
    const early = scripted([{ parts: [chatChunk('')], hang: true }, { parts: GOOD }], { timeoutMs: 150 });
    expect((await streamed(early.provider, ask)).res.text).toBe('Hello world');
    expect(early.retries[0]).toMatch(/timed out after 150 ms/);
    const late = scripted([{ parts: [chatChunk('Hel')], hang: true }, { parts: GOOD }], { timeoutMs: 150 });
    await expect(streamed(late.provider, ask)).rejects.toThrow(/timed out after 150 ms \(after 3 characters/);
    expect(late.log.calls).toBe(1);
    expect(late.log.cancelled).toBe(1);
  });

  it('stops reading when the caller aborts mid-stream', async () => {
    // From inside onText, with more chunks already read: none of them is handed on.
    const inside = scripted([{ parts: [chatChunk('Hel') + chatChunk('lo'), chatChunk('!')], hang: true }]);
    const ac = new AbortController();
    const got: string[] = [];
    const err = await inside.provider
      .generate(ask, { signal: ac.signal, onText: (t) => (got.push(t), ac.abort()) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(got).toEqual(['Hel']);
    expect(inside.log.cancelled).toBe(1);
    // While the stream stalls (this fetch ignores the signal; the provider cancels the body itself).
    const stalled = scripted([{ parts: [chatChunk('Hel'), 20, chatChunk('lo'), 5_000, chatChunk('!')] }]);
    const later = new AbortController();
    const seen: string[] = [];
    const t0 = Date.now();
    setTimeout(() => later.abort(), 100);
    await expect(
      stalled.provider.generate(ask, { signal: later.signal, onText: (t) => seen.push(t) }),
    ).rejects.toBeInstanceOf(AbortError);
    expect(seen).toEqual(['Hel', 'lo']);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(stalled.log.cancelled).toBe(1);
  });

  it('retries an error status before the stream, honouring Retry-After', async () => {
    const { provider, retries } = scripted([
      {
        status: 429,
        type: 'application/json',
        headers: { 'retry-after': '0' },
        parts: [JSON.stringify({ error: { message: 'slow down' } })],
      },
      { parts: GOOD },
    ]);
    expect((await streamed(provider, ask)).res.text).toBe('Hello world');
    expect(retries).toEqual([expect.stringMatching(/answered 429: slow down/)]);
  });

  it('reads an endpoint that ignores stream: true as one piece', async () => {
    const whole = {
      model: 'fake-model',
      choices: [{ index: 0, message: { content: 'all at once' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 2, completion_tokens: 3 },
    };
    const { provider } = scripted([{ type: 'application/json', parts: [JSON.stringify(whole)] }]);
    const { res, pieces } = await streamed(provider, ask);
    expect(pieces).toEqual(['all at once']);
    expect(res).toEqual({
      text: 'all at once',
      finishReason: 'stop',
      model: 'fake-model',
      usage: { promptTokens: 2, completionTokens: 3 },
    });
  });

  it('caches a streamed answer whole and delivers a hit in one piece', async () => {
    const { provider, log } = scripted([{ parts: GOOD }]);
    const cached = withCache(provider, new DiskCache(path.join(tmp, 'cache')));
    const first = await streamed(cached, ask);
    expect(first.pieces).toEqual(['Hello', ' world']);
    const hit = await streamed(cached, ask);
    expect(hit.pieces).toEqual(['Hello world']);
    expect(hit.res).toEqual({ ...first.res, cached: true });
    expect(await cached.generate(ask)).toEqual({ ...first.res, cached: true });
    expect(log.calls).toBe(1);
  });
});
