import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ortAvailable } from '../src/tensor/ort-matmul.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { readStageTimes, stageTimeTable } from '../src/pipeline/stage-times.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { KernelProfiler } from '../src/tensor/kernel-profile.ts';
import { getMatmulBackend, matmul } from '../src/tensor/matmul.ts';
import { TokenWindowSource } from '../src/training/data.ts';
import { profileTrainingStep } from '../src/training/step-profile.ts';
import { Trainer } from '../src/training/trainer.ts';

configureBackend();

const config = parseLlamaConfig({
  vocabSize: 40,
  dim: 16,
  nLayers: 2,
  nHeads: 2,
  nKvHeads: 2,
  hiddenDim: 32,
  maxSeqLen: 16,
});

function losses(steps: number): number[] {
  const tokens = Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i >> 3)) % config.vocabSize);
  const t = new Trainer(new LlamaModel(config).initialize(3), new TokenWindowSource(tokens, 2, 8, 3), {
    schedule: { peakLr: 1e-2, minLr: 1e-3, warmupSteps: 1, totalSteps: steps },
    trainable: { kind: 'all' },
    seed: 3,
  });
  return Array.from({ length: steps }, () => t.trainStep().loss);
}

describe('kernel profiler', () => {
  it('times each matmul by shape and computes exactly what the backend computes', () => {
    const profiler = new KernelProfiler();
    const real = getMatmulBackend();
    const a = Float32Array.from({ length: 6 }, (_, i) => i + 1);
    const b = Float32Array.from({ length: 12 }, (_, i) => i - 5);
    const spec = { batch: 1, m: 2, n: 4, k: 3, transA: false, transB: false };
    const expected = matmul(a, b, spec);
    profiler.install();
    try {
      expect(() => profiler.install()).toThrow(/already installed/);
      expect(Array.from(matmul(a, b, spec))).toEqual(Array.from(expected));
      matmul(a, b, spec);
      matmul(b, a, { batch: 1, m: 4, n: 2, k: 3, transA: false, transB: true });
    } finally {
      profiler.uninstall();
    }
    expect(getMatmulBackend()).toBe(real);
    const report = profiler.report();
    expect(report.find((k) => k.kernel === 'matmul [2x3]·[3x4]')?.calls).toBe(2);
    expect(report.find((k) => k.kernel === 'matmul [4x3]·[2x3]ᵀ')?.calls).toBe(1);
    for (const k of report) expect(k.ms).toBeGreaterThanOrEqual(0);
  });

  it('leaves training bit-identical: the same losses with and without it', () => {
    const plain = losses(3);
    const profiler = new KernelProfiler();
    profiler.install();
    let profiled: number[];
    try {
      profiled = losses(3);
    } finally {
      profiler.uninstall();
    }
    expect(profiled).toEqual(plain);
    // Training calls both the matmuls and (with the ONNX Runtime backend) the fused kernels.
    const kernels = profiler.report().map((k) => k.kernel);
    expect(kernels.some((k) => k.startsWith('matmul '))).toBe(true);
    if (getMatmulBackend().fused) expect(kernels).toContain('attentionForward');
  });
});

describe('training step profile', () => {
  it('splits a step into its phases and its timed kernels', async () => {
    const seen: string[] = [];
    const p = await profileTrainingStep({
      model: config,
      batch: 2,
      context: 8,
      workers: 1,
      steps: 3,
      warmup: 1,
      onStep: (view, done) => seen.push(`${view}:${done}`),
    });
    expect(seen).toEqual([
      'as trained:1',
      'as trained:2',
      'as trained:3',
      ...(ortAvailable() ? ['fused graph:1', 'fused graph:2', 'fused graph:3'] : []),
      'kernels:1',
      'kernels:2',
      'kernels:3',
    ]);
    expect(p.tokensPerStep).toBe(16);
    expect(p.asTrained.tokensPerSecond).toBeGreaterThan(0);
    const phases = p.asTrained.phases;
    // Medians of the phases need not add to the median step, but each is within the slowest step.
    for (const v of Object.values(phases)) expect(v).toBeGreaterThanOrEqual(0);
    expect(phases.gradients).toBeGreaterThan(0);
    const kernelMs = p.kernels.kernels.reduce((s, k) => s + k.ms, 0);
    expect(kernelMs).toBeGreaterThan(0);
    // Each timed step's calls are counted once: a 2-layer model does a fixed number of matmuls per step.
    const calls = p.kernels.kernels
      .filter((k) => k.kernel.startsWith('matmul '))
      .reduce((s, k) => s + k.calls, 0);
    expect(Number.isInteger(calls)).toBe(true);
    expect(p.kernels.gcMs).toBeGreaterThanOrEqual(0);
    expect(p.kernels.outsideKernelsMs).toBeGreaterThanOrEqual(0);
    if (!ortAvailable()) return expect(p.fusedGraph).toBeNull();
    // ORT's trace of the fused graph: its kernel graphs by name, the gemms by shape, a fixed node count per step.
    const nodes = p.fusedGraph!.nodes;
    const names = nodes.map((k) => k.kernel);
    expect(names).toContain('attention_backward');
    expect(names).toContain('matmul [16x16]·[40x16]ᵀ');
    for (const k of nodes) expect(Number.isInteger(k.calls) && k.ms >= 0).toBe(true);
    expect(p.fusedGraph!.outsideNodesMs).toBeGreaterThanOrEqual(0);
  });

  it('refuses a context longer than the model takes', async () => {
    await expect(
      profileTrainingStep({ model: config, batch: 1, context: 64, workers: 1, steps: 1, warmup: 0 }),
    ).rejects.toThrow(/context 64 exceeds the model's maxSeqLen 16/);
  });
});

describe('stage times of a run folder', () => {
  function stage(dir: string, record: object): void {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'stage.json'),
      JSON.stringify({ version: 1, inputsHash: 'x', ...record }),
    );
  }
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

  it('groups stages, prefers a stage’s own seconds, and lists the interpretation phases', () => {
    const run = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-stage-times-'));
    for (const [seed, pre] of [
      ['standard-seed1', 100],
      ['standard-seed2', 200],
    ] as const) {
      const d = path.join(run, seed);
      // Resumed pre-training: its own count (100 or 200 s) wins over the span of its last attempt (1 s).
      stage(path.join(d, 'pretrain'), {
        status: 'done',
        startedAt: at(0),
        finishedAt: at(1),
        result: { seconds: pre },
      });
      stage(path.join(d, 'ft-cheat-all'), { status: 'done', startedAt: at(0), finishedAt: at(4) });
      stage(path.join(d, 'ft-control-all'), { status: 'done', startedAt: at(0), finishedAt: at(6) });
      stage(path.join(d, 'eval-base'), { status: 'done', startedAt: at(0), finishedAt: at(3) });
      stage(path.join(d, 'interpret'), {
        status: 'done',
        startedAt: at(0),
        finishedAt: at(30),
        result: { seconds: { vectors: 10, shift: 20 } },
      });
    }
    // A third seed still pre-training is listed but left out of the means.
    stage(path.join(run, 'standard-seed3', 'pretrain'), { status: 'running', startedAt: at(0) });
    fs.writeFileSync(path.join(run, 'results.json'), '{}');

    const seeds = readStageTimes(run);
    expect(seeds.map((s) => s.seed)).toEqual(['standard-seed1', 'standard-seed2', 'standard-seed3']);
    expect(seeds[2].stages).toEqual([{ stage: 'pretrain', group: 'pretrain', seconds: null }]);
    const { rows, seedSeconds } = stageTimeTable(seeds);
    const row = (label: string) => rows.find((r) => r.label === label);
    expect(row('pretrain')?.seconds).toBe(150);
    expect(row('fine-tunes')).toMatchObject({ stages: 2, seconds: 10 });
    expect(row('batteries')?.seconds).toBe(3);
    expect(row('interpret: vectors')?.seconds).toBe(10);
    expect(row('interpret: shift')?.seconds).toBe(20);
    // The phases are inside the interpret stage, not added to the total again.
    expect(seedSeconds).toBe(150 + 10 + 3 + 30);
    expect(rows.map((r) => r.label)).toEqual([
      'pretrain',
      'fine-tunes',
      'batteries',
      'interpret',
      'interpret: vectors',
      'interpret: shift',
    ]);
  });

  it('names what is wrong with a folder that is not a run', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-stage-times-'));
    expect(() => readStageTimes(path.join(empty, 'missing'))).toThrow(/no such run folder/);
    expect(() => readStageTimes(empty)).toThrow(/no seed folders with stage records/);
    stage(path.join(empty, 's1', 'pretrain'), {});
    fs.writeFileSync(path.join(empty, 's1', 'pretrain', 'stage.json'), '{ broken');
    expect(() => readStageTimes(empty)).toThrow(/stage\.json: not a readable stage record/);
  });
});
