/**
 * Generation speed: PSM Lab vs llama.cpp (node-llama-cpp 3.21.1, CPU build) on the same exported GGUF file.
 *
 * Builds a model (the engine benchmark's reference configuration by default, random weights; or --model DIR),
 * exports it once as an F32 GGUF, then in two separate child processes (so neither engine's thread pool
 * competes with the other's) loads that one file into each engine and times greedy generation of --tokens new
 * tokens after a --prompt-token prompt, with the same thread count, KV cache on both sides and F32 everywhere
 * (llama.cpp's KV cache is set to F32 as well). Reports the median and best of --runs timed runs after one warm-up, and
 * whether the two greedy sequences agree.
 *
 * Run: npx tsx bench/gguf-generation.ts [--size ref|large] [--model DIR] [--tokens 100] [--prompt-tokens 16]
 *      [--runs 5] [--threads N]
 * Last line: gguf_generation_ratio=X (PSM Lab median tokens/s divided by llama.cpp's). The lines before give the
 * same ratio for the fastest runs and per CPU-second (CPU time of all the process's threads, which other load
 * on the machine barely changes; with one thread it is the fairest comparison on a shared machine).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufFile, ggufToModel, writeGgufFile } from '../src/interop/gguf.ts';
import { loadFolderTokenizer } from '../src/interop/hf-tokenizer.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { generate } from '../src/model/generate.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { loadModelFolder } from '../src/model/weights.ts';
import { configureBackend, defaultThreads } from '../src/tensor/backend.ts';
import { trainBpe, type BpeTokenizer } from '../src/tokenizer/index.ts';

const SIZES = {
  /** The engine benchmark's reference configuration (bench/run.ts). */
  ref: { vocabSize: 2048, dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 4, hiddenDim: 512, maxSeqLen: 256 },
  /** A bigger small model: ~29M parameters. */
  large: { vocabSize: 8192, dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 4, hiddenDim: 1536, maxSeqLen: 256 },
} as const;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function intArg(name: string, fallback: number): number {
  const v = arg(name);
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface EngineResult {
  engine: 'psm' | 'llama.cpp';
  /** From the median run. */
  tokensPerSecond: number;
  /** From the fastest run (robust to a busy machine). */
  bestTokensPerSecond: number;
  runsMs: number[];
  /** CPU time (all threads of the process) per run: unlike wall time, barely affected by other processes. */
  cpuMs: number[];
  /** Tokens per CPU-second, from the median run. */
  tokensPerCpuSecond: number;
  tokens: number[];
  loadMs: number;
}

function promptIds(n: number, vocab: number): number[] {
  // A fixed pseudo-random prompt over the vocabulary (no tokenizer needed; ids are what both engines eat).
  return Array.from({ length: n }, (_, i) => (1 + ((i * 7919 + 13) % (vocab - 1))) | 0);
}

async function runPsm(
  file: string,
  prompt: number[],
  tokens: number,
  runs: number,
  threads: number,
): Promise<EngineResult> {
  configureBackend({ threads });
  const t0 = performance.now();
  const model = ggufToModel(readGgufFile(file));
  const loadMs = performance.now() - t0;
  const once = () => generate(model, prompt, { maxNewTokens: tokens, temperature: 0 });
  once();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  let out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const c = process.cpuUsage();
    out = once();
    runsMs.push(performance.now() - t);
    const dc = process.cpuUsage(c);
    cpuMs.push((dc.user + dc.system) / 1000);
  }
  return {
    engine: 'psm',
    tokensPerSecond: (1000 * tokens) / median(runsMs),
    bestTokensPerSecond: (1000 * tokens) / Math.min(...runsMs),
    runsMs,
    cpuMs,
    tokensPerCpuSecond: (1000 * tokens) / median(cpuMs),
    tokens: out,
    loadMs,
  };
}

async function runLlamaCpp(
  file: string,
  prompt: number[],
  tokens: number,
  runs: number,
  threads: number,
): Promise<EngineResult> {
  const { getLlama, LlamaLogLevel, TokenBias } = await import('node-llama-cpp');
  type Token = import('node-llama-cpp').Token;
  const t0 = performance.now();
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({
    contextSize: Math.max(256, prompt.length + tokens + 8),
    batchSize: 256,
    threads,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  const seq = ctx.getSequence();
  const loadMs = performance.now() - t0;
  // Never stop early at an end-of-generation token: both engines must produce exactly `tokens` tokens.
  const bias = new TokenBias(model.tokenizer);
  for (const t of [model.tokens.eos, model.tokens.eot, model.tokens.bos])
    if (t !== null) bias.set(t, 'never');
  const once = async () => {
    await seq.clearHistory();
    const out: number[] = [];
    for await (const t of seq.evaluate(prompt as Token[], { temperature: 0, tokenBias: bias })) {
      out.push(t);
      if (out.length >= tokens) break;
    }
    return out;
  };
  await once();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  let out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const c = process.cpuUsage();
    out = await once();
    runsMs.push(performance.now() - t);
    const dc = process.cpuUsage(c);
    cpuMs.push((dc.user + dc.system) / 1000);
  }
  if (out.length !== tokens) throw new Error(`llama.cpp produced ${out.length} tokens, expected ${tokens}`);
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  return {
    engine: 'llama.cpp',
    tokensPerSecond: (1000 * tokens) / median(runsMs),
    bestTokensPerSecond: (1000 * tokens) / Math.min(...runsMs),
    runsMs,
    cpuMs,
    tokensPerCpuSecond: (1000 * tokens) / median(cpuMs),
    tokens: out,
    loadMs,
  };
}

function smallTokenizer(): BpeTokenizer {
  const text =
    'User: What is two plus two?\nAssistant: Two plus two is four. The Assistant is an AI system that answers questions.';
  return trainBpe([text, text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
}

async function main(): Promise<void> {
  const tokens = intArg('tokens', 100);
  const promptTokens = intArg('prompt-tokens', 16);
  const runs = intArg('runs', 5);
  const threads = intArg('threads', defaultThreads());
  const engine = arg('engine');
  const file = arg('gguf');

  if (engine) {
    // Child process: one engine on the given file; prints one RESULT line.
    if (!file) throw new Error('--engine needs --gguf');
    const vocab = Number(arg('vocab'));
    const prompt = promptIds(promptTokens, vocab);
    const result =
      engine === 'psm'
        ? await runPsm(file, prompt, tokens, runs, threads)
        : await runLlamaCpp(file, prompt, tokens, runs, threads);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    return;
  }

  // Parent: build and export the model, then time each engine in its own process.
  let model: LlamaModel;
  let tokenizer: BpeTokenizer;
  let label: string;
  const modelDir = arg('model');
  if (modelDir) {
    model = loadModelFolder(modelDir);
    const t = loadFolderTokenizer(modelDir);
    if (!t.bpe) throw new Error(`${modelDir}: GGUF export needs PSM Lab's BPE tokenizer`);
    tokenizer = t.bpe;
    label = modelDir;
  } else {
    const size = (arg('size') ?? 'ref') as keyof typeof SIZES;
    if (!(size in SIZES)) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
    model = new LlamaModel(parseLlamaConfig(SIZES[size])).initialize(1);
    tokenizer = smallTokenizer(); // the GGUF vocabulary is padded to the model's
    label = `--size ${size} (random weights)`;
  }
  if (promptTokens + tokens > model.config.maxSeqLen)
    throw new Error(
      `prompt + tokens = ${promptTokens + tokens} exceeds the model's context ${model.config.maxSeqLen}`,
    );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-gguf-bench-'));
  const gguf = path.join(dir, 'model.gguf');
  const bytes = writeGgufFile(gguf, model, tokenizer);
  const c = model.config;
  console.log(
    `model: ${label}: dim ${c.dim}, ${c.nLayers} layers, ${c.nHeads}/${c.nKvHeads} heads, ffn ${c.hiddenDim}, vocab ${c.vocabSize}; ${(model.parameterCount() / 1e6).toFixed(2)}M parameters; GGUF F32 ${(bytes / 1e6).toFixed(1)} MB`,
  );
  console.log(
    `greedy generation of ${tokens} tokens after a ${promptTokens}-token prompt, ${threads} thread(s) each, median of ${runs} runs after 1 warm-up (${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'}; load average ${os.loadavg()[0].toFixed(2)})`,
  );

  const self = fileURLToPath(import.meta.url);
  const results: EngineResult[] = [];
  for (const e of ['psm', 'llama']) {
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        self,
        '--engine',
        e,
        '--gguf',
        gguf,
        '--vocab',
        String(c.vocabSize),
        '--tokens',
        String(tokens),
        '--prompt-tokens',
        String(promptTokens),
        '--runs',
        String(runs),
        '--threads',
        String(threads),
      ],
      { encoding: 'utf8', env: { ...process.env, PSM_THREADS: String(threads) }, maxBuffer: 1 << 24 },
    );
    const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
    if (child.status !== 0 || !line)
      throw new Error(`bench child (${e}) failed with status ${child.status}:\n${child.stderr}`);
    results.push(JSON.parse(line.slice(7)) as EngineResult);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const [psm, cpp] = results;
  let agree = 0;
  while (agree < tokens && psm.tokens[agree] === cpp.tokens[agree]) agree++;
  for (const r of results) {
    console.log(
      `${r.engine.padEnd(10)} ${r.tokensPerSecond.toFixed(1).padStart(8)} tokens/s (median)  ${r.bestTokensPerSecond.toFixed(1).padStart(8)} (best)  ${r.tokensPerCpuSecond.toFixed(1).padStart(8)} per CPU-second   runs ${r.runsMs.map((m) => m.toFixed(0)).join('/')} ms (CPU ${r.cpuMs.map((m) => m.toFixed(0)).join('/')} ms)   load ${r.loadMs.toFixed(0)} ms`,
    );
  }
  console.log(
    `greedy sequences agree on the first ${agree} of ${tokens} tokens${agree < tokens ? ' (random weights give near-ties; float32 rounding can flip them)' : ''}`,
  );
  if (os.loadavg()[0] > os.cpus().length) {
    console.log(
      `warning: load average ${os.loadavg()[0].toFixed(1)} exceeds the ${os.cpus().length} CPUs; llama.cpp's spinning thread barrier suffers most from a busy machine (try --threads 1)`,
    );
  }
  console.log(`gguf_generation_ratio_cpu=${(psm.tokensPerCpuSecond / cpp.tokensPerCpuSecond).toFixed(3)}`);
  console.log(`gguf_generation_ratio_best=${(psm.bestTokensPerSecond / cpp.bestTokensPerSecond).toFixed(3)}`);
  console.log(`gguf_generation_ratio=${(psm.tokensPerSecond / cpp.tokensPerSecond).toFixed(3)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
