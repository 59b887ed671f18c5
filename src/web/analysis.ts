/**
 * The lab's side of the analysis worker (analysis-worker.ts): one worker thread started on first use, jobs run one at
 * a time, each result kept for the life of the lab (keyed by the model files it was computed from, so a model
 * rewritten under the same path is recomputed). Pages poll `peek`, which never blocks.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SoftmaxProbe } from '../interpret/index.ts';

export type AnalysisRequest =
  | { id: number; task: 'axis'; runDir: string; seedDir: string }
  | { id: number; task: 'probe'; runDir: string; modelDir: string };

export interface AxisResult {
  axis: Float32Array;
  layer: number;
  /** Projection floor for capping: the 25th percentile of ordinary chats' projections (the interpretation's rule). */
  threshold: number;
}

export interface ProbeFit {
  probe: SoftmaxProbe;
  /** Its agreement with Bayes on held-out in-context probes (total variation; the kind's prior alone). */
  tv: number;
  tvPrior: number;
}

export type AnalysisState<T> =
  | { state: 'ready'; value: T }
  | { state: 'pending'; since: number }
  | { state: 'failed'; message: string; at: number };

/** A failed job is tried again on the next request after this long (the worker may have been lost mid-job). */
const RETRY_AFTER_MS = 30_000;

type Task =
  { task: 'axis'; runDir: string; seedDir: string } | { task: 'probe'; runDir: string; modelDir: string };

/** The model file a job reads, with its size and time: a rewritten model is another job. */
function modelStamp(modelDir: string): string {
  try {
    const st = fs.statSync(path.join(modelDir, 'model.safetensors'));
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

export class Analysis {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly jobs = new Map<string, AnalysisState<unknown>>();
  private readonly waiting = new Map<number, { key: string; resolve: () => void }>();
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  /** The seed's assistant axis (rebuilt on the post-trained model). */
  axis(runDir: string, seedDir: string): AnalysisState<AxisResult> {
    const key = `axis|${seedDir}|${modelStamp(path.join(seedDir, 'posttrain', 'model'))}`;
    return this.ensure(key, { task: 'axis', runDir, seedDir }) as AnalysisState<AxisResult>;
  }

  /** An archetype probe fitted on this model's activations. */
  probe(runDir: string, modelDir: string): AnalysisState<ProbeFit> {
    const key = `probe|${modelDir}|${modelStamp(modelDir)}`;
    return this.ensure(key, { task: 'probe', runDir, modelDir }) as AnalysisState<ProbeFit>;
  }

  /** Resolves when every job started so far has finished (tests). */
  async idle(): Promise<void> {
    let before: Promise<void>;
    do {
      before = this.chain;
      await before;
    } while (before !== this.chain);
  }

  private ensure(key: string, task: Task): AnalysisState<unknown> {
    const known = this.jobs.get(key);
    if (known && !(known.state === 'failed' && Date.now() - known.at > RETRY_AFTER_MS)) return known;
    const pending: AnalysisState<unknown> = { state: 'pending', since: Date.now() };
    this.jobs.set(key, pending);
    this.chain = this.chain.then(() => this.run(key, task));
    return pending;
  }

  private run(key: string, task: Task): Promise<void> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.waiting.set(id, { key, resolve });
      try {
        if (this.closed) throw new Error('the lab is shutting down');
        this.start().postMessage({ id, ...task });
      } catch (e) {
        this.settle(id, { state: 'failed', message: (e as Error).message, at: Date.now() });
      }
    });
  }

  private settle(id: number, state: AnalysisState<unknown>): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    this.jobs.set(w.key, state);
    w.resolve();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./analysis-entry.mjs', import.meta.url));
    worker.unref();
    worker.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      if (m.id === -1) return this.failAll(m.error ?? 'the analysis worker did not start');
      if (m.error !== undefined) this.settle(m.id, { state: 'failed', message: m.error, at: Date.now() });
      else this.settle(m.id, { state: 'ready', value: m.result });
    });
    const lost = (why: string) => {
      if (this.worker === worker) this.worker = null;
      this.failAll(why);
    };
    worker.on('error', (e) => lost(`the analysis worker failed: ${e.message}`));
    worker.on('exit', (code) => lost(`the analysis worker exited (code ${code})`));
    this.worker = worker;
    return worker;
  }

  private failAll(message: string): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, { state: 'failed', message, at: Date.now() });
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
    this.failAll('the lab is shutting down');
  }
}
