// Entry of a data-parallel training worker (see data-parallel.ts): worker threads do not inherit the parent's
// TypeScript loader, so register tsx here, then run the worker loop. A failure to start is reported through
// the shared control words, since the parent waits on them synchronously and cannot see 'error' events.
import { workerData } from 'node:worker_threads';

try {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./data-parallel-worker.ts');
} catch (e) {
  const control = new Int32Array(workerData.control);
  workerData.errors.postMessage(`worker did not start: ${e instanceof Error ? e.message : String(e)}`);
  Atomics.store(control, 2, 1);
  Atomics.store(control, 1, Atomics.load(control, 0));
  Atomics.notify(control, 1);
}
