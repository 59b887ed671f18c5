/**
 * `psm serve` benchmark: a random model of the reference configuration (vocab 2048, dim 128, 4 layers,
 * 4 heads, SwiGLU 512; context 256) served on 127.0.0.1 (loopback only, ephemeral port), loaded by N
 * concurrent clients (default 16) that each send chat requests back to back until R requests are done
 * (default 128) or T seconds pass (default 60). Prints throughput (requests/s, generated tokens/s), request
 * latency p50/p99, streaming time-to-first-token p50/p99, and, beside them, the engine's own one-at-a-time
 * generation speed without HTTP in the same run.
 *
 * Run: npx tsx bench/serve.ts [--clients 16] [--requests 128] [--max-tokens 32] [--seconds 60] [--concurrency 8]
 * The last line is one JSON object with every number.
 */
import * as os from 'node:os';
import { pathToFileURL } from 'node:url';
import { generate } from '../src/model/generate.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { DEFAULT_MAX_CONCURRENCY, LocalEngine } from '../src/providers/local-engine.ts';
import { startServer } from '../src/serve/server.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { trainBpe } from '../src/tokenizer/index.ts';

export interface ServeBenchOptions {
  clients?: number;
  requests?: number;
  maxTokens?: number;
  seconds?: number;
  /** Generations in flight in the server, decoded together in one batch (psm serve's default: 8). */
  concurrency?: number;
}

export interface ServeBenchResult {
  clients: number;
  requests: number;
  maxTokens: number;
  serverConcurrency: number;
  wallSeconds: number;
  requestsPerSecond: number;
  tokensPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  ttftMs: { p50: number; p99: number };
  engineAloneTokensPerSecond: number;
  errors: number;
  /** 1-minute load average at the end: other work on the machine skews every number. */
  loadAverage: number;
}

const PROMPTS = [
  'hey I feel bored',
  'Can you help me with my homework?',
  'What is the capital of France?',
  'Tell me 3 philosophical thoughts you have.',
  'How do I make a quick buck?',
  'Pick a set of figures from history for your own special dinner party.',
];

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
  return n;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

function makeEngine(concurrency: number, clients: number): LocalEngine {
  configureBackend();
  const tokenizer = trainBpe(
    PROMPTS.flatMap((p) => [p, `User: ${p}\nAssistant: Sure.`]),
    { vocabSize: 400, specialTokens: ['<|endoftext|>'], minFrequency: 1 },
  );
  const config = parseLlamaConfig({
    vocabSize: 2048,
    dim: 128,
    nLayers: 4,
    nHeads: 4,
    nKvHeads: 4,
    hiddenDim: 512,
    maxSeqLen: 256,
  });
  const model = new LlamaModel(config).initialize(3);
  // No chat stop: every request generates max_tokens unless the model emits end-of-text.
  return new LocalEngine(model, tokenizer, {
    id: 'bench',
    maxTokens: 256,
    maxConcurrency: concurrency,
    maxQueue: clients * 2,
    chatStop: [],
  });
}

export async function runServeBench(opts: ServeBenchOptions = {}): Promise<ServeBenchResult> {
  const clients = opts.clients ?? 16;
  const total = opts.requests ?? 128;
  const maxTokens = opts.maxTokens ?? 32;
  const deadline = Date.now() + (opts.seconds ?? 60) * 1000;
  const engine = makeEngine(opts.concurrency ?? DEFAULT_MAX_CONCURRENCY, clients);

  // The engine alone, one generation at a time, no HTTP (best of a run before and one after the load test).
  const eot = engine.tokenizer.tokenToId('<|endoftext|>')!;
  const engineAloneOnce = (): number => {
    let n = 0;
    const t0 = performance.now();
    for (let i = 0; i < 8; i++) {
      const ids = engine.encodeChat([{ role: 'user', content: PROMPTS[i % PROMPTS.length] }]);
      n += generate(engine.model, ids, {
        maxNewTokens: maxTokens,
        temperature: 1,
        seed: i,
        stopIds: [eot],
      }).length;
    }
    return n / ((performance.now() - t0) / 1000);
  };
  engineAloneOnce(); // warm-up (JIT, backend sessions)
  let engineAlone = engineAloneOnce();

  const srv = await startServer(engine, { host: '127.0.0.1', port: 0 });
  const url = `${srv.url}/v1/chat/completions`;
  for (let i = 0; i < 2; i++) {
    const w = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'bench',
        messages: [{ role: 'user', content: 'warm up' }],
        max_tokens: maxTokens,
      }),
    });
    await w.text();
  }
  const latencies: number[] = [];
  const ttfts: number[] = [];
  let issued = 0;
  let tokens = 0;
  let errors = 0;
  const start = performance.now();
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        while (issued < total && Date.now() < deadline) {
          const i = issued++;
          const stream = i % 4 === 3; // a quarter of the requests stream, for time-to-first-token
          const body = JSON.stringify({
            model: 'bench',
            messages: [{ role: 'user', content: PROMPTS[(i + c) % PROMPTS.length] }],
            max_tokens: maxTokens,
            temperature: 1,
            seed: i,
            stream,
            stream_options: stream ? { include_usage: true } : undefined,
          });
          const t = performance.now();
          try {
            const res = await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body,
            });
            if (!res.ok) {
              errors++;
              await res.text();
              continue;
            }
            if (stream) {
              const reader = res.body!.getReader();
              const dec = new TextDecoder();
              let first = true;
              let text = '';
              for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                if (first) {
                  // The first chunk carries the role; wait for content.
                  text += dec.decode(value, { stream: true });
                  if (/"content":"[^"]/.test(text)) {
                    ttfts.push(performance.now() - t);
                    first = false;
                  }
                } else text += dec.decode(value, { stream: true });
              }
              const usage = /"completion_tokens":(\d+)/.exec(text);
              tokens += usage ? Number(usage[1]) : 0;
            } else {
              const json = (await res.json()) as { usage: { completion_tokens: number } };
              tokens += json.usage.completion_tokens;
            }
            latencies.push(performance.now() - t);
          } catch {
            errors++;
          }
        }
      }),
    );
  } finally {
    await srv.close();
  }
  const wall = (performance.now() - start) / 1000;
  engineAlone = Math.max(engineAlone, engineAloneOnce());
  return {
    loadAverage: os.loadavg()[0],
    clients,
    requests: latencies.length,
    maxTokens,
    serverConcurrency: opts.concurrency ?? DEFAULT_MAX_CONCURRENCY,
    wallSeconds: wall,
    requestsPerSecond: latencies.length / wall,
    tokensPerSecond: tokens / wall,
    latencyMs: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: Math.max(...latencies) },
    ttftMs: { p50: quantile(ttfts, 0.5), p99: quantile(ttfts, 0.99) },
    engineAloneTokensPerSecond: engineAlone,
    errors,
  };
}

export function formatServeBench(r: ServeBenchResult): string {
  return [
    `psm serve (loopback, ${r.clients} clients, server concurrency ${r.serverConcurrency}, ${r.requests} requests of up to ${r.maxTokens} tokens, ${r.wallSeconds.toFixed(1)} s, ${os.cpus().length} CPUs):`,
    `  throughput       ${r.requestsPerSecond.toFixed(2)} req/s, ${r.tokensPerSecond.toFixed(0)} generated tok/s (engine alone, no HTTP: ${r.engineAloneTokensPerSecond.toFixed(0)} tok/s)`,
    `  latency          p50 ${r.latencyMs.p50.toFixed(0)} ms, p99 ${r.latencyMs.p99.toFixed(0)} ms (max ${r.latencyMs.max.toFixed(0)} ms)`,
    `  first token      p50 ${r.ttftMs.p50.toFixed(0)} ms, p99 ${r.ttftMs.p99.toFixed(0)} ms (streaming requests)`,
    `  errors           ${r.errors}; 1-min load average ${r.loadAverage.toFixed(2)}`,
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await runServeBench({
    clients: arg('clients', 16),
    requests: arg('requests', 128),
    maxTokens: arg('max-tokens', 32),
    seconds: arg('seconds', 60),
    concurrency: arg('concurrency', DEFAULT_MAX_CONCURRENCY),
  });
  process.stdout.write(`${formatServeBench(r)}\n${JSON.stringify({ serve: r })}\n`);
}
