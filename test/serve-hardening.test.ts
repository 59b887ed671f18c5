/**
 * psm serve at the edges of its input: temperatures too small for float32 (greedy), interventions whose numbers
 * overflow (a 4xx naming the field, never NaN in a 200 or a 500), /v1/completions errors that name `prompt`,
 * an empty API key, and clients that hang up.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { registerServeCommands } from '../src/cli/serve-commands.ts';
import { PsmServer, startServer, type RunningServer } from '../src/serve/server.ts';
import { runCli } from './cli-run.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

let dir: string;
let engine: LocalEngine;
let srv: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  dir = makeTinyModelFolder();
  engine = LocalEngine.load(dir, { id: 'tiny', maxTokens: 32, maxQueue: 8 });
  srv = await startServer(engine, { port: 0 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
});

afterAll(async () => {
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('tiny temperatures', () => {
  it('a chat at temperature 1e-40 answers the greedy reply, whatever the seed', async () => {
    const ask = (temperature: number, seed: number) =>
      client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'hey I feel bored' }],
        max_tokens: 12,
        temperature,
        seed,
        stop: [],
      });
    const greedy = (await ask(0, 1)).choices[0].message.content;
    for (const seed of [1, 2, 3]) expect((await ask(1e-40, seed)).choices[0].message.content).toBe(greedy);
    const completion = (t: number) =>
      client.completions.create({ model: 'tiny', prompt: 'Mara', max_tokens: 8, temperature: t, seed: 4 });
    expect((await completion(1e-40)).choices[0].text).toBe((await completion(0)).choices[0].text);
  });
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** POSTs a JSON body; returns the status and the parsed answer (an SSE stream's text when streaming). */
async function post(p: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${srv.url}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // a stream or an empty body
  }
  return { status: r.status, json: json as ErrorBody & Record<string, unknown>, text };
}

const ones = (x: number) => Array(32).fill(x) as number[];
const steer = (vector: number[] | string, alpha: number, hook = 'final_norm') => ({
  psm: { steer: [{ hook, vector, alpha }] },
});
const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'tiny',
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 4,
  temperature: 0,
  ...extra,
});

describe('non-finite results and overflowing vectors', () => {
  it('a steer that overflows inside the model is a 422 naming psm, never NaN in a 200', async () => {
    const echo = await post('/v1/completions', {
      model: 'tiny',
      prompt: 'Mara lived in a small town',
      max_tokens: 0,
      echo: true,
      logprobs: 0,
      ...steer(ones(1), 1e38),
    });
    expect(echo.status).toBe(422);
    expect(echo.json.error).toMatchObject({ param: 'psm', code: 'non_finite_result' });
    expect(echo.json.error.message).toMatch(/not finite/);
    for (const stream of [false, true]) {
      const chat = await post('/v1/chat/completions', chatBody({ stream, ...steer(ones(1), 1e38) }));
      expect(chat.status, `stream ${stream}`).toBe(422);
      expect(chat.json.error.code).toBe('non_finite_result');
      const completion = await post('/v1/completions', {
        model: 'tiny',
        prompt: 'Mara',
        max_tokens: 3,
        stream,
        ...steer(ones(1), 1e38),
      });
      expect(completion.status, `stream ${stream}`).toBe(422);
    }
  });

  it('vectors, alphas and cap bounds beyond float32 are 400s naming the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [steer(ones(1e308), 1), 'psm.steer[0].vector'],
      [steer([...ones(0).slice(1), -1e39], 1), 'psm.steer[0].vector'],
      [steer(ones(10), 1e38), 'psm.steer[0].alpha'],
      [
        { psm: { cap: [{ hook: 'blocks.0.hook_resid_post', vector: ones(1), min: 1e39 }] } },
        'psm.cap[0].min',
      ],
      [
        { psm: { ablate: [{ hook: 'blocks.0.hook_resid_post', vector: ones(4e38) }] } },
        'psm.ablate[0].vector',
      ],
    ];
    for (const [extra, param] of cases) {
      for (const p of ['/v1/chat/completions', '/v1/completions']) {
        const body = p.endsWith('chat/completions')
          ? chatBody(extra)
          : { model: 'tiny', prompt: 'Mara', max_tokens: 2, ...extra };
        const r = await post(p, body);
        expect(r.status, `${p} ${param}`).toBe(400);
        expect(r.json.error, `${p} ${param}`).toMatchObject({ param, code: 'invalid_psm_extras' });
        expect(r.json.error.message).toContain(param);
      }
    }
    // Still serving, and a sane steer still works.
    const ok = await post('/v1/chat/completions', chatBody(steer(ones(0.5), 2, 'blocks.1.hook_resid_post')));
    expect(ok.status).toBe(200);
  });
});

describe('smaller edges', () => {
  it("a prompt too long for the context names the endpoint's prompt field", async () => {
    const long = 'word '.repeat(400);
    const c = await post('/v1/completions', { model: 'tiny', prompt: long, max_tokens: 4 });
    expect(c.status).toBe(400);
    expect(c.json.error).toMatchObject({ param: 'prompt', code: 'context_length_exceeded' });
    const m = await post('/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: long }] }));
    expect(m.json.error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
  });

  it('an API key no client could send is refused at start, by the server and by psm serve', async () => {
    await expect(startServer(engine, { port: 0, apiKey: '' })).rejects.toThrow(/the API key is empty/);
    expect(() => new PsmServer(engine, { apiKey: 'key\n' })).toThrow(/whitespace/);
    await expect(
      runCli(registerServeCommands, 'serve', '--model', dir, '--port', '0', '--api-key', ''),
    ).rejects.toThrow(/--api-key is empty: give a key, or leave it out to serve without one/);
    process.env.PSM_TEST_EMPTY_KEY = '';
    await expect(
      runCli(
        registerServeCommands,
        'serve',
        '--model',
        dir,
        '--port',
        '0',
        '--api-key-env',
        'PSM_TEST_EMPTY_KEY',
      ),
    ).rejects.toThrow(/--api-key-env PSM_TEST_EMPTY_KEY \(the variable's value\) is empty/);
    delete process.env.PSM_TEST_EMPTY_KEY;
  });

  it('logs a client that goes away as aborted, without a 500 or a stack trace', async () => {
    const lines: string[] = [];
    const logged = await startServer(engine, { port: 0, log: (l) => lines.push(l) });
    try {
      // Mid-generation: read the first streamed chunk, then hang up.
      const ac = new AbortController();
      const r = await fetch(`${logged.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: 'Mara', max_tokens: 32, stream: true, stop: [] }),
        signal: ac.signal,
      });
      const reader = r.body!.getReader();
      await reader.read();
      ac.abort();
      // Mid-upload: a body shorter than its content-length, then the socket closes.
      await new Promise<void>((resolve) => {
        const s = net.connect(logged.port, '127.0.0.1', () => {
          s.write(
            'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": "ti',
          );
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 50);
        });
      });
      for (let i = 0; i < 200 && lines.length < 2; i++) await new Promise((d) => setTimeout(d, 10));
      expect(lines).toHaveLength(2);
      for (const line of lines) expect(line).toMatch(/^POST \/v1\/completions aborted by the client \d+ms$/);
      // Still serving.
      const ok = await fetch(`${logged.url}/health`);
      expect(ok.status).toBe(200);
    } finally {
      await logged.close();
    }
  });
});
