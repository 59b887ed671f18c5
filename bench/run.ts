/**
 * Engine benchmark (`npm run bench`): trains the reference configuration (vocab 2048, dim 128, 4 layers,
 * 4 heads, SwiGLU hidden 512, context 128, batch 16, tied embeddings, AdamW over all parameters) and prints
 * training and inference (scoring forward, no grad) tokens/s; prints the engine's matmul GFLOPS at 128, 256,
 * 512 and 1024 beside OpenBLAS's (numpy) in the same run; where PyTorch is installed (Debian's system
 * python3), runs bench/peers/torch_peer_bench.py on the same configuration with each thread setting
 * it recommends and compares with the best. The last line is `train_ratio_vs_torch=X` when PyTorch ran.
 *
 * Options: --steps N (timed training steps, default 20), --warmup N (default 3), --threads N (engine
 * threads, default PSM_THREADS or 2), --workers N|best (data-parallel training workers, default 1; best: 1 and 2,
 * the faster compared), --no-peer (skip PyTorch
 * and numpy), --no-interop (skip the GGUF-generation and serve benchmarks), --shape experiment (train the default
 * experiment's model and batch instead of the reference configuration: how fast `psm run` pre-trains; no peer, as
 * the peer script fixes the SwiGLU width at 4 x dim), --batch N and --context N (override the shape's batch and context).
 * Also times a steering scan on the experiment's model (full passes against passes resumed after the steered block)
 * and activation recording (1,000 contexts of 128 tokens at every layer: the goal is under 30 s).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noGrad } from '../src/autograd/tensor.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { DEFAULT_CONFIG } from '../src/pipeline/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { addVectorHook, HookSet } from '../src/model/hooks.ts';
import { layerHook, meanActivations } from '../src/interpret/activations.ts';
import { scoreChoicesShared, scoreFromTrace, traceChoices } from '../src/interpret/scoring.ts';
import { configureBackend, defaultThreads } from '../src/tensor/backend.ts';
import { matmul } from '../src/tensor/matmul.ts';
import { TokenWindowSource } from '../src/training/data.ts';
import { Trainer } from '../src/training/trainer.ts';

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function argNumber(name: string, fallback: number): number {
  const v = argValue(name);
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
  return n;
}

const STEPS = Math.max(1, argNumber('steps', 20));
const WARMUP = argNumber('warmup', 3);
const THREADS = Math.max(1, argNumber('threads', defaultThreads()));
/**
 * Data-parallel training workers (one kernel thread each); 1 = train in the main thread on THREADS threads. `best`
 * measures 1 and 2 and compares the faster with the peer, as the peer's best thread setting is.
 */
const WORKER_SETTINGS = argValue('workers') === 'best' ? [1, 2] : [Math.max(1, argNumber('workers', 1))];
const SHAPE = argValue('shape') ?? 'reference';
if (SHAPE !== 'reference' && SHAPE !== 'experiment')
  throw new Error(`--shape must be 'reference' or 'experiment', got '${SHAPE}'`);
const EXPERIMENT = SHAPE === 'experiment';
const PEER = !process.argv.includes('--no-peer') && !EXPERIMENT;

const { model: em, pretrain: ep, tokenizer: et } = DEFAULT_CONFIG;
/** The default experiment's model shape. */
const EXPERIMENT_MODEL = {
  vocabSize: et.vocabSize,
  dim: em.dim,
  nLayers: em.nLayers,
  nHeads: em.nHeads,
  nKvHeads: em.nKvHeads,
  hiddenDim: em.hiddenDim,
  maxSeqLen: em.contextLength,
};
const REF = EXPERIMENT
  ? { ...EXPERIMENT_MODEL, maxSeqLen: Math.max(em.contextLength, argNumber('context', 0)) }
  : {
      vocabSize: 2048,
      dim: 128,
      nLayers: 4,
      nHeads: 4,
      nKvHeads: 4,
      hiddenDim: 512,
      maxSeqLen: Math.max(128, argNumber('context', 0)),
    };
/** --batch / --context override the shape's batch and context length (to measure how throughput scales with them). */
const BATCH = argNumber('batch', EXPERIMENT ? ep.batchSize : 16) || 1;
const CTX = argNumber('context', EXPERIMENT ? em.contextLength : 128) || 1;

/** The package root: the nearest folder above this file that holds package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('bench: package.json not found above bench/');
    dir = up;
  }
  return dir;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const backend = configureBackend({ threads: THREADS });
console.log(`engine: matmul backend ${backend.name}, ${backend.threads} thread(s); node ${process.version}`);
console.log(
  `shape: ${SHAPE} (vocab ${REF.vocabSize}, dim ${REF.dim}, ${REF.nLayers} layers, SwiGLU ${REF.hiddenDim}, batch ${BATCH} x context ${CTX})`,
);

// ---- training ----
const config = parseLlamaConfig(REF);
// A fixed pseudo-random token stream: the throughput does not depend on the text.
let seed = 12345;
const stream = new Int32Array(1 << 18).map(() => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % REF.vocabSize;
});

/** Trains WARMUP + STEPS steps from the same initial weights; returns the timed steps' tokens/s and the model. */
function measureTraining(workers: number): { tokS: number; model: LlamaModel } {
  const model = new LlamaModel(config).initialize(1);
  const trainer = new Trainer(model, new TokenWindowSource(stream, BATCH, CTX, 1), {
    schedule: { peakLr: 1e-3, minLr: 1e-4, warmupSteps: 2, totalSteps: WARMUP + STEPS },
    trainable: { kind: 'all' },
    seed: 1,
    workers,
  });
  for (let i = 0; i < WARMUP; i++) trainer.trainStep();
  const stepMs: number[] = [];
  let lastLoss = NaN;
  const trainStart = performance.now();
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    lastLoss = trainer.trainStep().loss;
    stepMs.push(performance.now() - t0);
  }
  const tokS = (STEPS * BATCH * CTX) / ((performance.now() - trainStart) / 1000);
  trainer.close();
  console.log(
    `train${workers > 1 ? ` (${workers} data-parallel workers)` : ''}: ${STEPS} steps of ${BATCH}x${CTX} tokens after ${WARMUP} warmup: ${tokS.toFixed(0)} tok/s ` +
      `(median step ${median(stepMs).toFixed(1)} ms, best ${Math.min(...stepMs).toFixed(1)} ms, final loss ${lastLoss.toFixed(4)})`,
  );
  return { tokS, model };
}

const trained = WORKER_SETTINGS.map((w) => ({ workers: w, ...measureTraining(w) }));
const fastest = trained.reduce((a, b) => (b.tokS > a.tokS ? b : a));
const trainTokS = fastest.tokS;
const model = fastest.model;
if (trained.length > 1)
  console.log(`engine's best setting: ${fastest.workers} worker(s), ${trainTokS.toFixed(0)} tok/s`);

// ---- inference (scoring forward, no grad) ----
const ids = new Int32Array(BATCH * CTX).map((_, i) => stream[i]);
const inferTokS = noGrad(() => {
  // Ten warm-up passes: training runs its own fused graph, so the forward's sessions (its fused graph, the logits'
  // matmul) start cold here, and the first passes are several times slower than the rest.
  for (let i = 0; i < 10; i++) model.forward(ids, BATCH);
  const t0 = performance.now();
  for (let i = 0; i < STEPS; i++) model.forward(ids, BATCH);
  return (STEPS * BATCH * CTX) / ((performance.now() - t0) / 1000);
});
console.log(`inference: forward to logits, no grad, ${BATCH}x${CTX} tokens: ${inferTokS.toFixed(0)} tok/s`);

// ---- steering scan: full passes against passes resumed after the steered block ----
// The interpretation's layer selection and dose-response score the same items under a push at one block, for every
// block and alpha; a traced scan runs only the blocks after the push (src/interpret/scoring.ts). The default
// experiment's model (random weights: the cost does not depend on them), 12 items of ~150-token prompts with three
// 3-token wordings a side, 4 layers x 6 alphas.
{
  const xm = new LlamaModel(parseLlamaConfig(EXPERIMENT_MODEL)).initialize(2);
  const encoder = { encode: (t: string) => Array.from(t, (ch) => ch.charCodeAt(0) % et.vocabSize) };
  const word = (i: number, j: number) =>
    String.fromCharCode(65 + ((i * 7 + j * 3) % 26), 97 + j, 48 + (i % 10));
  const items = Array.from({ length: 12 }, (_, i) => ({
    prompt: Array.from({ length: 150 }, (_, k) => String.fromCharCode(97 + ((i * 31 + k * 17) % 26))).join(
      '',
    ),
    good: [0, 1, 2].map((j) => word(i, j)),
    bad: [3, 4, 5].map((j) => word(i, j)),
  }));
  const direction = new Float32Array(em.dim).map((_, i) => Math.sin(i));
  const alphas = [-4, -2, -1, 1, 2, 4];
  const hooksAt = (layer: number, alpha: number) =>
    new HookSet().add(`blocks.${layer}.hook_resid_post`, addVectorHook(direction, alpha));
  const t0 = performance.now();
  const full: number[] = [];
  for (let layer = 0; layer < em.nLayers; layer++)
    for (const a of alphas)
      full.push(...scoreChoicesShared(xm, encoder, items, { hooks: hooksAt(layer, a) }).pGood);
  const fullSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const trace = traceChoices(xm, encoder, items);
  const resumed: number[] = [];
  for (let layer = 0; layer < em.nLayers; layer++)
    for (const a of alphas) resumed.push(...scoreFromTrace(xm, trace, layer, hooksAt(layer, a)).pGood);
  const tracedSeconds = (performance.now() - t1) / 1000;
  const same = full.every((p, i) => p === resumed[i]);
  console.log(
    `steering scan (${items.length} items x ${em.nLayers} layers x ${alphas.length} alphas, experiment model): ` +
      `full passes ${fullSeconds.toFixed(2)} s, traced and resumed ${tracedSeconds.toFixed(2)} s ` +
      `(x${(fullSeconds / tracedSeconds).toFixed(2)}, trace included; same P(good): ${same ? 'yes' : 'NO'})`,
  );
}

// ---- activation recording: the goal is 1,000 contexts of 128 tokens in under 30 s on 2 cores ----
// The mean residual stream over each whole context at every layer of the default experiment's model (random weights:
// the cost does not depend on them), as `meanActivations` records it for persona vectors and persona space.
{
  const xm = new LlamaModel(parseLlamaConfig(EXPERIMENT_MODEL)).initialize(3);
  const contexts = Array.from({ length: 1000 }, (_, i) => ({
    prompt: Array.from({ length: 100 }, (_, j) => (i * 7 + j * 13) % et.vocabSize),
    response: Array.from({ length: 28 }, (_, j) => (i + 3 * j) % et.vocabSize),
  }));
  const hooks = Array.from({ length: em.nLayers }, (_, l) => layerHook(l));
  const t0 = performance.now();
  const recorded = meanActivations(xm, contexts, hooks, 'all');
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    `activation recording (${recorded.n} contexts x 128 tokens, ${hooks.length} layers, experiment model): ` +
      `${seconds.toFixed(1)} s, ${((recorded.n * 128) / seconds).toFixed(0)} tok/s (goal: under 30 s)`,
  );
}

// ---- matmul GFLOPS ----
const SIZES = [128, 256, 512, 1024];
function engineGflops(n: number): number {
  const a = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const b = new Float32Array(n * n).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const spec = { batch: 1, m: n, n, k: n, transA: false, transB: false };
  const reps = Math.max(3, Math.round(2e9 / (2 * n ** 3)));
  for (let i = 0; i < 3; i++) matmul(a, b, spec);
  const times: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) matmul(a, b, spec);
    times.push((performance.now() - t0) / reps);
  }
  return (2 * n ** 3) / (median(times) * 1e6);
}
const engine = SIZES.map(engineGflops);

/** The environment for OpenBLAS-backed peers: see the OPENBLAS_CORETYPE note in the workplace README. */
function blasEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

const PY = '/usr/bin/python3';
function python(code: string[], env: NodeJS.ProcessEnv, timeoutMs = 600_000): string | null {
  if (!existsSync(PY)) return null;
  const r = spawnSync(PY, code, { env, encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) return null;
  return r.stdout;
}

const NUMPY_GFLOPS = `
import sys, time, json
import numpy as np
out = {}
for n in ${JSON.stringify(SIZES)}:
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
    reps = max(3, round(2e9 / (2 * n ** 3)))
    for _ in range(3): a @ b
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(reps): a @ b
        ts.append((time.perf_counter() - t0) / reps)
    ts.sort()
    out[n] = 2 * n ** 3 / ts[3] / 1e9
try:
    from threadpoolctl import threadpool_info
    out['blas'] = ', '.join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} {i.get('num_threads')} threads" for i in threadpool_info())
except Exception:
    out['blas'] = 'openblas (threadpoolctl not installed)'
print(json.dumps(out))
`;
let numpy: Record<string, number | string> | null = null;
if (PEER) {
  const text = python(['-c', NUMPY_GFLOPS], blasEnv(THREADS), 300_000);
  if (text) numpy = JSON.parse(text.trim().split('\n').pop()!) as Record<string, number | string>;
}
console.log(
  `matmul GFLOPS, square n x n float32, median (engine: ${backend.name}, ${backend.threads} thread(s)` +
    (numpy ? `; OpenBLAS via numpy: ${numpy.blas}` : '') +
    '):',
);
console.log(`  n      engine  ${numpy ? 'openblas' : ''}`);
SIZES.forEach((n, i) => {
  const peer = numpy ? (numpy[String(n)] as number).toFixed(1).padStart(8) : '';
  console.log(`  ${String(n).padEnd(6)} ${engine[i].toFixed(1).padStart(6)}  ${peer}`);
});
if (PEER && !numpy) console.log('  (numpy with OpenBLAS not found at /usr/bin/python3: no OpenBLAS figures)');

// ---- PyTorch peer ----
interface PeerResult {
  train_tok_s: number;
  infer_tok_s: number;
  threads: number;
  blas_threads: string;
  torch: string;
}
let best: PeerResult | null = null;
const peerScript = resolve(packageRoot(), 'bench', 'peers', 'torch_peer_bench.py');
const hasTorch =
  PEER && existsSync(peerScript) && python(['-c', 'import torch'], process.env, 120_000) !== null;
if (!PEER) {
  console.log(EXPERIMENT ? 'peer: skipped (--shape experiment)' : 'peer: skipped (--no-peer)');
} else if (!hasTorch) {
  console.log(
    existsSync(peerScript)
      ? `peer: PyTorch is not importable by ${PY} (apt-get install python3-torch libopenblas0-pthread): no ratio`
      : `peer: ${peerScript} not found: no ratio`,
  );
} else {
  // The settings the peer script names as the fair set; the best one is compared with.
  for (const [threads, blas] of [
    [1, 2],
    [1, 1],
    [2, 1],
  ]) {
    const args = [
      peerScript,
      '--threads',
      String(threads),
      '--blas-threads',
      String(blas),
      '--steps',
      String(STEPS),
      '--warmup',
      String(WARMUP),
    ];
    const text = python(args, blasEnv(blas));
    if (!text) {
      console.log(`peer: torch --threads ${threads} --blas-threads ${blas} failed`);
      continue;
    }
    const r = JSON.parse(text.trim().split('\n').pop()!) as PeerResult;
    console.log(
      `peer: torch ${r.torch} --threads ${threads} --blas-threads ${blas}: train ${r.train_tok_s} tok/s, inference ${r.infer_tok_s} tok/s`,
    );
    if (!best || r.train_tok_s > best.train_tok_s) best = r;
  }
}

// Interop figures: generation vs llama.cpp on the same GGUF, and the server under 16 concurrent clients.
// Child processes, so each measures on its own; --no-interop skips them.
if (!process.argv.includes('--no-interop')) {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const [label, script, args] of [
    [
      'gguf generation (PSM Lab vs llama.cpp, same GGUF)',
      'gguf-generation.ts',
      ['--size', 'ref', '--threads', '1', '--runs', '3'],
    ],
    ['psm serve (16 concurrent clients, loopback)', 'serve.ts', ['--requests', '64', '--seconds', '40']],
  ] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, script), ...args], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    const lines = (r.stdout ?? '')
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('{'));
    console.log(`${label}:`);
    if (r.status !== 0)
      console.log(
        `  failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`,
      );
    for (const l of lines.slice(-8)) console.log(`  ${l}`);
  }
}

console.log(`engine_train_tok_s=${trainTokS.toFixed(0)}`);
console.log(`engine_infer_tok_s=${inferTokS.toFixed(0)}`);
if (best) {
  console.log(`torch_train_tok_s=${best.train_tok_s} (threads ${best.threads}, blas ${best.blas_threads})`);
  console.log(`infer_ratio_vs_torch=${(inferTokS / best.infer_tok_s).toFixed(3)}`);
  console.log(`train_ratio_vs_torch=${(trainTokS / best.train_tok_s).toFixed(3)}`);
}
