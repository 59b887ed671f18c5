/**
 * Where a pre-training step's time goes, in three views of the same model and batch on random tokens (the cost
 * does not depend on the text):
 * - as trained: the Trainer with its data-parallel workers, each step split into its phases (batch, loss and
 *   gradients, clipping, the AdamW update);
 * - the fused step's graph (fused-step.ts), in one JS thread, with ORT's profiler timing each of its nodes, added
 *   up by the kernel graph it came from;
 * - kernel by kernel on the per-kernel path (autograd, which hooks inside a block, partial adapters and other architectures take): one JS
 *   thread on the kernel pool, every kernel call timed, the rest of the step (autograd bookkeeping, copies,
 *   allocation) and the garbage collector's pauses beside them.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import type { LlamaConfig } from '../model/config.ts';
import { LlamaModel } from '../model/llama.ts';
import { getMatmulBackend } from '../tensor/matmul.ts';
import { KernelProfiler, type KernelTime } from '../tensor/kernel-profile.ts';
import { TokenWindowSource } from './data.ts';
import { fusedStepUnsupported, profileFusedSteps, type GraphNodeTime } from './fused-step.ts';
import { Trainer, type StepInfo } from './trainer.ts';

/** The views of a profile, in the order they run. */
export type StepView = 'as trained' | 'fused graph' | 'kernels';

export interface StepProfileOptions {
  model: LlamaConfig;
  batch: number;
  context: number;
  /** Data-parallel workers of the as-trained view (the kernel view always trains in this thread). */
  workers: number;
  steps: number;
  warmup: number;
  seed?: number;
  /** Called after each timed step of each view (for a progress bar). */
  onStep?: (view: StepView, done: number, total: number) => void;
}

export interface PhaseTimes {
  batch: number;
  gradients: number;
  clip: number;
  update: number;
}

export interface StepProfile {
  tokensPerStep: number;
  threads: number;
  backend: string;
  asTrained: {
    workers: number;
    /** Median and best step, ms. */
    stepMs: { median: number; best: number };
    /** Median of each phase, ms. */
    phases: PhaseTimes;
    tokensPerSecond: number;
  };
  /**
   * The fused step in one JS thread, with ORT's profiler timing every node of its graph: null where the model
   * trains through autograd instead (see fused-step.ts).
   */
  fusedGraph: {
    stepMs: { median: number; best: number };
    /** Per step, largest first. */
    nodes: GraphNodeTime[];
    /** Step time not spent in a graph node, per step: the JS around the graph, AdamW, ORT's own overhead. */
    outsideNodesMs: number;
    phases: PhaseTimes;
  } | null;
  /** The per-kernel path (autograd), which hooks inside a block, partial adapters and other architectures take. */
  kernels: {
    stepMs: { median: number; best: number };
    /** Per step (totals over the timed steps divided by their count), largest first. */
    kernels: KernelTime[];
    /** Step time not spent inside a kernel call, per step. */
    outsideKernelsMs: number;
    /** Garbage collection pauses, per step (part of the time outside the kernels). */
    gcMs: number;
    phases: PhaseTimes;
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function randomTokens(vocab: number, n: number, seed: number): Int32Array {
  let s = seed >>> 0 || 1;
  return new Int32Array(n).map(() => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % vocab;
  });
}

function trainer(o: StepProfileOptions, workers: number): Trainer {
  const seed = o.seed ?? 1;
  const model = new LlamaModel(o.model).initialize(seed);
  const tokens = randomTokens(o.model.vocabSize, Math.max(1 << 16, 4 * o.batch * (o.context + 1)), seed);
  return new Trainer(model, new TokenWindowSource(tokens, o.batch, o.context, seed), {
    schedule: { peakLr: 1e-3, minLr: 1e-4, warmupSteps: 1, totalSteps: o.warmup + o.steps },
    trainable: { kind: 'all' },
    seed,
    workers,
  });
}

function phaseMedians(steps: readonly StepInfo[]): PhaseTimes {
  const of = (k: keyof PhaseTimes) => median(steps.map((s) => s.ms[k]));
  return { batch: of('batch'), gradients: of('gradients'), clip: of('clip'), update: of('update') };
}

/** Runs `warmup` steps, then `steps` timed ones; returns each timed step's info and wall time. */
function timedSteps(
  t: Trainer,
  o: StepProfileOptions,
  view: StepView,
  beforeTimed: () => void = () => {},
): { infos: StepInfo[]; wall: number[] } {
  for (let i = 0; i < o.warmup; i++) t.trainStep();
  beforeTimed();
  const infos: StepInfo[] = [];
  const wall: number[] = [];
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    infos.push(t.trainStep());
    wall.push(performance.now() - t0);
    o.onStep?.(view, i + 1, o.steps);
  }
  return { infos, wall };
}

/** Profiles the training step of `o.model` at batch x context tokens; see the file comment for the two views. */
export async function profileTrainingStep(o: StepProfileOptions): Promise<StepProfile> {
  if (o.steps < 1) throw new Error(`profile: steps must be at least 1, got ${o.steps}`);
  if (o.context > o.model.maxSeqLen)
    throw new Error(`profile: context ${o.context} exceeds the model's maxSeqLen ${o.model.maxSeqLen}`);
  const backend = getMatmulBackend();
  const tokensPerStep = o.batch * o.context;

  const asTrainedTrainer = trainer(o, o.workers);
  let asTrained;
  try {
    asTrained = timedSteps(asTrainedTrainer, o, 'as trained');
  } finally {
    asTrainedTrainer.close();
  }

  let fusedGraph: StepProfile['fusedGraph'] = null;
  const graphTrainer = trainer(o, 1);
  if (fusedStepUnsupported(graphTrainer.model) === null) {
    let graphRun: { infos: StepInfo[]; wall: number[] } | undefined;
    try {
      const nodes = profileFusedSteps(
        () => (graphRun = timedSteps(graphTrainer, o, 'fused graph')),
        o.warmup,
        o.steps,
      );
      const wall = graphRun!.wall;
      fusedGraph = {
        stepMs: { median: median(wall), best: Math.min(...wall) },
        nodes,
        outsideNodesMs: Math.max(
          0,
          wall.reduce((a, b) => a + b, 0) / o.steps - nodes.reduce((a, k) => a + k.ms, 0),
        ),
        phases: phaseMedians(graphRun!.infos),
      };
    } finally {
      graphTrainer.close();
    }
  }

  const profiler = new KernelProfiler();
  let gcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  const kernelTrainer = trainer(o, 1);
  profiler.install();
  let kernelRun;
  try {
    kernelRun = timedSteps(kernelTrainer, o, 'kernels', () => {
      profiler.reset();
      gc.observe({ entryTypes: ['gc'] });
    });
    // GC entries are delivered on a later turn of the event loop (not by the next setImmediate): wait for them.
    await new Promise((resolve) => setTimeout(resolve, 100));
  } finally {
    gc.disconnect();
    profiler.uninstall();
    kernelTrainer.close();
  }
  const n = o.steps;
  const perStep = profiler.report().map((k) => ({ kernel: k.kernel, calls: k.calls / n, ms: k.ms / n }));
  const totalMs = kernelRun.wall.reduce((a, b) => a + b, 0) / n;
  const kernelMs = perStep.reduce((a, k) => a + k.ms, 0);
  return {
    tokensPerStep,
    threads: backend.threads,
    backend: backend.name,
    asTrained: {
      workers: o.workers,
      stepMs: { median: median(asTrained.wall), best: Math.min(...asTrained.wall) },
      phases: phaseMedians(asTrained.infos),
      tokensPerSecond: (tokensPerStep * n) / (asTrained.wall.reduce((a, b) => a + b, 0) / 1000),
    },
    fusedGraph,
    kernels: {
      stepMs: { median: median(kernelRun.wall), best: Math.min(...kernelRun.wall) },
      kernels: perStep,
      outsideKernelsMs: Math.max(0, totalMs - kernelMs),
      gcMs: gcMs / n,
      phases: phaseMedians(kernelRun.infos),
    },
  };
}
