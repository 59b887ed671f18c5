/**
 * Generation at the size of a real small model (`npm run bench:qwen`): a Qwen2.5-0.5B-shaped model (random
 * weights: 24 layers, dim 896, 14 query / 2 KV heads, MLP 4864, vocabulary 151,936, tied embeddings, q/k/v
 * biases) exported once as an F32 GGUF, then loaded from that one file by PSM Lab and by llama.cpp
 * (node-llama-cpp's CPU build, F32 KV cache), each in its own child process with the same thread count.
 *
 * Per engine: prefill (a --prompt-tokens prompt to the next token's logits), single-stream greedy decoding
 * (--tokens new tokens; the rate counts the tokens after the first, so prefill is left out), and peak memory
 * (the process's maximum resident set, load included). For PSM Lab also batched decoding: --streams prompts
 * decoded together (generateBatch), the throughput of the steps after every stream's first token. Each figure
 * is the median of --runs timed runs after one warm-up, per second and per CPU-second (CPU time of all the
 * process's threads, which other load on a shared machine barely changes; the ratios use it).
 *
 * Run: npx tsx bench/qwen-generation.ts [--prompt-tokens 128] [--tokens 32] [--streams 8] [--runs 3]
 *      [--threads 1] [--layers 24] [--profile] [--load-only]
 * --layers builds fewer layers (a quick try); --profile prints where PSM Lab's single-stream decoding spends
 * its time: on the per-op path, whose matmuls are separate calls, by shape and the rest, beside the fused
 * decoding step's time per step (the step every figure above is of); --load-only measures memory alone: each
 * engine loads the file and evaluates one short prompt (so every weight has been touched, mapped ones
 * included), nothing is timed.
 * The last lines are key=value figures.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ggufToModel, readGgufFile, writeGgufFile } from '../src/interop/gguf.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { generate, generateBatch } from '../src/model/generate.ts';
import { setFusedDecoding } from '../src/model/fused-decode.ts';
import { KvCache, LlamaModel } from '../src/model/llama.ts';
import { noGrad, Tensor } from '../src/autograd/tensor.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { getMatmulBackend, type MatmulSpec } from '../src/tensor/matmul.ts';
import {
  arg,
  cpuMsSince,
  intArg,
  median,
  openLlamaCpp,
  promptIds,
  qwenConfig,
  randomizeWeights,
  reportResult,
  runChild,
  smallTokenizer,
} from './generation-common.ts';

/** Writes a random model of `config` to `file`; the model is dropped on return (the children load the file). */
function exportRandomModel(config: LlamaConfig, file: string): { params: number; bytes: number } {
  const model = new LlamaModel(config);
  randomizeWeights(model, 1);
  return { params: model.parameterCount(), bytes: writeGgufFile(file, model, smallTokenizer()) };
}

interface Rate {
  /** Tokens per second, median run. */
  perSecond: number;
  /** Tokens per CPU-second, median run. */
  perCpuSecond: number;
  runsMs: number[];
  cpuMs: number[];
}

function rate(tokens: number, runsMs: number[], cpuMs: number[]): Rate {
  return {
    perSecond: (1000 * tokens) / median(runsMs),
    perCpuSecond: (1000 * tokens) / median(cpuMs),
    runsMs,
    cpuMs,
  };
}

interface EngineResult {
  engine: 'psm' | 'llama.cpp';
  loadMs: number;
  prefill: Rate;
  decode: Rate;
  /** PSM Lab only: --streams sequences decoded together. */
  batched?: Rate & { streams: number };
  /** Maximum resident set of the whole process (bytes), load included. */
  peakRssBytes: number;
  /** Resident set right after loading (bytes). */
  loadedRssBytes: number;
  tokens: number[];
  profile?: string[];
}

/** Timestamps (ms and CPU ms) of each token as it arrives. */
class TokenClock {
  readonly wall: number[] = [];
  readonly cpu: number[] = [];
  private readonly cpu0 = process.cpuUsage();
  tick(): void {
    this.wall.push(performance.now());
    this.cpu.push(cpuMsSince(this.cpu0));
  }
  /** Wall and CPU ms from token `from` to the last. */
  since(from: number): [number, number] {
    const n = this.wall.length - 1;
    return [this.wall[n] - this.wall[from], this.cpu[n] - this.cpu[from]];
  }
}

/**
 * For --profile: from `start()` on, the matmul backend adds up CPU time per shape; `report` sets it beside
 * the CPU time of the whole span.
 */
function matmulProfile() {
  const byShape = new Map<string, { ms: number; calls: number }>();
  let cpu0: NodeJS.CpuUsage | undefined;
  return {
    start(): void {
      const backend = getMatmulBackend();
      const compute = backend.matmul.bind(backend);
      backend.matmul = (a: Float32Array, b: Float32Array, s: MatmulSpec) => {
        const c = process.cpuUsage();
        const y = compute(a, b, s);
        const key =
          s.batch > 1 ? `attention (${s.transB ? 'q·kᵀ' : 'p·v'})` : `[${s.m}x${s.k}] · [${s.n}x${s.k}]ᵀ`;
        const e = byShape.get(key) ?? { ms: 0, calls: 0 };
        e.ms += cpuMsSince(c);
        e.calls++;
        byShape.set(key, e);
        return y;
      };
      cpu0 = process.cpuUsage();
    },
    report(steps: number): string[] {
      const total = cpuMsSince(cpu0!);
      const rows = [...byShape].sort((x, y) => y[1].ms - x[1].ms);
      const matmulMs = rows.reduce((sum, [, e]) => sum + e.ms, 0);
      return [
        `per step: ${(total / steps).toFixed(1)} CPU ms, of which matmuls ${(matmulMs / steps).toFixed(1)} ms (${((100 * matmulMs) / total).toFixed(0)}%)`,
        ...rows.map(
          ([k, e]) =>
            `  ${k.padEnd(28)} ${(e.ms / steps).toFixed(2).padStart(7)} ms in ${(e.calls / steps).toFixed(0)} calls`,
        ),
      ];
    },
  };
}

async function runPsm(file: string, o: ChildOptions): Promise<EngineResult> {
  configureBackend({ threads: o.threads });
  const t0 = performance.now();
  const model = ggufToModel(readGgufFile(file));
  const loadMs = performance.now() - t0;
  const loadedRssBytes = process.memoryUsage().rss;
  const prompt = promptIds(o.promptTokens, model.config.vocabSize);
  const dim = model.config.dim;

  const prefillOnce = () =>
    noGrad(() => {
      const cache = new KvCache(model.config, 1, prompt.length + 1);
      const h = model.forwardHidden(Int32Array.from(prompt), 1, { cache });
      model.logits(new Tensor(Float32Array.from(h.data.subarray(h.size - dim)), [1, dim]));
    });
  const prefill = timed(o.runs, prefillOnce);

  let tokens: number[] = [];
  const decodeOnce = (): [number, number] => {
    const clock = new TokenClock();
    tokens = generate(model, prompt, { maxNewTokens: o.tokens, temperature: 0, onToken: () => clock.tick() });
    return clock.since(0);
  };
  const decode = spans(o.runs, decodeOnce);

  const prompts = Array.from({ length: o.streams }, (_, i) =>
    promptIds(o.promptTokens, model.config.vocabSize, i),
  );
  const batchedOnce = (): [number, number] => {
    const clock = new TokenClock();
    generateBatch(
      model,
      prompts.map((p) => ({
        prompt: p,
        maxNewTokens: o.tokens,
        temperature: 0,
        onToken: () => clock.tick(),
      })),
      { maxBatch: o.streams },
    );
    // Every stream is prefilled (and gives its first token) before the first step: the steps start after the
    // last first token.
    return clock.since(o.streams - 1);
  };
  const batched = spans(o.runs, batchedOnce);

  let profile: string[] | undefined;
  if (o.profile) {
    // The steps after the first token (the prompt's pass is left out). The fused step runs its matmuls inside
    // its graphs, out of the matmul hook's sight, so the breakdown is of the per-op path.
    const [, fusedCpuMs] = decodeOnce();
    setFusedDecoding(false);
    const p = matmulProfile();
    let started = false;
    const onToken = () => {
      if (!started) p.start();
      started = true;
    };
    generate(model, prompt, { maxNewTokens: o.tokens, temperature: 0, onToken });
    setFusedDecoding(true);
    profile = [
      `fused decoding step: ${(fusedCpuMs / (o.tokens - 1)).toFixed(1)} CPU ms per step`,
      'per-op path:',
      ...p.report(o.tokens - 1),
    ];
  }
  return {
    engine: 'psm',
    loadMs,
    prefill: rate(o.promptTokens, prefill.runsMs, prefill.cpuMs),
    decode: rate(o.tokens - 1, decode.runsMs, decode.cpuMs),
    batched: { ...rate(o.streams * (o.tokens - 1), batched.runsMs, batched.cpuMs), streams: o.streams },
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    loadedRssBytes,
    tokens,
    profile,
  };
}

/** What --load-only measures: loading, then one prompt of LOAD_ONLY_PROMPT tokens evaluated. */
interface LoadResult {
  engine: 'psm' | 'llama.cpp';
  loadMs: number;
  loadedRssBytes: number;
  peakRssBytes: number;
}

const LOAD_ONLY_PROMPT = 8;

async function loadOnly(engine: string, file: string, vocab: number, threads: number): Promise<LoadResult> {
  const prompt = promptIds(LOAD_ONLY_PROMPT, vocab);
  const t0 = performance.now();
  if (engine === 'psm') {
    configureBackend({ threads });
    const model = ggufToModel(readGgufFile(file));
    const loadMs = performance.now() - t0;
    const loadedRssBytes = process.memoryUsage().rss;
    generate(model, prompt, { maxNewTokens: 1, temperature: 0 });
    return { engine: 'psm', loadMs, loadedRssBytes, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  }
  type Token = import('node-llama-cpp').Token;
  const cpp = await openLlamaCpp(file, LOAD_ONLY_PROMPT + 8, threads);
  const loadMs = performance.now() - t0;
  const loadedRssBytes = process.memoryUsage().rss;
  await cpp.sequence.evaluateWithoutGeneratingNewTokens(prompt as Token[]);
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  await cpp.close();
  return { engine: 'llama.cpp', loadMs, loadedRssBytes, peakRssBytes };
}

/** Wall and CPU ms of `runs` calls after one warm-up. */
function timed(runs: number, fn: () => void): { runsMs: number[]; cpuMs: number[] } {
  return spans(runs, () => {
    const t = performance.now();
    const c = process.cpuUsage();
    fn();
    return [performance.now() - t, cpuMsSince(c)];
  });
}

/** `runs` measurements [wall ms, CPU ms] after one warm-up. */
function spans(runs: number, fn: () => [number, number]): { runsMs: number[]; cpuMs: number[] } {
  fn();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    const [w, c] = fn();
    runsMs.push(w);
    cpuMs.push(c);
  }
  return { runsMs, cpuMs };
}

async function spansAsync(runs: number, fn: () => Promise<[number, number]>) {
  await fn();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    const [w, c] = await fn();
    runsMs.push(w);
    cpuMs.push(c);
  }
  return { runsMs, cpuMs };
}

async function runLlamaCpp(file: string, o: ChildOptions, vocab: number): Promise<EngineResult> {
  type Token = import('node-llama-cpp').Token;
  const t0 = performance.now();
  const cpp = await openLlamaCpp(
    file,
    o.promptTokens + o.tokens + 8,
    o.threads,
    Math.max(256, o.promptTokens),
  );
  const { sequence: seq, bias } = cpp;
  const loadMs = performance.now() - t0;
  const loadedRssBytes = process.memoryUsage().rss;
  const prompt = promptIds(o.promptTokens, vocab) as Token[];

  const prefill = await spansAsync(o.runs, async () => {
    await seq.clearHistory();
    const t = performance.now();
    const c = process.cpuUsage();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    return [performance.now() - t, cpuMsSince(c)];
  });
  let tokens: number[] = [];
  const decode = await spansAsync(o.runs, async () => {
    await seq.clearHistory();
    const clock = new TokenClock();
    const out: number[] = [];
    for await (const t of seq.evaluate(prompt, { temperature: 0, tokenBias: bias })) {
      clock.tick();
      out.push(t);
      if (out.length >= o.tokens) break;
    }
    tokens = out;
    return clock.since(0);
  });
  await cpp.close();
  return {
    engine: 'llama.cpp',
    loadMs,
    prefill: rate(o.promptTokens, prefill.runsMs, prefill.cpuMs),
    decode: rate(o.tokens - 1, decode.runsMs, decode.cpuMs),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    loadedRssBytes,
    tokens,
  };
}

interface ChildOptions {
  promptTokens: number;
  tokens: number;
  streams: number;
  runs: number;
  threads: number;
  profile: boolean;
}

const gb = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

function describeRate(label: string, r: Rate, unit = 'tokens/s'): string {
  return `  ${label.padEnd(22)} ${r.perSecond.toFixed(1).padStart(8)} ${unit} (median)  ${r.perCpuSecond.toFixed(1).padStart(8)} per CPU-second   runs ${r.runsMs.map((m) => m.toFixed(0)).join('/')} ms (CPU ${r.cpuMs.map((m) => m.toFixed(0)).join('/')})`;
}

async function main(): Promise<void> {
  const o: ChildOptions = {
    promptTokens: intArg('prompt-tokens', 128),
    tokens: intArg('tokens', 32),
    streams: intArg('streams', 8),
    runs: intArg('runs', 3),
    threads: intArg('threads', 1),
    profile: process.argv.includes('--profile'),
  };
  if (o.tokens < 2)
    throw new Error('--tokens must be at least 2 (the decoding rate counts the tokens after the first)');
  const engine = arg('engine');
  const file = arg('gguf');
  const memoryOnly = process.argv.includes('--load-only');
  if (engine) {
    if (!file) throw new Error('--engine needs --gguf');
    if (memoryOnly) {
      reportResult(await loadOnly(engine, file, Number(arg('vocab')), o.threads));
      return;
    }
    reportResult(engine === 'psm' ? await runPsm(file, o) : await runLlamaCpp(file, o, Number(arg('vocab'))));
    return;
  }

  const layers = intArg('layers', 24);
  const config = qwenConfig(layers, o.promptTokens + o.tokens + 8);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-qwen-bench-'));
  const gguf = path.join(dir, 'model.gguf');
  try {
    let t = performance.now();
    const { params, bytes } = exportRandomModel(config, gguf);
    console.log(
      `model: Qwen2.5-0.5B shape (random weights): ${layers} layers, dim 896, 14/2 heads, MLP 4864, vocabulary 151936, tied, q/k/v biases; ${(params / 1e6).toFixed(1)}M parameters; GGUF F32 ${(bytes / 1e9).toFixed(2)} GB (built and written in ${((performance.now() - t) / 1000).toFixed(0)} s)`,
    );
    const machine = `${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'}; load average ${os.loadavg()[0].toFixed(2)}`;
    const self = fileURLToPath(import.meta.url);
    if (memoryOnly) {
      console.log(
        `memory only: load, then one ${LOAD_ONLY_PROMPT}-token prompt; ${o.threads} thread(s) (${machine})`,
      );
      for (const e of ['psm', 'llama']) {
        const args = ['--engine', e, '--gguf', gguf, '--vocab', String(config.vocabSize), '--load-only'];
        const r = runChild<LoadResult>(self, [...args, '--threads', String(o.threads)], o.threads, e);
        console.log(
          `${r.engine}: load ${(r.loadMs / 1000).toFixed(1)} s, resident ${gb(r.loadedRssBytes)} after load, peak ${gb(r.peakRssBytes)} (after one ${LOAD_ONLY_PROMPT}-token prompt)`,
        );
        console.log(
          `${e === 'psm' ? 'psm' : 'llamacpp'}_peak_rss_gib=${(r.peakRssBytes / 2 ** 30).toFixed(2)}`,
        );
      }
      return;
    }
    console.log(
      `prefill of ${o.promptTokens} tokens; greedy decoding of ${o.tokens} tokens; PSM Lab batched: ${o.streams} streams; ${o.threads} thread(s) each; median of ${o.runs} runs after 1 warm-up (${machine})`,
    );
    const childArgs = (e: string) => [
      '--engine',
      e,
      '--gguf',
      gguf,
      '--vocab',
      String(config.vocabSize),
      '--prompt-tokens',
      String(o.promptTokens),
      '--tokens',
      String(o.tokens),
      '--streams',
      String(o.streams),
      '--runs',
      String(o.runs),
      '--threads',
      String(o.threads),
      ...(o.profile ? ['--profile'] : []),
    ];
    const results: EngineResult[] = [];
    for (const e of ['psm', 'llama']) {
      t = performance.now();
      results.push(runChild<EngineResult>(self, childArgs(e), o.threads, e));
      console.log(`(${e} child: ${((performance.now() - t) / 1000).toFixed(0)} s)`);
    }
    const [psm, cpp] = results;
    for (const r of results) {
      console.log(
        `${r.engine}: load ${(r.loadMs / 1000).toFixed(1)} s, resident ${gb(r.loadedRssBytes)} after load, peak ${gb(r.peakRssBytes)}`,
      );
      console.log(describeRate(`prefill ${o.promptTokens}`, r.prefill));
      console.log(describeRate('decode, 1 stream', r.decode));
      if (r.batched) console.log(describeRate(`decode, ${r.batched.streams} streams`, r.batched));
    }
    let agree = 0;
    while (agree < o.tokens && psm.tokens[agree] === cpp.tokens[agree]) agree++;
    console.log(
      `greedy sequences agree on the first ${agree} of ${o.tokens} tokens${agree < o.tokens ? ' (random weights give near-ties; float32 rounding can flip them)' : ''}`,
    );
    if (psm.profile)
      console.log(['PSM Lab single-stream decoding, where the time goes:', ...psm.profile].join('\n'));
    console.log(`qwen_prefill_ratio_cpu=${(psm.prefill.perCpuSecond / cpp.prefill.perCpuSecond).toFixed(3)}`);
    console.log(`qwen_prefill_ratio=${(psm.prefill.perSecond / cpp.prefill.perSecond).toFixed(3)}`);
    console.log(`qwen_decode_ratio_cpu=${(psm.decode.perCpuSecond / cpp.decode.perCpuSecond).toFixed(3)}`);
    console.log(`qwen_decode_ratio=${(psm.decode.perSecond / cpp.decode.perSecond).toFixed(3)}`);
    console.log(
      `psm_batched_vs_single_cpu=${(psm.batched!.perCpuSecond / psm.decode.perCpuSecond).toFixed(2)}`,
    );
    console.log(`psm_batched_vs_single=${(psm.batched!.perSecond / psm.decode.perSecond).toFixed(2)}`);
    console.log(`psm_peak_rss_gib=${(psm.peakRssBytes / 2 ** 30).toFixed(2)}`);
    console.log(`llamacpp_peak_rss_gib=${(cpp.peakRssBytes / 2 ** 30).toFixed(2)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
