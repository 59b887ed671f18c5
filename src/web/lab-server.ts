/**
 * `psm lab`: one local web app over a runs folder. Hono routes on node:http (@hono/node-server):
 *
 *   GET  /api/runs, /api/runs/events (SSE)              the runs and their key numbers, live
 *   GET  /api/runs/:run, /progress, /progress/events    a run's seeds, models and live progress (SSE)
 *   GET  /api/runs/:run/report                          the report's figures (its own specs) and goals
 *   GET  /api/compare                                   two runs, seeds or arms side by side
 *   GET  /api/world, /api/world/documents               archetypes, package deals, sample documents
 *   POST /api/world/bayes                               the Bayes calculator (and a model's answer)
 *   GET  /api/models                                    the models to chat with
 *   GET  /api/runs/:run/seeds/:seed/steering|vectors.json|space
 *   POST /api/chat                                      streamed chat with the persona meter (SSE)
 *   GET  /runs/:run/files/*                             a run's files (the static report, figures)
 *   GET  /, /assets/*                                   the page (web/, built by Vite)
 *
 * Guard rails: loopback by default, Host and Origin checks, psm serve's API key and limits, a body limit, and every
 * failure a JSON error that names the problem; a request never takes the lab down.
 */
import * as fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, type HttpBindings } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { secureHeaders } from 'hono/secure-headers';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { loadDefaultWorld } from '../world/index.ts';
import { Analysis } from './analysis.ts';
import type { SpaceView } from './api-types.ts';
import { chat } from './chat.ts';
import { LabError, notFound } from './errors.ts';
import { allowedHosts, Guard } from './guard.ts';
import { jsonBody, parseInput } from './input.ts';
import { LabModels, type LabModelsOptions } from './models.ts';
import { runProgress } from './progress.ts';
import { compareSide, reportView } from './report-data.ts';
import { runSettings } from './run-settings.ts';
import { readJsonFile, RunsFolder } from './runs.ts';
import {
  bayesCalculator,
  generatedDocuments,
  MAX_CALCULATOR_SCENES,
  runCorpusStats,
  runDocuments,
  worldView,
} from './world-data.ts';

/** The built page: web/dist beside this source tree (npm's prepare step builds it; npm run build:web rebuilds it). */
export const DEFAULT_ASSETS = fileURLToPath(new URL('../../web/dist', import.meta.url));

export interface LabOptions {
  runsDir: string;
  host?: string;
  port?: number;
  apiKey?: string;
  /** Largest max_tokens a chat may ask for (default 512, as psm serve). */
  maxTokens?: number;
  /** Generations in flight per model (default 2: two models side by side interleave). */
  maxConcurrency?: number;
  maxQueue?: number;
  maxBodyBytes?: number;
  imported?: LabModelsOptions['imported'];
  endpoints?: LabModelsOptions['endpoints'];
  assetsDir?: string;
  /** How often live views re-read a run's records (default 1000 ms). */
  pollMs?: number;
  log?: (line: string) => void;
}

export interface RunningLab {
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

const CSP = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  // Vega's tooltips and embed controls set inline styles.
  styleSrc: ["'self'", "'unsafe-inline'"],
  imgSrc: ["'self'", 'data:', 'blob:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  frameAncestors: ["'none'"],
  formAction: ["'self'"],
};

const RUN_FILE_CSP = {
  sandbox: [],
  defaultSrc: ["'none'"],
  imgSrc: ["'self'", 'data:'],
  styleSrc: ["'unsafe-inline'"],
  frameAncestors: ["'none'"],
};

const CalculatorBody = z
  .object({
    run: z.string().min(1).max(255).optional(),
    subject: z.enum(['assistant', 'human', 'ai']),
    scenes: z
      .array(
        z
          .object({
            domain: z.string().min(1).max(100),
            behaviour: z.enum(['good', 'bad']),
            instructed: z.string().min(1).max(100).nullable(),
          })
          .strict(),
      )
      .max(MAX_CALCULATOR_SCENES),
    model: z.string().min(1).max(600).optional(),
    seed: z.number().int().min(0).max(0xffffffff).optional(),
  })
  .strict();

const intParam = (c: Context, name: string, def: number, min: number, max: number): number => {
  const raw = c.req.query(name);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new LabError(
      400,
      'invalid_value',
      `${name} must be an integer from ${min} to ${max}, got "${raw}"`,
      name,
    );
  return n;
};

/** Server-sent events of a snapshot, sent whenever it changes (and a ping now and then, so proxies keep the line). */
function liveEvents(c: Context, pollMs: number, snapshot: () => unknown): Response {
  return streamSSE(c, async (stream) => {
    let last = '';
    let quietFor = 0;
    let open = true;
    stream.onAbort(() => {
      open = false;
    });
    while (open) {
      let text: string;
      try {
        text = JSON.stringify(snapshot());
      } catch (e) {
        const err = e instanceof LabError ? e : new LabError(500, 'internal_error', (e as Error).message);
        text = JSON.stringify(err.body());
      }
      if (text !== last) {
        await stream.writeSSE({ event: 'snapshot', data: text });
        last = text;
        quietFor = 0;
      } else if ((quietFor += pollMs) >= 15_000) {
        await stream.writeSSE({ event: 'ping', data: '{}' });
        quietFor = 0;
      }
      await stream.sleep(pollMs);
    }
  });
}

export function createLabApp(opts: LabOptions, listening: () => { host: string; port: number }) {
  const runs = new RunsFolder(opts.runsDir);
  const analysis = new Analysis();
  const maxTokens = opts.maxTokens ?? 512;
  const models = new LabModels({
    runs,
    analysis,
    imported: opts.imported,
    endpoints: opts.endpoints,
    maxTokens,
    maxConcurrency: opts.maxConcurrency ?? 2,
    maxQueue: opts.maxQueue ?? 64,
  });
  const guard = new Guard({
    hosts: () => {
      const l = listening();
      return allowedHosts(l.host, l.port);
    },
    apiKey: opts.apiKey,
  });
  const pollMs = opts.pollMs ?? 1000;
  const assets = opts.assetsDir ?? DEFAULT_ASSETS;
  const log = opts.log ?? (() => undefined);
  const app = new Hono();

  app.onError((e, c) => {
    const err = e instanceof LabError ? e : null;
    if (!err) log(`error: ${e.stack ?? e.message}`);
    const out = err ?? new LabError(500, 'internal_error', `internal error: ${e.message}`);
    for (const [k, v] of Object.entries(out.headers)) c.header(k, v);
    return c.json(out.body(), out.status as 400);
  });
  app.notFound((c) => c.json(notFound(`no such page or API: ${c.req.path}`).body(), 404));

  app.use('*', async (c, next) => {
    const t0 = Date.now();
    await next();
    log(`${c.req.method} ${c.req.path} ${c.res.status} ${Date.now() - t0}ms`);
  });
  const pageHeaders = secureHeaders({ contentSecurityPolicy: CSP, referrerPolicy: 'no-referrer' });
  // A run's files are data: sandboxed, so no script in them runs with the lab's rights.
  const fileHeaders = secureHeaders({ contentSecurityPolicy: RUN_FILE_CSP, referrerPolicy: 'no-referrer' });
  app.use('*', (c, next) => (c.req.path.startsWith('/runs/') ? fileHeaders(c, next) : pageHeaders(c, next)));
  app.use('*', guard.requests);
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: opts.maxBodyBytes ?? 1 << 20,
      onError: (c) => {
        // The rest of the body goes unread, so the connection cannot carry another request: close it.
        (c.env as HttpBindings | undefined)?.outgoing?.setHeader('connection', 'close');
        throw new LabError(
          413,
          'request_too_large',
          `the request body exceeds ${opts.maxBodyBytes ?? 1 << 20} bytes`,
        );
      },
    }),
  );
  app.use('/api/*', async (c, next) => {
    if (c.req.path === '/api/session' || c.req.path === '/api/health') return next();
    return guard.key(c, next);
  });
  app.use('/runs/*', guard.key);

  app.get('/api/health', (c) => c.json({ status: 'ok', keyRequired: guard.keyRequired }));
  app.post('/api/session', async (c) => {
    const body = (await jsonBody(c)) as { key?: unknown } | null;
    guard.openSession(c, body?.key);
    return c.json({ ok: true });
  });

  app.get('/api/runs', (c) => c.json({ runsDir: path.resolve(opts.runsDir), runs: runs.list() }));
  app.get('/api/runs/events', (c) =>
    liveEvents(c, pollMs, () => ({ runsDir: path.resolve(opts.runsDir), runs: runs.list() })),
  );
  app.get('/api/runs/:run', (c) => c.json(runs.detail(c.req.param('run'))));
  const progressOf = (run: string) => {
    const dir = runs.runDir(run);
    return runProgress(run, dir, readJsonFile(path.join(dir, 'config.json')) ?? {}, runs.row(run).status);
  };
  app.get('/api/runs/:run/progress', (c) => c.json(progressOf(c.req.param('run'))));
  app.get('/api/runs/:run/progress/events', (c) => {
    const run = c.req.param('run');
    runs.runDir(run); // an unknown run is a 404, not a stream of errors
    return liveEvents(c, pollMs, () => progressOf(run));
  });
  app.get('/api/runs/:run/report', (c) => {
    const run = c.req.param('run');
    const found = runs.report(run);
    if (!found)
      throw new LabError(
        404,
        'no_report',
        `run "${run}" has no report yet (it is written when the run finishes)`,
      );
    const html = found.partial ? 'partial/report.html' : 'report.html';
    const has = fs.existsSync(path.join(runs.runDir(run), html));
    return c.json({
      ...reportView(run, found.report, has ? `/runs/${encodeURIComponent(run)}/files/${html}` : null),
      partial: found.partial,
    });
  });
  app.get('/api/compare', (c) => {
    const side = (p: 'a' | 'b') => {
      const run = c.req.query(p);
      if (!run)
        throw new LabError(
          400,
          'invalid_value',
          `give the ${p === 'a' ? 'first' : 'second'} run as ?${p}=<run>`,
          p,
        );
      const found = runs.report(run);
      if (!found) throw new LabError(404, 'no_report', `run "${run}" has no report yet`, p);
      const seed = c.req.query(`${p}Seed`);
      const arm = c.req.query(`${p}Arm`);
      return compareSide(run, found.report, {
        seed: seed ? intParam(c, `${p}Seed`, 1, 0, 1e6) : undefined,
        arm: arm || undefined,
      });
    };
    return c.json({ a: side('a'), b: side('b') });
  });

  const worldFor = (run: string | undefined) => {
    if (!run) return { world: loadDefaultWorld(), seedDir: null as string | null };
    const dir = runs.runDir(run);
    const seed = runs.seeds(run)[0];
    return { world: runSettings(dir).world, seedDir: seed ? path.join(dir, seed.dir) : null };
  };
  app.get('/api/world', (c) => {
    const { world, seedDir } = worldFor(c.req.query('run'));
    return c.json(worldView(world, seedDir ? runCorpusStats(seedDir) : null));
  });
  app.get('/api/world/documents', async (c) => {
    const offset = intParam(c, 'offset', 0, 0, 1_000_000);
    const count = intParam(c, 'count', 6, 1, 50);
    const { world, seedDir } = worldFor(c.req.query('run'));
    const fromRun = seedDir ? await runDocuments(seedDir, offset, count) : null;
    return c.json(fromRun ?? generatedDocuments(world, offset, count));
  });
  app.post('/api/world/bayes', async (c) => {
    const body = parseInput(CalculatorBody, await jsonBody(c));
    const { world } = worldFor(body.run);
    const { answer, items } = bayesCalculator(world, body.subject, body.scenes, body.seed);
    let model = null;
    if (body.model) {
      const m = models.resolve(body.model);
      if (m.kind !== 'local')
        throw new LabError(400, 'invalid_model', 'the calculator scores with a local model', 'model');
      const { scoreItems } = await import('../interpret/index.ts');
      const handle = models.local(m.dir).handle;
      try {
        const p = scoreItems(handle, items, { what: 'the calculator' }).pGood;
        model = { id: body.model, pGood: Object.fromEntries(items.map((it, i) => [it.domain, p[i]])) };
      } catch (e) {
        throw new LabError(
          400,
          'invalid_value',
          `the model cannot score these prompts: ${(e as Error).message}`,
          'scenes',
        );
      }
    }
    return c.json({ ...answer, model });
  });

  app.get('/api/models', (c) => c.json(models.list(c.req.query('run') || undefined)));
  const seedOf = (c: Context) => {
    const run = c.req.param('run')!;
    const seedDir = runs.seedDir(run, c.req.param('seed')!);
    return { run, runDir: runs.runDir(run), seedDir };
  };
  app.get('/api/runs/:run/seeds/:seed/steering', (c) => {
    const { runDir, seedDir } = seedOf(c);
    return c.json(models.steeringInfo(models.seedSteering(runDir, seedDir)));
  });
  app.get('/api/runs/:run/seeds/:seed/vectors.json', (c) => {
    const { runDir, seedDir } = seedOf(c);
    const lib = models.library(models.seedSteering(runDir, seedDir));
    c.header('content-disposition', `attachment; filename="${path.basename(seedDir)}-vectors.json"`);
    return c.json(
      Object.fromEntries([...lib].map(([name, v]) => [name, { vector: Array.from(v.vector), hook: v.hook }])),
    );
  });
  app.get('/api/runs/:run/seeds/:seed/space', (c) => {
    const { run, seedDir } = seedOf(c);
    return c.json(spaceView(runs, run, seedDir));
  });

  app.post('/api/chat', async (c) => chat(c, models, maxTokens, await jsonBody(c)));

  app.get('/runs/:run/files/*', (c) => {
    const run = c.req.param('run');
    const rel = decodeURIComponent(c.req.path.slice(`/runs/${encodeURIComponent(run)}/files/`.length));
    const file = runs.runFile(run, rel);
    // A run's files are data: no script in them runs with the lab's rights.
    c.header(
      'content-security-policy',
      "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
    );
    return serveStatic({ path: file })(c, async () => undefined) as Promise<Response>;
  });

  app.get('/assets/*', async (c, next) => {
    c.header('cache-control', 'public, max-age=31536000, immutable');
    return serveStatic({ root: assets })(c, next);
  });
  app.get('/favicon.svg', serveStatic({ root: assets }));
  app.get('/', (c) => {
    const index = path.join(assets, 'index.html');
    if (!fs.existsSync(index))
      return c.html(
        `<!doctype html><meta charset="utf-8"><title>PSM Lab</title><p>The lab's page is not built (${index} is missing): run <code>npm run build:web</code> and reload. The API answers meanwhile.</p>`,
        503,
      );
    c.header('cache-control', 'no-cache');
    return c.html(fs.readFileSync(index, 'utf8'));
  });

  return { app, analysis };
}

function spaceView(runs: RunsFolder, run: string, seedDir: string): SpaceView {
  const name = path.basename(seedDir);
  const fromReport = runs
    .report(run)
    ?.report.results.seeds.find((s) => `${s.variant}-seed${s.seed}` === name)?.interpret;
  const it =
    fromReport ??
    readJsonFile<NonNullable<typeof fromReport>>(path.join(seedDir, 'interpret', 'interpret.json'));
  if (!it?.space)
    throw new LabError(
      404,
      'not_interpreted',
      `${name} of run "${run}" has no persona space yet (its interpretation has not run)`,
    );
  const sp = it.space;
  return {
    seedDir: name,
    layer: sp.layer,
    varianceExplained: sp.varianceExplained,
    axisCosPCs: sp.axisCosPCs ?? [sp.axisCosPC1],
    archetypes: sp.archetypes.map((a) => ({ name: a.name, kind: a.kind, pc1: a.pc1, pc2: a.pc2 })),
    assistant: sp.assistant.map((a) => ({
      stage: a.stage,
      pc1: a.coords[0] ?? 0,
      pc2: a.coords[1] ?? 0,
      axisPosition: a.axisPosition,
      nearest: a.nearest.name,
    })),
  };
}

/** Starts the lab; resolves once it listens. */
export function startLab(opts: LabOptions): Promise<RunningLab> {
  const host = opts.host ?? '127.0.0.1';
  let port = opts.port ?? 0;
  const { app, analysis } = createLabApp(opts, () => ({ host, port }));
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: opts.port ?? 8100, hostname: host }) as Server;
    server.requestTimeout = 0; // streams (progress, chat) stay open; headers still must arrive in time
    server.headersTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      port = (server.address() as AddressInfo).port;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        url: `http://${shownHost}:${port}`,
        port,
        server,
        close: async () => {
          await new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          });
          await analysis.close();
        },
      });
    });
  });
}
