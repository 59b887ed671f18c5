/**
 * The lab's chat with endpoints (psm lab --provider): an OpenAI-compatible endpoint's reply reaches the page as
 * several `token` events, as the endpoint streams it (psm serve on a tiny model), with the text of the unstreamed
 * answer; the events leave the lab as the provider hands them on, not at the end; a provider that cannot stream
 * answers in one event; a failure after some text is an `error` event after those tokens.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEngine } from '../../src/providers/local-engine.ts';
import { LocalProvider } from '../../src/providers/local.ts';
import { OpenAICompatProvider } from '../../src/providers/openai-compat.ts';
import type { CallOptions, GenerateRequest, GenerateResponse, Provider } from '../../src/providers/types.ts';
import { startServer, type RunningServer } from '../../src/serve/server.ts';
import { startLab, type RunningLab } from '../../src/web/lab-server.ts';
import { makeTinyModelFolder } from '../serve-fixture.ts';
import { sseEvents } from './lab-fixture.ts';

let modelDir: string;
let runsDir: string;
let srv: RunningServer;
let lab: RunningLab;
/** The bodies the served endpoint received. */
const sent: Record<string, unknown>[] = [];
const endpoint = () =>
  new OpenAICompatProvider({
    baseUrl: `${srv.url}/v1`,
    model: 'tiny',
    fetch: (url, init) => {
      sent.push(JSON.parse(String(init?.body)) as Record<string, unknown>);
      return fetch(url, init);
    },
  });

/** Hands on "Hel", waits, hands on "lo", then answers whole or fails. */
function slowProvider(fail: boolean): Provider {
  return {
    id: 'fake:slow',
    capabilities: { chat: true, completion: false, logprobs: false, score: false },
    identity: () => ({ kind: 'openai', location: 'http://fake.test/v1', model: 'slow' }),
    async generate(_req: GenerateRequest, opts: CallOptions = {}): Promise<GenerateResponse> {
      opts.onText?.('Hel');
      await new Promise((r) => setTimeout(r, 400));
      opts.onText?.('lo');
      if (fail) throw new Error('the endpoint dropped the connection');
      return { text: 'Hello', finishReason: 'stop', model: 'slow' };
    },
  };
}

beforeAll(async () => {
  modelDir = makeTinyModelFolder();
  runsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-endpoints-'));
  srv = await startServer(LocalEngine.load(modelDir, { id: 'tiny', maxTokens: 64 }), { port: 0 });
  lab = await startLab({
    runsDir,
    port: 0,
    endpoints: [
      { name: 'served', provider: endpoint() },
      { name: 'inproc', provider: new LocalProvider(modelDir) },
      { name: 'slow', provider: slowProvider(false) },
      { name: 'broken', provider: slowProvider(true) },
    ],
  });
});

afterAll(async () => {
  await lab?.close();
  await srv?.close();
  fs.rmSync(modelDir, { recursive: true, force: true });
  fs.rmSync(runsDir, { recursive: true, force: true });
});

/** The turn every chat here asks for: greedy, so the lab's reply and the provider's own answer agree. */
const TURN = {
  messages: [{ role: 'user' as const, content: 'hi' }],
  seed: 5,
  max_tokens: 16,
  temperature: 0,
};
const chatRequest = (model: string) =>
  fetch(`${lab.url}/api/chat`, {
    method: 'POST',
    body: JSON.stringify({ model, ...TURN }),
    headers: JSON_TYPE,
  });
const JSON_TYPE = { 'content-type': 'application/json' };

async function chat(model: string) {
  const r = await chatRequest(model);
  expect(r.status).toBe(200);
  const events = sseEvents(await r.text());
  const tokens = events.filter((e) => e.event === 'token').map((e) => (e.data as { text: string }).text);
  return { events, tokens, text: tokens.join('') };
}

describe('chat with an endpoint', () => {
  it("streams an OpenAI-compatible endpoint's reply as several token events, the unstreamed text", async () => {
    const { messages, seed, max_tokens: maxTokens, temperature } = TURN;
    const whole = await endpoint().generate({ messages, maxTokens, temperature, seed });
    const served = await chat('provider:served');
    expect(served.tokens.length).toBeGreaterThan(2);
    expect(served.text).toBe(whole.text);
    expect(served.events.at(-1)).toEqual({
      event: 'done',
      data: { finishReason: whole.finishReason, completionTokens: whole.usage!.completionTokens, seed: 5 },
    });
    expect(sent.at(-1)).toMatchObject({ stream: true, stream_options: { include_usage: true }, seed: 5 });
    // A provider that cannot stream (the local one, here in-process) answers the same text in one event.
    const inproc = await chat('provider:inproc');
    expect(inproc.tokens).toEqual([whole.text]);
  });

  it('sends each token event as the provider hands it on, not at the end', async () => {
    const r = await chatRequest('provider:slow');
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = '';
    const arrivals: { event: string; at: number }[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body += value;
      const seen = sseEvents(body.slice(0, body.lastIndexOf('\n\n') + 2));
      for (const e of seen.slice(arrivals.length)) arrivals.push({ event: e.event, at: Date.now() });
    }
    expect(sseEvents(body).map((e) => [e.event, (e.data as { text?: string }).text])).toEqual([
      ['token', 'Hel'],
      ['token', 'lo'],
      ['done', undefined],
    ]);
    expect(arrivals[2].at - arrivals[0].at).toBeGreaterThanOrEqual(300);
  });

  it('ends with an error event after the tokens already sent when the endpoint fails mid-reply', async () => {
    const broken = await chat('provider:broken');
    expect(broken.tokens).toEqual(['Hel', 'lo']);
    expect(broken.events.at(-1)!.event).toBe('error');
    expect(JSON.stringify(broken.events.at(-1)!.data)).toMatch(/the endpoint dropped the connection/);
  });
});
