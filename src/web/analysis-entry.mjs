// Entry of the lab's analysis worker (analysis-worker.ts): worker threads do not inherit the parent's TypeScript
// loader, so register tsx here first. A failure to start is posted back, so the lab reports it instead of waiting.
import { parentPort } from 'node:worker_threads';

try {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./analysis-worker.ts');
} catch (e) {
  parentPort?.postMessage({
    id: -1,
    error: `the analysis worker did not start: ${e instanceof Error ? e.message : String(e)}`,
  });
}
