/**
 * psm lab's server, over HTTP on a small finished run: what each page reads (runs, progress, report, world,
 * calculator, persona space), chat streaming, steering with psm serve's meaning and the meter, and the guard rails:
 * path traversal, other origins, the API key, bad input and a run folder being written never crash the server.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { figures } from '../../src/pipeline/report.ts';
import { createProvider } from '../../src/providers/spec.ts';
import { LocalEngine, startServer } from '../../src/serve/index.ts';
import type {
  BayesAnswer,
  ModelInfo,
  ReportView,
  RunDetail,
  RunList,
  RunProgress,
  SpaceView,
  SteeringInfo,
  WorldView,
} from '../../src/web/api-types.ts';
import { startLab, type RunningLab } from '../../src/web/lab-server.ts';
import { LabModels } from '../../src/web/models.ts';
import { Analysis } from '../../src/web/analysis.ts';
import { RunsFolder } from '../../src/web/runs.ts';
import { loadDefaultWorld, posterior } from '../../src/world/index.ts';
import { makeRunsFolder, rawRequest, sseEvents } from './lab-fixture.ts';

let runs: string;
let lab: RunningLab;
const POST = 'run:tiny/standard-seed1/posttrain';

const get = async <T>(p: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
  const r = await fetch(lab.url + p, init);
  return { status: r.status, body: (await r.json()) as T };
};
const post = (p: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(lab.url + p, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

async function chatEvents(body: Record<string, unknown>) {
  const r = await post('/api/chat', {
    model: POST,
    messages: [{ role: 'user', content: 'hey I feel bored' }],
    seed: 3,
    max_tokens: 16,
    ...body,
  });
  expect(r.status).toBe(200);
  const events = sseEvents(await r.text());
  const text = events
    .filter((e) => e.event === 'token')
    .map((e) => (e.data as { text: string }).text)
    .join('');
  return {
    events,
    text,
    meter: events.find((e) => e.event === 'meter')?.data as
      import('../../src/web/api-types.ts').MeterReading | undefined,
  };
}

beforeAll(async () => {
  runs = await makeRunsFolder('tiny');
  lab = await startLab({ runsDir: runs, port: 0, pollMs: 100 });
}, 180_000);

afterAll(async () => {
  await lab?.close();
  if (runs) fs.rmSync(runs, { recursive: true, force: true });
});

describe('what the pages read', () => {
  it('lists the run with the key numbers of its report.json', async () => {
    const { body } = await get<RunList>('/api/runs');
    const report = JSON.parse(fs.readFileSync(path.join(runs, 'tiny', 'report.json'), 'utf8'));
    const row = body.runs.find((r) => r.name === 'tiny')!;
    expect(row.status).toBe('done');
    expect(row.personaR).toBe(report.summary.personaInference.meanCorrelation.mean);
    expect(row.postRise).toBe(report.summary.postTraining.rise.mean);
    expect(row.goalsTotal).toBe(report.summary.goals.length);
    expect(row.model).toBe('dim 32, 2 layers');
  });

  it("serves the report's own figure specs, from report.json", async () => {
    const { body } = await get<ReportView>('/api/runs/tiny/report');
    const report = JSON.parse(fs.readFileSync(path.join(runs, 'tiny', 'report.json'), 'utf8'));
    const own = figures(report.results, report.summary);
    expect(body.figures.map((f) => f.id)).toEqual(own.map((f) => f.id));
    expect(body.figures.map((f) => f.spec)).toEqual(JSON.parse(JSON.stringify(own.map((f) => f.spec))));
    expect(body.goals).toEqual(report.summary.goals);
    // Every figure the static report wrote is here.
    const written = fs.readdirSync(path.join(runs, 'tiny', 'figures')).filter((f) => f.endsWith('.svg'));
    expect(body.figures.map((f) => `${f.id}.svg`).sort()).toEqual(written.sort());
  });

  it("lists the run's models and the seed's steering vectors", async () => {
    const { body: detail } = await get<RunDetail>('/api/runs/tiny');
    expect(detail.seeds.map((s) => s.dir)).toEqual(['standard-seed1']);
    const { body: models } = await get<ModelInfo[]>('/api/models?run=tiny');
    expect(models.map((m) => m.label)).toEqual([
      'base (pre-trained)',
      'post-trained',
      'cheat/embedding',
      'control/embedding',
    ]);
    expect(models.every((m) => m.meter)).toBe(true);
    const { body: steering } = await get<SteeringInfo>('/api/runs/tiny/seeds/standard-seed1/steering');
    expect(steering.vectors.filter((v) => v.kind === 'trait').map((v) => v.name)).toEqual(
      loadDefaultWorld().domains.map((d) => d.name),
    );
  });

  it("builds the world view and the calculator's posterior from the world's own Bayes", async () => {
    const { body: w } = await get<WorldView>('/api/world?run=tiny');
    expect(w.archetypes.length).toBe(loadDefaultWorld().archetypes.length);
    expect(w.correlations.observed).not.toBeNull();
    expect(w.source).toContain('standard-seed1');
    const scenes = [
      { domain: 'honesty', behaviour: 'bad', instructed: null },
      { domain: 'kindness', behaviour: 'bad', instructed: null },
    ] as const;
    const r = await post('/api/world/bayes', { run: 'tiny', subject: 'human', scenes, model: POST });
    const a = (await r.json()) as BayesAnswer;
    const exact = posterior(
      loadDefaultWorld(),
      scenes.map((s) => ({ ...s })),
      { kind: 'human' },
    );
    expect(a.pGood).toEqual(exact.pGood);
    expect(a.archetypes.map((x) => x.posterior)).toEqual(exact.archetypes.map((x) => x.posterior));
    expect(Object.keys(a.model!.pGood).sort()).toEqual(Object.keys(exact.pGood).sort());
    for (const p of Object.values(a.model!.pGood)) expect(p).toBeGreaterThan(0);
    // The prompts hold the scenes, then the target's lead.
    expect(a.prompts.honesty.split('\n').length).toBeGreaterThanOrEqual(3);
    const docs = await get<{ hidden: { archetype: string } }[]>('/api/world/documents?run=tiny&count=3');
    expect(docs.body).toHaveLength(3);
    expect(docs.body[0].hidden.archetype).toBeTruthy();
  });

  it('gives the persona space of the interpretation', async () => {
    const { body } = await get<SpaceView>('/api/runs/tiny/seeds/standard-seed1/space');
    expect(body.archetypes.length).toBe(loadDefaultWorld().archetypes.length);
    expect(body.assistant.map((a) => a.stage)).toEqual([
      'base',
      'post-trained',
      'cheat/embedding',
      'control/embedding',
    ]);
    expect(body.assistant.find((a) => a.stage === 'post-trained')!.axisPosition).toBeCloseTo(1, 6);
  });
});

describe('live progress from the run’s own records', () => {
  it('reports the stage, its step, rate and ETA, and streams a new snapshot when a record is added', async () => {
    const live = path.join(runs, 'live');
    const seed = path.join(live, 'standard-seed1');
    fs.mkdirSync(path.join(seed, 'corpus'), { recursive: true });
    fs.mkdirSync(path.join(seed, 'pretrain', 'checkpoints'), { recursive: true });
    fs.copyFileSync(path.join(runs, 'tiny', 'config.json'), path.join(live, 'config.json'));
    const at = (s: number) => new Date(Date.now() - s * 1000).toISOString();
    fs.writeFileSync(
      path.join(seed, 'corpus', 'stage.json'),
      JSON.stringify({
        version: 1,
        stage: 'corpus',
        status: 'done',
        startedAt: at(70),
        finishedAt: at(61),
        result: { tokens: 102_400 },
      }),
    );
    fs.writeFileSync(
      path.join(seed, 'pretrain', 'stage.json'),
      JSON.stringify({ version: 1, stage: 'pretrain', status: 'running', startedAt: at(60) }),
    );
    const probe = (step: number, secondsAgo: number) => {
      fs.appendFileSync(
        path.join(seed, 'pretrain', 'probes.jsonl'),
        JSON.stringify({ step, tokens: step * 1024, loss: 3, correlation: step / 100 }) + '\n',
      );
      fs.appendFileSync(
        path.join(live, 'metrics.jsonl'),
        JSON.stringify({ time: at(secondsAgo), seed: 1, stage: 'pretrain-probe', step }) + '\n',
      );
    };
    probe(0, 50);
    probe(40, 10);
    const { body: p } = await get<RunProgress>('/api/runs/live/progress');
    expect(p.status).toBe('running');
    expect(p.current?.stage).toBe('pretrain');
    expect(p.current?.steps).toBe(100); // 102400 tokens / (8 x 128)
    expect(p.current?.step).toBe(40);
    expect(p.current?.rate).toBeCloseTo(1, 1); // 40 steps in 40 s
    expect(p.current?.etaS).toBeGreaterThan(45);
    expect(p.current?.etaS).toBeLessThan(55); // 60 steps at 1/s, 10 s of them since the last record
    expect(p.stagesDone).toBe(1);
    expect(p.curve.map((c) => c.step)).toEqual([0, 40]);
    const { body: list } = await get<RunList>('/api/runs');
    expect(list.runs.find((r) => r.name === 'live')).toMatchObject({ status: 'running', stage: 'pretrain' });

    // The stream: a first snapshot, then one more after a new probe record.
    const ac = new AbortController();
    const res = await fetch(`${lab.url}/api/runs/live/progress/events`, { signal: ac.signal });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const snapshots = () =>
      sseEvents(text)
        .filter((e) => e.event === 'snapshot')
        .map((e) => e.data as RunProgress);
    while (snapshots().length < 1) text += (await reader.read()).value ?? '';
    probe(80, 0);
    while (snapshots().at(-1)!.curve.length < 3) text += (await reader.read()).value ?? '';
    ac.abort();
    expect(
      snapshots()
        .at(-1)!
        .curve.map((c) => c.step),
    ).toEqual([0, 40, 80]);
    fs.rmSync(live, { recursive: true });
  });
});

describe('chat', () => {
  it('streams a reply in several events, reproducibly for a seed, with a meter per turn', async () => {
    const a = await chatEvents({ meter: true });
    expect(a.events.filter((e) => e.event === 'token').length).toBeGreaterThan(1);
    expect(a.events.at(-1)!.event).toBe('done');
    const b = await chatEvents({ meter: true });
    expect(b.text).toBe(a.text);
    expect(a.meter!.traits.map((t) => t.trait)).toEqual(loadDefaultWorld().domains.map((d) => d.name));
    for (const t of a.meter!.traits) expect(t.tokens).toHaveLength(a.meter!.tokens.length);
  });

  it('steering changes the reply and the meter, and means what psm serve means by the same field', async () => {
    const plain = await chatEvents({ meter: true, temperature: 0 });
    const psm = {
      steer: [
        { vector: 'honesty', alpha: 8 },
        { vector: 'kindness', alpha: 8 },
      ],
    };
    const steered = await chatEvents({ meter: true, temperature: 0, psm });
    expect(steered.text).not.toBe(plain.text);
    // Each trait is read at its monitoring layer: a push at that layer or before it moves the reading.
    const moved = plain.meter!.traits.filter(
      (t, i) => Math.abs(t.turn - steered.meter!.traits[i].turn) > 1e-3,
    );
    expect(moved.length).toBeGreaterThan(0);
    // psm serve with the lab's vectors.json and the same psm field gives the same reply.
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-vec-')), 'vectors.json');
    fs.writeFileSync(
      file,
      await (await fetch(`${lab.url}/api/runs/tiny/seeds/standard-seed1/vectors.json`)).text(),
    );
    const engine = LocalEngine.load(path.join(runs, 'tiny', 'standard-seed1', 'posttrain', 'model'), {
      id: 'post',
      vectorsFile: file,
    });
    const serve = await startServer(engine, { port: 0 });
    try {
      const r = await fetch(`${serve.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'post',
          messages: [{ role: 'user', content: 'hey I feel bored' }],
          seed: 3,
          max_tokens: 16,
          temperature: 0,
          psm,
        }),
      });
      const served = (await r.json()) as { choices: { message: { content: string } }[] };
      expect(served.choices[0].message.content).toBe(steered.text);
    } finally {
      await serve.close();
    }
  });

  it('reads the meter of a turn in one forward pass', async () => {
    const folder = new RunsFolder(runs);
    const analysis = new Analysis();
    const models = new LabModels({ runs: folder, analysis, maxTokens: 64, maxConcurrency: 1, maxQueue: 4 });
    const seedDir = path.join(runs, 'tiny', 'standard-seed1');
    const m = models.local(path.join(seedDir, 'posttrain', 'model'));
    const s = models.seedSteering(path.join(runs, 'tiny'), seedDir);
    let passes = 0;
    const forward = m.handle.model.forwardHidden.bind(m.handle.model);
    m.handle.model.forwardHidden = (...args) => {
      passes++;
      return forward(...args);
    };
    const ids = m.engine.encodeChat([{ role: 'user', content: 'hello there' }]);
    const reading = models.meter(
      m,
      s,
      { fit: null, message: 'fitting' },
      [...ids, 5, 6, 7],
      ids.length,
      undefined,
    );
    expect(passes).toBe(1);
    expect(reading.tokens).toHaveLength(3);
    await analysis.close();
  });

  it('fits the archetype probe in the background and shows its posterior on later turns', async () => {
    await chatEvents({ meter: true });
    for (let i = 0; i < 120; i++) {
      const { meter } = await chatEvents({ meter: true });
      if (meter!.probe) {
        const total = meter!.probe.archetypes.reduce((s, a) => s + a.p, 0);
        expect(total).toBeCloseTo(1, 5);
        return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error('the probe never became ready');
  });
});

describe('guard rails', () => {
  it('refuses paths out of the runs folder and the page, whatever their spelling', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-outside-'));
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'SECRET');
    fs.writeFileSync(path.join(outside, 'config.json'), '{}');
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(runs, 'tiny', 'leak.txt'));
    fs.symlinkSync(outside, path.join(runs, 'elsewhere'));
    const attempts = [
      '/runs/tiny/files/../../../../etc/passwd',
      '/runs/tiny/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/runs/tiny/files/..%2f..%2f..%2fetc%2fpasswd',
      '/runs/tiny/files/..%5c..%5cconfig.json',
      '/runs/..%2f..%2fetc/files/passwd',
      '/runs/tiny/files/leak.txt',
      '/runs/elsewhere/files/secret.txt',
      '/runs/tiny/files/%00',
      `/runs/tiny/files/${encodeURIComponent(path.join(outside, 'secret.txt'))}`,
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/api/runs/..%2f..%2fetc',
    ];
    for (const p of attempts) {
      const r = await rawRequest(lab.url, p);
      expect([400, 403, 404], `${p} -> ${r.status}`).toContain(r.status);
      expect(r.body).not.toContain('SECRET');
      expect(r.body).not.toContain('root:');
      expect(r.body).not.toContain('"name": "psm-lab"');
    }
    const ok = await rawRequest(lab.url, '/runs/tiny/files/report.md');
    expect(ok.status).toBe(200);
    expect(ok.headers['content-security-policy']).toMatch(/sandbox/);
    fs.rmSync(path.join(runs, 'tiny', 'leak.txt'));
    fs.rmSync(path.join(runs, 'elsewhere'));
  });

  it('refuses requests from other sites and other hosts', async () => {
    const body = JSON.stringify({
      model: POST,
      messages: [{ role: 'user', content: 'hi' }],
      psm: { steer: [{ vector: 'honesty', alpha: 4 }] },
    });
    const json = { 'content-type': 'application/json' };
    const host = new URL(lab.url).host;
    const cases: [Record<string, string>, number][] = [
      [{ ...json, origin: 'http://evil.example' }, 403],
      [{ ...json, origin: 'null' }, 403],
      [{ ...json, 'sec-fetch-site': 'cross-site' }, 403],
      [{ ...json, 'sec-fetch-site': 'same-site' }, 403],
      [{ ...json, host: `evil.example:${lab.port}` }, 403],
      [{ 'content-type': 'text/plain' }, 415],
      [{ 'content-type': 'application/x-www-form-urlencoded' }, 415],
    ];
    for (const [headers, status] of cases) {
      const r = await rawRequest(lab.url, '/api/chat', { method: 'POST', headers, body });
      expect(r.status, JSON.stringify(headers)).toBe(status);
      expect(JSON.parse(r.body).error.message).toBeTruthy();
    }
    const sameOrigin = await rawRequest(lab.url, '/api/chat', {
      method: 'POST',
      headers: { ...json, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' },
      body,
    });
    expect(sameOrigin.status).toBe(200);
    // Reads from another site are refused too (nothing of a run leaks to a page that embeds it).
    expect(
      (
        await rawRequest(lab.url, '/api/runs', {
          headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors' },
        })
      ).status,
    ).toBe(403);
  });

  it('names the problem with bad input, and keeps serving', async () => {
    const expectError = async (r: Response, status: number, param: string | null, pattern: RegExp) => {
      expect(r.status).toBe(status);
      const e = ((await r.json()) as { error: { message: string; param: string | null } }).error;
      expect(e.message).toMatch(pattern);
      if (param !== null) expect(e.param).toBe(param);
    };
    const chat = (extra: Record<string, unknown>) =>
      post('/api/chat', { model: POST, messages: [{ role: 'user', content: 'hi' }], ...extra });
    await expectError(
      await chat({ psm: { steer: [{ vector: 'honesty', alpha: 'abc' }] } }),
      400,
      'psm.steer[0].alpha',
      /alpha/,
    );
    await expectError(
      await chat({ psm: { steer: [{ vector: 'honesty' }] } }),
      400,
      'psm.steer[0].alpha',
      /alpha/,
    );
    await expectError(
      await chat({ psm: { steer: [{ vector: 'greed', alpha: 2 }] } }),
      400,
      'psm.steer[0].vector',
      /unknown vector "greed".*honesty/,
    );
    await expectError(
      await chat({ psm: { cap: [{ vector: 'honesty', min: 2, max: 1 }] } }),
      400,
      'psm.cap[0]',
      /min 2 is above max 1/,
    );
    await expectError(await chat({ temperature: -1 }), 400, 'temperature', /temperature/);
    await expectError(await chat({ max_tokens: 100_000 }), 400, 'max_tokens', /at most 512/);
    await expectError(
      await chat({ model: 'run:tiny/standard-seed9/posttrain' }),
      404,
      null,
      /no seed folder "standard-seed9"/,
    );
    await expectError(await chat({ model: 'run:nope/standard-seed1/posttrain' }), 404, null, /no run "nope"/);
    await expectError(await chat({ model: 'gpt' }), 400, 'model', /not a model id/);
    await expectError(await fetch(`${lab.url}/api/runs/nope/report`), 404, null, /no run "nope"/);
    await expectError(
      await fetch(`${lab.url}/api/world/documents?count=9999`),
      400,
      'count',
      /count must be an integer from 1 to 50/,
    );
    await expectError(
      await post('/api/world/bayes', {
        subject: 'human',
        scenes: [{ domain: 'greed', behaviour: 'bad', instructed: null }],
      }),
      400,
      'scenes[0].domain',
      /unknown domain "greed"/,
    );
    await expectError(
      await post('/api/world/bayes', {
        subject: 'human',
        scenes: [{ domain: 'coding', behaviour: 'bad', instructed: 'nope' }],
      }),
      400,
      'scenes[0].instructed',
      /no instructed group "nope"/,
    );
    await expectError(
      await fetch(`${lab.url}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model": ',
      }),
      400,
      null,
      /not valid JSON/,
    );
    await expectError(
      await post('/api/chat', { model: POST, messages: [{ role: 'user', content: 'x'.repeat(2 << 20) }] }),
      413,
      null,
      /exceeds/,
    );
    expect((await get<{ status: string }>('/api/health')).body.status).toBe('ok');
  });

  it('shows a run folder being written as such, not as a crash', async () => {
    const dir = path.join(runs, 'half');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(runs, 'tiny', 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'report.json'), '{"summary": {"seeds": 1, "personaIn');
    const { body } = await get<RunList>('/api/runs');
    const row = body.runs.find((r) => r.name === 'half')!;
    expect(row.status).toBe('unreadable');
    expect(row.message).toMatch(/report\.json is not valid JSON/);
    const r = await fetch(`${lab.url}/api/runs/half/report`);
    expect(r.status).toBe(409);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(
      /being written, or damaged/,
    );
    expect((await get<RunList>('/api/runs')).body.runs.find((x) => x.name === 'tiny')!.status).toBe('done');
    fs.rmSync(dir, { recursive: true });
  });

  it('asks for the API key when it has one: bearer for scripts, a SameSite session for the page', async () => {
    const locked = await startLab({ runsDir: runs, port: 0, apiKey: 'sesame' });
    try {
      expect((await fetch(`${locked.url}/api/runs`)).status).toBe(401);
      expect((await fetch(`${locked.url}/runs/tiny/files/report.md`)).status).toBe(401);
      expect((await fetch(`${locked.url}/api/health`)).status).toBe(200);
      expect(
        (await fetch(`${locked.url}/api/runs`, { headers: { authorization: 'Bearer nope' } })).status,
      ).toBe(401);
      expect(
        (await fetch(`${locked.url}/api/runs`, { headers: { authorization: 'Bearer sesame' } })).status,
      ).toBe(200);
      const bad = await fetch(`${locked.url}/api/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"key":"nope"}',
      });
      expect(bad.status).toBe(401);
      const good = await fetch(`${locked.url}/api/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"key":"sesame"}',
      });
      const cookie = good.headers.get('set-cookie')!;
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      const r = await fetch(`${locked.url}/api/runs`, { headers: { cookie: cookie.split(';')[0] } });
      expect(r.status).toBe(200);
    } finally {
      await locked.close();
    }
  });
});

describe('other models', () => {
  it('chats with an imported folder (no meter) and an OpenAI-compatible endpoint (streamed)', async () => {
    const postDir = path.join(runs, 'tiny', 'standard-seed1', 'posttrain', 'model');
    const serve = await startServer(LocalEngine.load(postDir, { id: 'post' }), { port: 0 });
    const other = await startLab({
      runsDir: runs,
      port: 0,
      imported: [{ name: 'imported', dir: postDir }],
      endpoints: [{ name: 'served', provider: createProvider(`openai:post@${serve.url}/v1`) }],
    });
    try {
      const { body: models } = await get<ModelInfo[]>('/api/models');
      expect(models).toEqual([]);
      const listed = (await (await fetch(`${other.url}/api/models`)).json()) as ModelInfo[];
      expect(listed.map((m) => [m.id, m.meter, m.steerable])).toEqual([
        ['model:imported', false, true],
        ['provider:served', false, false],
      ]);
      const ask = async (model: string, extra: Record<string, unknown> = {}) => {
        const r = await fetch(`${other.url}/api/chat`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model,
            messages: [{ role: 'user', content: 'hey I feel bored' }],
            seed: 5,
            max_tokens: 12,
            temperature: 0,
            meter: true,
            ...extra,
          }),
        });
        return { status: r.status, events: sseEvents(await r.text()) };
      };
      const imported = await ask('model:imported');
      expect(imported.events.some((e) => e.event === 'meter')).toBe(false);
      expect(imported.events.at(-1)!.event).toBe('done');
      const served = await ask('provider:served');
      expect(served.events.filter((e) => e.event === 'token').length).toBeGreaterThan(1);
      const text = (e: { events: { event: string; data: unknown }[] }) =>
        e.events
          .filter((x) => x.event === 'token')
          .map((x) => (x.data as { text: string }).text)
          .join('');
      expect(text(served)).toBe(text(imported)); // the same model, greedy, through psm serve
      const steered = await fetch(`${other.url}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'provider:served',
          messages: [{ role: 'user', content: 'hi' }],
          psm: { steer: [{ vector: 'honesty', alpha: 1 }] },
        }),
      });
      expect(steered.status).toBe(400);
    } finally {
      await other.close();
      await serve.close();
    }
  });
});

describe('the page', () => {
  it('says how to build the page when it is missing, while the API answers', async () => {
    const bare = await startLab({
      runsDir: runs,
      port: 0,
      assetsDir: fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-nopage-')),
    });
    try {
      const r = await fetch(`${bare.url}/`);
      expect(r.status).toBe(503);
      expect(await r.text()).toMatch(/npm run build:web/);
      expect((await fetch(`${bare.url}/api/runs`)).status).toBe(200);
    } finally {
      await bare.close();
    }
  });
});

describe('psm lab on the command line', () => {
  it('starts, prints its address and serves; refuses an unset key variable', async () => {
    const { spawn } = await import('node:child_process');
    const bin = path.resolve(__dirname, '../../bin/psm.js');
    const child = spawn(process.execPath, [bin, 'lab', '--runs', runs, '--port', '0', '--quiet'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /psm lab: (http:\/\/\S+?)\/ /.exec(out);
          if (m) resolve(m[1]);
        });
        child.on('exit', (code) => reject(new Error(`psm lab exited (${code}) before listening`)));
      });
      const r = await fetch(`${url}/api/runs`);
      expect(((await r.json()) as RunList).runs.map((x) => x.name)).toContain('tiny');
    } finally {
      child.kill('SIGTERM');
    }
    const failed = spawn(
      process.execPath,
      [bin, 'lab', '--runs', runs, '--api-key-env', 'PSM_LAB_TEST_NO_SUCH_VAR'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PSM_LAB_TEST_NO_SUCH_VAR: undefined },
      },
    );
    let err = '';
    failed.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => failed.on('exit', resolve));
    expect(code).toBe(1);
    expect(err).toMatch(/--api-key-env PSM_LAB_TEST_NO_SUCH_VAR: the variable is not set/);
  });
});
