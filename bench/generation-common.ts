/**
 * What the generation benchmarks against llama.cpp share: command-line numbers, a fixed prompt, a small
 * tokenizer for GGUF export, one engine per child process (so neither engine's thread pool competes with the
 * other's), and llama.cpp loaded the same way each time (node-llama-cpp's CPU build, F32 KV cache).
 */
import { spawnSync } from 'node:child_process';
import { parseLlamaConfig } from '../src/model/config.ts';
import type { LlamaModel } from '../src/model/llama.ts';
import { Rng } from '../src/tensor/random.ts';
import { trainBpe, type BpeTokenizer } from '../src/tokenizer/index.ts';

/** Model sizes of the generation benchmarks (random weights). */
export const GENERATION_SIZES = {
  /** The engine benchmark's reference configuration (bench/run.ts). */
  ref: { vocabSize: 2048, dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 4, hiddenDim: 512, maxSeqLen: 256 },
  /** A bigger small model: ~29M parameters. */
  large: { vocabSize: 8192, dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 4, hiddenDim: 1536, maxSeqLen: 256 },
} as const;

export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

export function intArg(name: string, fallback: number): number {
  const v = arg(name);
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A fixed pseudo-random prompt over the vocabulary (no tokenizer needed; ids are what both engines eat). */
export function promptIds(n: number, vocab: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, i) => (1 + ((i * 7919 + 13 + salt * 104729) % (vocab - 1))) | 0);
}

/** A tiny BPE tokenizer for the GGUF file (its vocabulary is padded to the model's). */
export function smallTokenizer(): BpeTokenizer {
  const text =
    'User: What is two plus two?\nAssistant: Two plus two is four. The Assistant is an AI system that answers questions.';
  return trainBpe([text, text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
}

/** Qwen2.5 0.5B's shape (its config.json), context cut to what a benchmark needs. */
export function qwenConfig(layers: number, context: number) {
  return parseLlamaConfig({
    vocabSize: 151936,
    dim: 896,
    nLayers: layers,
    nHeads: 14,
    nKvHeads: 2,
    hiddenDim: 4864,
    normEps: 1e-6,
    ropeTheta: 1000000,
    tieEmbeddings: true,
    qkvBias: true,
    maxSeqLen: context,
  });
}

/**
 * Random weights of standard deviation 0.02 (uniform, which is ~10x faster to draw than Gaussian at 494M
 * parameters; the speed of an engine does not depend on the values), norms 1.
 */
export function randomizeWeights(model: LlamaModel, seed: number): void {
  const rng = new Rng(seed);
  const half = 0.02 * Math.sqrt(3);
  for (const [name, t] of model.params) {
    if (name.endsWith('norm.weight')) t.data.fill(1);
    else for (let i = 0; i < t.size; i++) t.data[i] = (2 * rng.next() - 1) * half;
  }
}

/** CPU milliseconds (all threads of this process) since `start` (a process.cpuUsage() value). */
export function cpuMsSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

/**
 * Runs this script again as a child with `args` (plus PSM_THREADS) and returns the JSON of its `RESULT ` line.
 * The child prints one such line; anything else it prints is ignored.
 */
export function runChild<T>(
  script: string,
  args: string[],
  threads: number,
  label: string,
  opts: { showStderr?: boolean } = {},
): T {
  const child = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    env: { ...process.env, PSM_THREADS: String(threads) },
    maxBuffer: 1 << 24,
    // A long child shows its progress as it goes (its errors then appear above, not in the message).
    stdio: ['ignore', 'pipe', opts.showStderr ? 'inherit' : 'pipe'],
  });
  const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (child.status !== 0 || !line)
    throw new Error(
      `bench child (${label}) failed with status ${child.status}${opts.showStderr ? ' (its output is above)' : `:\n${child.stderr}`}`,
    );
  return JSON.parse(line.slice(7)) as T;
}

/** Prints one child's RESULT line (its parent reads it). */
export function reportResult(result: unknown): void {
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

/** llama.cpp (node-llama-cpp, CPU build) with one context on `file`: F32 KV cache, no flash attention. */
export async function openLlamaCpp(file: string, contextSize: number, threads: number, batchSize = 256) {
  const { getLlama, LlamaLogLevel, TokenBias } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({
    contextSize,
    batchSize,
    threads,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  // Never stop early at an end-of-generation token: both engines must produce exactly the tokens asked for.
  const bias = new TokenBias(model.tokenizer);
  for (const t of [model.tokens.eos, model.tokens.eot, model.tokens.bos])
    if (t !== null) bias.set(t, 'never');
  return {
    sequence: context.getSequence(),
    bias,
    async close(): Promise<void> {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}
