/**
 * One attempt at a job, from the worker's side (the local pool's or `psm worker`'s): the job runs in a process of its
 * own (job-entry.mjs), so the worker's event loop stays free to renew its lease on the job and to heartbeat the job's
 * record while the pipeline computes; the job's process dies with the worker (its watchdog), so the work ends when
 * the lease does. Its output goes to the job's log; its error, if any, to the record.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, jobLogFile, readJobRecord, writeJobRecord, type Attempt, type JobRecord } from './store.ts';

const ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'job-entry.mjs');

/** How often a running job's record is heartbeated. */
export const HEARTBEAT_MS = 2_000;

export interface AttemptOptions {
  sweepDir: string;
  jobId: string;
  /** Whether a failure of this attempt is the job's last (no retry follows). */
  final: boolean;
  maxAttempts: number;
  /** The lease a worker holds on a job (a heartbeat older than this is a dead worker's). */
  leaseMs: number;
  /** Aborting kills the job's process (the worker lost its lease, or is stopping). */
  signal?: AbortSignal;
}

export type AttemptOutcome = { ok: true } | { ok: false; error: string };

/** The last line the job printed as its error, or how it ended. */
function errorOf(tail: string[], code: number | null, signal: NodeJS.Signals | null): string {
  const marked = [...tail].reverse().find((l) => l.startsWith('psm sweep job: error: '));
  if (marked) return marked.slice('psm sweep job: error: '.length);
  const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
  const last = tail.filter((l) => l.trim()).slice(-3);
  return last.length > 0 ? `${how}; last output: ${last.join(' | ')}` : how;
}

export async function runAttempt(o: AttemptOptions): Promise<AttemptOutcome> {
  const { sweepDir, jobId } = o;
  const now = () => new Date().toISOString();
  const base: JobRecord = readJobRecord(sweepDir, jobId) ?? {
    job: jobId,
    state: 'queued',
    maxAttempts: o.maxAttempts,
    attempts: [],
    updatedAt: now(),
  };
  // An attempt that never ended was its worker's when it died: the lease ran out and the job came here.
  const attempts = base.attempts.map((a) =>
    a.endedAt
      ? a
      : { ...a, endedAt: now(), error: a.error ?? 'its worker stopped (killed?); its lease ran out' },
  );
  const attempt: Attempt = {
    attempt: attempts.length + 1,
    host: HOST,
    workerPid: process.pid,
    pid: null,
    startedAt: now(),
    heartbeatAt: now(),
  };
  attempts.push(attempt);
  const save = (state: JobRecord['state']) =>
    writeJobRecord(sweepDir, { ...base, state, maxAttempts: o.maxAttempts, attempts });
  save('running');
  fs.appendFileSync(
    jobLogFile(sweepDir, jobId),
    `== attempt ${attempt.attempt} on ${HOST}, worker pid ${process.pid}, ${attempt.startedAt}\n`,
  );
  const log = fs.openSync(jobLogFile(sweepDir, jobId), 'a');
  const tail: string[] = [];
  const child = spawn(process.execPath, [ENTRY, path.resolve(sweepDir), jobId], {
    cwd: sweepDir,
    env: { ...process.env, PSM_SWEEP_PARENT_PID: String(process.pid), PSM_SWEEP_LEASE_MS: String(o.leaseMs) },
    stdio: ['ignore', log, 'pipe'],
  });
  attempt.pid = child.pid ?? null;
  save('running');
  child.stderr?.on('data', (chunk: Buffer) => {
    fs.writeSync(log, chunk);
    tail.push(...chunk.toString().split('\n'));
    tail.splice(0, Math.max(0, tail.length - 40));
  });
  const kill = () => child.kill('SIGKILL');
  o.signal?.addEventListener('abort', kill, { once: true });
  if (o.signal?.aborted) kill();
  const heartbeat = setInterval(() => {
    attempt.heartbeatAt = now();
    save('running');
  }, HEARTBEAT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('error', (e) => {
      tail.push(`psm sweep job: error: cannot start the job's process: ${e.message}`);
      resolve([null, null]);
    });
    child.on('close', (c, s) => resolve([c, s]));
  });
  clearInterval(heartbeat);
  o.signal?.removeEventListener('abort', kill);
  fs.closeSync(log);
  attempt.endedAt = now();
  attempt.heartbeatAt = attempt.endedAt;
  if (code === 0) {
    save('done');
    return { ok: true };
  }
  const error = o.signal?.aborted
    ? `stopped: ${String(o.signal.reason ?? 'aborted')}`
    : errorOf(tail, code, signal);
  attempt.error = error;
  save(o.signal?.aborted ? 'stopped' : o.final ? 'failed' : 'retrying');
  return { ok: false, error };
}
