/**
 * Generation speed: PSM Lab vs llama.cpp (node-llama-cpp 3.21.1, CPU build) on the same exported GGUF file.
 *
 * Builds a model (the engine benchmark's reference configuration by default, random weights; or --model DIR),
 * exports it once as an F32 GGUF, then in two separate child processes (so neither engine's thread pool
 * competes with the other's) loads that one file into each engine and times greedy generation of --tokens new
 * tokens after a --prompt-token prompt, with the same thread count, KV cache on both sides and F32 everywhere
 * (llama.cpp's KV cache is set to F32 as well). Reports the median and best of --runs timed runs after --warmup
 * untimed ones (default 1; PSM Lab's JavaScript is still being compiled, on background threads that count in its
 * CPU time, for about its first second of generation, so more warm-ups show its steady state), and whether the two
 * greedy sequences agree.
 *
 * Run: npx tsx bench/gguf-generation.ts [--size ref|large] [--model DIR] [--tokens 100] [--prompt-tokens 16]
 *      [--runs 5] [--warmup 1] [--threads N] [--per-op] [--weights auto|plain|memory]
 * --per-op decodes on the per-op path (each layer's dozen kernels one ONNX Runtime call each) instead of the
 * fused decoding step (src/model/fused-decode.ts), for comparing the two; both give the same tokens.
 * --weights plain keeps PSM Lab's weights in ordinary arrays (every projection on ONNX Runtime's graphs), memory puts
 * them in a WeightMemory (every one-row projection on the WebAssembly kernel, src/tensor/matvec.wat); auto (the
 * default) does what the product does: a WeightMemory from 4M parameters, or when every head has its own kv head.
 * The tokens are the same either way.
 * Last line: gguf_generation_ratio=X (PSM Lab median tokens/s divided by llama.cpp's). The lines before give the
 * same ratio for the fastest runs and per CPU-second (CPU time of all the process's threads, which other load
 * on the machine barely changes; with one thread it is the fairest comparison on a shared machine).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGgufFile, ggufToModel, writeGgufFile } from '../src/interop/gguf.ts';
import { loadFolderTokenizer } from '../src/interop/hf-tokenizer.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { generate } from '../src/model/generate.ts';
import { LlamaModel, setWeightMemoryMinParams } from '../src/model/llama.ts';
import { loadModelFolder } from '../src/model/weights.ts';
import { configureBackend, defaultThreads } from '../src/tensor/backend.ts';
import type { BpeTokenizer } from '../src/tokenizer/index.ts';
import {
  arg,
  cpuMsSince,
  intArg,
  median,
  openLlamaCpp,
  GENERATION_SIZES as SIZES,
  promptIds,
  reportResult,
  runChild,
  smallTokenizer,
} from './generation-common.ts';

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

async function runPsm(
  file: string,
  prompt: number[],
  tokens: number,
  runs: number,
  warmup: number,
  threads: number,
): Promise<EngineResult> {
  configureBackend({ threads });
  const weights = arg('weights') ?? 'auto';
  if (weights === 'plain') setWeightMemoryMinParams(Infinity);
  else if (weights === 'memory') setWeightMemoryMinParams(0);
  else if (weights !== 'auto') throw new Error('--weights must be auto, plain or memory');
  const t0 = performance.now();
  const model = ggufToModel(readGgufFile(file));
  const loadMs = performance.now() - t0;
  const once = () => generate(model, prompt, { maxNewTokens: tokens, temperature: 0 });
  for (let w = 0; w < warmup; w++) once();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  let out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const c = process.cpuUsage();
    out = once();
    runsMs.push(performance.now() - t);
    cpuMs.push(cpuMsSince(c));
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
  warmup: number,
  threads: number,
): Promise<EngineResult> {
  type Token = import('node-llama-cpp').Token;
  const t0 = performance.now();
  const cpp = await openLlamaCpp(file, Math.max(256, prompt.length + tokens + 8), threads);
  const { sequence: seq, bias } = cpp;
  const loadMs = performance.now() - t0;
  const once = async () => {
    await seq.clearHistory();
    const out: number[] = [];
    for await (const t of seq.evaluate(prompt as Token[], { temperature: 0, tokenBias: bias })) {
      out.push(t);
      if (out.length >= tokens) break;
    }
    return out;
  };
  for (let w = 0; w < warmup; w++) await once();
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  let out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const c = process.cpuUsage();
    out = await once();
    runsMs.push(performance.now() - t);
    cpuMs.push(cpuMsSince(c));
  }
  if (out.length !== tokens) throw new Error(`llama.cpp produced ${out.length} tokens, expected ${tokens}`);
  await cpp.close();
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

async function main(): Promise<void> {
  const tokens = intArg('tokens', 100);
  const promptTokens = intArg('prompt-tokens', 16);
  const runs = intArg('runs', 5);
  const warmup = intArg('warmup', 1);
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
        ? await runPsm(file, prompt, tokens, runs, warmup, threads)
        : await runLlamaCpp(file, prompt, tokens, runs, warmup, threads);
    reportResult(result);
    return;
  }

  // Parent: build and export the model, then time each engine in its own process (which inherits the environment).
  if (process.argv.includes('--per-op')) process.env.PSM_FUSED_DECODE = '0';
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
    `greedy generation of ${tokens} tokens after a ${promptTokens}-token prompt${process.env.PSM_FUSED_DECODE === '0' ? ' (PSM Lab on the per-op path)' : ''}${arg('weights') ? `, PSM Lab weights ${arg('weights')}` : ''}, ${threads} thread(s) each, median of ${runs} runs after ${warmup} warm-up(s) (${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'}; load average ${os.loadavg()[0].toFixed(2)})`,
  );

  const self = fileURLToPath(import.meta.url);
  const results: EngineResult[] = [];
  for (const e of ['psm', 'llama']) {
    results.push(
      runChild<EngineResult>(
        self,
        [
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
          '--warmup',
          String(warmup),
          '--threads',
          String(threads),
          '--weights',
          arg('weights') ?? 'auto',
        ],
        threads,
        e,
      ),
    );
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
