// Entry of one sweep job's process (attempt.ts starts it). First a watchdog thread: it kills this process as soon as
// the worker that started it is gone, since the worker's lease on the job ends with it and the job may then be given
// to another worker; the pipeline runs synchronously for minutes, so only a thread of its own can watch. Then tsx
// (a child process does not inherit the parent's TypeScript loader) and the job. Errors end in one line on stderr,
// `psm sweep job: error: MESSAGE`, which the worker records.
import { Worker } from 'node:worker_threads';

const parent = Number(process.env.PSM_SWEEP_PARENT_PID);
const watchdog = new Worker(
  `const { workerData } = require('node:worker_threads');
   setInterval(() => { if (process.ppid !== workerData.parent) process.kill(workerData.self, 'SIGKILL'); }, 200);`,
  { eval: true, workerData: { parent: parent > 0 ? parent : process.ppid, self: process.pid } },
);
watchdog.unref();

const [sweepDir, jobId] = process.argv.slice(2);
try {
  const { register } = await import('tsx/esm/api');
  register();
  const { runJob } = await import('./job.ts');
  await runJob(sweepDir, jobId, Number(process.env.PSM_SWEEP_LEASE_MS) || 30_000);
  process.exit(0);
} catch (e) {
  const message = e instanceof Error ? e.message : String(e);
  if (process.env.PSM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.stderr.write(`psm sweep job: error: ${message.replace(/\n/g, ' | ')}\n`);
  process.exit(1);
}
