/**
 * Garbage-collector settings for the compute loop. V8's concurrent marker runs on a background thread; on a
 * 2-core machine it takes a core away from ONNX Runtime's intra-op pool in the middle of a parallel kernel, and
 * every thread of that kernel then waits for the slowed one. Marking in the main thread's pauses instead costs
 * less than those stalls: a training step of the default model is 10-17% faster (`npm run bench -- --shape
 * experiment`, docs/benchmarks.md). The setting changes when V8 marks, never what any computation returns.
 */
import v8 from 'node:v8';

let applied = false;

/** Turns V8's concurrent marking off for this process (idempotent). */
export function avoidConcurrentMarking(): void {
  if (applied) return;
  // V8 reads this flag when it starts each marking cycle, so setting it at run time takes effect at the next GC.
  v8.setFlagsFromString('--no-concurrent-marking');
  applied = true;
}
