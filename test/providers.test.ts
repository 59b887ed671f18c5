/**
 * Providers: the local engine, an OpenAI-compatible endpoint (psm serve itself, and a fault-injecting fake
 * that answers 429/500/garbage or hangs), the on-disk cache (no secrets in keys or files), and a GGUF file
 * through node-llama-cpp when the package is installed.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskCache, cacheKey, redactLocation, withCache } from '../src/providers/cache.ts';
import {
  AbortError,
  backoffDelay,
  parseRetryAfter,
  Semaphore,
  QueueFullError,
} from '../src/providers/limit.ts';
import { LocalProvider } from '../src/providers/local.ts';
import { OpenAICompatProvider } from '../src/providers/openai-compat.ts';
import { parseProviderSpec } from '../src/providers/spec.ts';
import { ProviderError } from '../src/providers/types.ts';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { loadTokenizerSync } from '../src/tokenizer/index.ts';
import { startServer, type RunningServer } from '../src/serve/server.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

let dir: string;
let engine: LocalEngine;
let local: LocalProvider;
let srv: RunningServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-providers-'));

beforeAll(async () => {
  dir = makeTinyModelFolder();
  engine = LocalEngine.load(dir, { id: 'tiny', maxTokens: 64, maxQueue: 64 });
  local = new LocalProvider(engine);
  srv = await startServer(engine, { port: 0 });
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(tmp, { recursive: true, force: true });
});

// --- a fault-injecting fake endpoint -------------------------------------------------------------------------

type Behaviour = '429' | '500' | 'garbage' | 'wrong-shape' | 'hang' | '400' | 'ok' | 'slow-ok';

interface Fake {
  url: string;
  calls: { auth?: string; body: Record<string, unknown> }[];
  maxInFlight: number;
  script: Behaviour[];
  close(): Promise<void>;
}

async function fakeEndpoint(script: Behaviour[], fallback: Behaviour = 'ok'): Promise<Fake> {
  let inFlight = 0;
  const fake: Fake = { url: '', calls: [], maxInFlight: 0, script, close: async () => undefined };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      fake.calls.push({ auth: req.headers.authorization, body: parsed });
      const b = fake.script.shift() ?? fallback;
      inFlight++;
      fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
      const done = () => inFlight--;
      res.on('close', done);
      const okBody = () => {
        const msg =
          (parsed.messages as { content: string }[] | undefined)?.[0]?.content ?? String(parsed.prompt);
        return JSON.stringify({
          id: 'x',
          object: 'chat.completion',
          model: 'fake-model',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: `echo: ${msg}` },
              finish_reason: 'stop',
              logprobs: {
                content: [
                  {
                    token: '42',
                    logprob: -0.1,
                    top_logprobs: [
                      { token: '42', logprob: -0.1 },
                      { token: '7', logprob: -2.4 },
                    ],
                  },
                ],
              },
            },
          ],
          usage: { prompt_tokens: 3, completion_tokens: 1 },
        });
      };
      switch (b) {
        case '429':
          res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '0' });
          res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error' } }));
          break;
        case '500':
          res.writeHead(500);
          res.end('<html>internal error</html>');
          break;
        case 'garbage':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"choices": [{"message": {"content": "trunc');
          break;
        case 'wrong-shape':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ choices: 'none' }));
          break;
        case 'hang':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"choices": ');
          break; // never ends
        case '400':
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              error: {
                message: 'max_tokens is too large',
                type: 'invalid_request_error',
                param: 'max_tokens',
                code: null,
              },
            }),
          );
          break;
        case 'slow-ok':
          setTimeout(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(okBody());
          }, 40);
          break;
        default:
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(okBody());
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  fake.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return fake;
}

const fast = { backoffBaseMs: 1, backoffMaxMs: 5, timeoutMs: 300 };
const ask = { messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 4, temperature: 0 };

describe('local provider', () => {
  it('generates chat and raw text and scores continuations', async () => {
    const r = await local.generate({ ...ask, logprobs: true, topLogprobs: 2 });
    expect(r.model).toBe('tiny');
    expect(r.tokens!.every((t) => t.top!.length === 2)).toBe(true);
    const raw = await local.generate({ prompt: 'Mara lived', maxTokens: 5, temperature: 0 });
    expect(raw.usage!.completionTokens).toBeLessThanOrEqual(5);
    const [a, b] = await local.score('User: hi\nAssistant:', [' Of course', ' Paris']);
    expect(a).toBeLessThan(0);
    expect(b).toBeLessThan(0);
    await expect(local.generate({ maxTokens: 3 } as never)).rejects.toThrow(
      /exactly one of messages or prompt/,
    );
  });
});

describe('OpenAI-compatible provider against psm serve', () => {
  it('agrees with the local provider on greedy text, logprobs and echo scores', async () => {
    const remote = new OpenAICompatProvider({ baseUrl: `${srv.url}/v1`, model: 'tiny' });
    const [x, y] = await Promise.all([
      remote.generate({ ...ask, maxTokens: 12, logprobs: true, topLogprobs: 3 }),
      local.generate({ ...ask, maxTokens: 12, logprobs: true, topLogprobs: 3 }),
    ]);
    expect(x.text).toBe(y.text);
    // The two replies are decoded in one batch for some steps and alone for others: the same numbers to float32
    // rounding (a single row's matmul sums in another order than several rows').
    x.tokens!.forEach((t, i) => expect(t.logprob).toBeCloseTo(y.tokens![i].logprob, 5));
    expect(x.tokens!.length).toBe(y.tokens!.length);
    expect(x.tokens![0].top!.map((t) => t.token)).toEqual(y.tokens![0].top!.map((t) => t.token));
    const prompt = 'User: What is the capital of France?\nAssistant:';
    const conts = [' The capital of France is Paris.', ' Of course, let us look at it together.'];
    const remoteScores = await remote.score!(prompt, conts);
    const localScores = await local.score(prompt, conts);
    remoteScores.forEach((s, i) => expect(s).toBeCloseTo(localScores[i], 3));
    const raw = await remote.generate({
      prompt: 'Mara lived',
      maxTokens: 6,
      temperature: 0,
      logprobs: true,
      topLogprobs: 2,
    });
    const rawLocal = await local.generate({ prompt: 'Mara lived', maxTokens: 6, temperature: 0 });
    expect(raw.text).toBe(rawLocal.text);
    expect(raw.tokens![0].top).toHaveLength(2);
  });
});

describe('OpenAI-compatible provider against a faulty endpoint', () => {
  it('retries 429, 5xx, garbage and hangs with backoff, then succeeds', async () => {
    const fake = await fakeEndpoint(['429', '500', 'garbage', 'wrong-shape', 'hang', 'ok']);
    const retries: string[] = [];
    const p = new OpenAICompatProvider({
      baseUrl: fake.url,
      model: 'm',
      apiKey: 'sk-live-abc',
      ...fast,
      onRetry: (i) => retries.push(i.reason),
    });
    const t0 = Date.now();
    const r = await p.generate(ask);
    expect(r.text).toBe('echo: hi');
    expect(fake.calls).toHaveLength(6);
    expect(retries).toHaveLength(5);
    expect(retries[0]).toMatch(/429: slow down/);
    expect(retries[1]).toMatch(/500/);
    expect(retries[2]).toMatch(/not JSON/);
    expect(retries[3]).toMatch(/unexpected response/);
    expect(retries[4]).toMatch(/timed out after 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(fake.calls[0].auth).toBe('Bearer sk-live-abc');
    await fake.close();
  });

  it('fails at once on other 4xx with the endpoint message, and gives up after max retries', async () => {
    const fake = await fakeEndpoint(['400'], '500');
    const p = new OpenAICompatProvider({ baseUrl: fake.url, model: 'm', maxRetries: 2, ...fast });
    await expect(p.generate(ask)).rejects.toThrow(/answered 400: max_tokens is too large/);
    expect(fake.calls).toHaveLength(1);
    const err = await p.generate(ask).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as Error).message).toMatch(/giving up after 3 attempts/);
    expect(fake.calls).toHaveLength(4);
    await fake.close();
  });

  it('is aborted by the caller while a request hangs', async () => {
    const fake = await fakeEndpoint([], 'hang');
    const p = new OpenAICompatProvider({ baseUrl: fake.url, model: 'm', timeoutMs: 60_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(p.generate(ask, { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    await fake.close();
  });

  it('keeps at most maxConcurrency requests in flight', async () => {
    const fake = await fakeEndpoint([], 'slow-ok');
    const p = new OpenAICompatProvider({ baseUrl: fake.url, model: 'm', maxConcurrency: 2 });
    await Promise.all(Array.from({ length: 6 }, () => p.generate(ask)));
    expect(fake.calls).toHaveLength(6);
    expect(fake.maxInFlight).toBe(2);
    await fake.close();
  });

  it('rejects a bad base URL and a missing model clearly', () => {
    expect(() => new OpenAICompatProvider({ baseUrl: '127.0.0.1:8000', model: 'm' })).toThrow(/not a URL/);
    expect(() => new OpenAICompatProvider({ baseUrl: 'localhost:8000', model: 'm' })).toThrow(
      /must start with http/,
    );
    expect(() => new OpenAICompatProvider({ baseUrl: 'ftp://x/v1', model: 'm' })).toThrow(
      /must start with http/,
    );
    expect(() => new OpenAICompatProvider({ baseUrl: 'http://x/v1', model: '' })).toThrow(/model name/);
  });
});

describe('on-disk cache', () => {
  it('re-asks nothing, keeps secrets out of keys and files, and survives a changed key', async () => {
    const fake = await fakeEndpoint([]);
    const cacheDir = path.join(tmp, 'cache1');
    const secret = 'sk-very-secret-123';
    const base = fake.url.replace('http://', `http://user:pw-${secret}@`) + '?api-key=' + secret;
    const a = withCache(
      new OpenAICompatProvider({ baseUrl: base, model: 'm', apiKey: secret, headers: { 'x-extra': secret } }),
      new DiskCache(cacheDir),
    );
    const r1 = await a.generate(ask);
    const r2 = await a.generate(ask);
    expect(r1.cached).toBeUndefined();
    expect(r2.cached).toBe(true);
    expect(r2.text).toBe(r1.text);
    expect(fake.calls).toHaveLength(1);
    // Another key, same endpoint and request: a hit.
    const b = withCache(
      new OpenAICompatProvider({ baseUrl: base, model: 'm', apiKey: 'sk-other' }),
      new DiskCache(cacheDir),
    );
    expect((await b.generate(ask)).cached).toBe(true);
    expect(fake.calls).toHaveLength(1);
    // A different request or model is a miss.
    await b.generate({ ...ask, maxTokens: 5 });
    expect(fake.calls).toHaveLength(2);
    const files = fs
      .readdirSync(cacheDir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(2);
    for (const f of files) {
      const text = fs.readFileSync(path.join(cacheDir, f), 'utf8');
      expect(text).not.toContain(secret);
      expect(text).not.toContain('pw-');
      expect(f).not.toContain(secret);
    }
    expect(redactLocation(base)).toBe(fake.url);
    // Errors never show the secrets either.
    await fake.close();
    const down = new OpenAICompatProvider({ baseUrl: base, model: 'm', apiKey: secret, maxRetries: 0 });
    const err = (await down.generate(ask).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/failed/);
    expect(err.message).not.toContain(secret);
  });

  it('never caches failures, and treats a damaged entry as a miss', async () => {
    const fake = await fakeEndpoint(['500', '500', 'ok']);
    const cacheDir = path.join(tmp, 'cache2');
    const p = withCache(
      new OpenAICompatProvider({ baseUrl: fake.url, model: 'm', maxRetries: 1, ...fast }),
      new DiskCache(cacheDir),
    );
    await expect(p.generate(ask)).rejects.toThrow(/giving up/);
    expect(
      fs.existsSync(cacheDir)
        ? fs
            .readdirSync(cacheDir, { recursive: true })
            .map(String)
            .filter((f) => f.endsWith('.json'))
        : [],
    ).toHaveLength(0);
    await p.generate(ask);
    const key = cacheKey(p.identity(), 'generate', ask);
    const file = path.join(cacheDir, key.slice(0, 2), `${key}.json`);
    fs.writeFileSync(file, '{"v": 1, "key": "tor');
    const again = await p.generate(ask);
    expect(again.cached).toBeUndefined();
    expect(fake.calls).toHaveLength(4);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).key).toBe(key);
    expect((await p.generate(ask)).cached).toBe(true);
    await fake.close();
  });

  it('keys a local model folder by its weights file, so a retrained model is asked again', () => {
    const p = new LocalProvider(dir);
    const before = cacheKey(p.identity(), 'generate', ask);
    const weights = path.join(dir, 'model.safetensors');
    const t = new Date(Date.now() + 5000);
    fs.utimesSync(weights, t, t);
    expect(cacheKey(p.identity(), 'generate', ask)).not.toBe(before);
  });

  it('caches local scores', async () => {
    const p = withCache(local, new DiskCache(path.join(tmp, 'cache3')));
    const a = await p.score!('Mara', [' lived', ' went']);
    const b = await p.score!('Mara', [' lived', ' went']);
    expect(b).toEqual(a);
  });
});

describe('helpers', () => {
  it('parses provider specs', () => {
    expect(parseProviderSpec('local:models/x')).toEqual({ kind: 'local', dir: 'models/x' });
    expect(parseProviderSpec('gguf:/tmp/a.gguf')).toEqual({ kind: 'gguf', file: '/tmp/a.gguf' });
    expect(parseProviderSpec('openai:tiny@http://127.0.0.1:8000/v1')).toEqual({
      kind: 'openai',
      model: 'tiny',
      baseUrl: 'http://127.0.0.1:8000/v1',
    });
    expect(parseProviderSpec('openai:org/model@name', {})).toEqual({
      kind: 'openai',
      model: 'org/model@name',
      baseUrl: 'https://api.openai.com/v1',
    });
    expect(() => parseProviderSpec('hf:x')).toThrow(/expected local/);
  });

  it('backs off exponentially with jitter, capped, and reads Retry-After', () => {
    expect(backoffDelay(0, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelay(3, 100, 1000, () => 1)).toBe(800);
    expect(backoffDelay(10, 100, 1000, () => 1)).toBe(1000);
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });

  it('limits a semaphore and its queue', async () => {
    const s = new Semaphore(1, 1);
    const r1 = await s.acquire();
    const p2 = s.acquire();
    await expect(s.acquire()).rejects.toBeInstanceOf(QueueFullError);
    r1();
    const r2 = await p2;
    expect(s.inUse).toBe(1);
    r2();
    expect(s.inUse).toBe(0);
  });
});

describe('GGUF provider (node-llama-cpp)', () => {
  it('agrees with the local engine on scores and greedy text', async (ctx) => {
    let interop: typeof import('../src/interop/gguf.ts');
    try {
      await import('node-llama-cpp');
      interop = await import('../src/interop/gguf.ts');
    } catch {
      ctx.skip();
      return;
    }
    const { GgufProvider } = await import('../src/providers/gguf.ts');
    const file = path.join(tmp, 'tiny.gguf');
    interop.writeGgufFile(file, engine.model, loadTokenizerSync(path.join(dir, 'tokenizer.json')), {});
    const g = new GgufProvider({ modelPath: file, addBos: true });
    try {
      const prompt = 'User: What is the capital of France?\nAssistant:';
      const conts = [' The capital of France is Paris.', ' Of course'];
      const gs = await g.score(prompt, conts);
      const ls = await local.score(prompt, conts);
      gs.forEach((s, i) => expect(Math.abs(s - ls[i])).toBeLessThan(1e-2 * Math.max(1, Math.abs(ls[i]))));
      const a = await g.generate({
        prompt: 'Mara lived',
        maxTokens: 8,
        temperature: 0,
        logprobs: true,
        topLogprobs: 2,
      });
      const b = await local.generate({ prompt: 'Mara lived', maxTokens: 8, temperature: 0 });
      expect(a.text).toBe(b.text);
      expect(a.tokens![0].top).toHaveLength(2);
      const c1 = await g.generate({ ...ask, maxTokens: 8 });
      const c2 = await local.generate({ ...ask, maxTokens: 8 });
      expect(c1.text).toBe(c2.text);
    } finally {
      await g.close();
    }
  });
});
