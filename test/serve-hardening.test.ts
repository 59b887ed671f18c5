/**
 * psm serve at the edges of its input: temperatures too small for float32 (greedy), interventions whose numbers
 * overflow (a 4xx naming the field, never NaN in a 200 or a 500), /v1/completions errors that name `prompt`,
 * and an empty API key.
 */
import * as fs from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalEngine } from '../src/serve/engine.ts';
import { startServer, type RunningServer } from '../src/serve/server.ts';
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
