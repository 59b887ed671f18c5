/**
 * One sweep job, in its own process (job-entry.mjs): `psm run`'s pipeline for one grid point and seed, in the job's
 * run folder, whose stage folders link into the sweep's stage store. The pipeline caches every stage by its inputs
 * and resumes an interrupted one from its checkpoints, so a job given again after its worker died goes on from there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FolderLockedError, LOCK_FILE, lockFolder } from '../io/folder-lock.ts';
import { runExperiment } from '../pipeline/experiment.ts';
import {
  fileProgress,
  findJob,
  HOST,
  isJobDone,
  jobProgressFile,
  jobRunDir,
  linkJobStages,
  readJobRecord,
  readPlan,
} from './store.ts';

/**
 * The job's run-folder lock (folder-lock.ts: one writer per folder). A holder on this host is checked by its pid, as
 * for `psm run`. A holder on another host cannot be checked that way; the job's record says when that holder's worker
 * last renewed its heartbeat, and one silent for longer than the lease is gone (its job was handed on because its lease
 * ran out), so its lock is removed.
 */
function lockJobFolder(sweepDir: string, jobId: string, runDir: string, leaseMs: number): () => void {
  try {
    return lockFolder(runDir, 'psm sweep job');
  } catch (e) {
    if (!(e instanceof FolderLockedError) || e.holder.host === HOST) throw e;
    const holder = e.holder;
    const attempt = readJobRecord(sweepDir, jobId)?.attempts.find(
      (a) => a.host === holder.host && a.pid === holder.pid,
    );
    const silentMs = Date.now() - Date.parse(attempt?.heartbeatAt ?? holder.since);
    if (!(silentMs > leaseMs))
      throw new Error(
        `${e.message} Its worker's heartbeat is ${Math.round(silentMs / 1000)} s old; the lock is taken over after ${Math.round(leaseMs / 1000)} s.`,
        { cause: e },
      );
    fs.rmSync(path.join(runDir, LOCK_FILE), { force: true });
    return lockFolder(runDir, 'psm sweep job');
  }
}

export async function runJob(sweepDir: string, jobId: string, leaseMs: number): Promise<void> {
  // Paths relative to the sweep folder: the pipeline records model folders in its stage results, and another job (on
  // another machine, with the folder mounted elsewhere) reads them from there.
  process.chdir(sweepDir);
  const plan = readPlan('.');
  const job = findJob(plan, jobId);
  const run = plan.runs.find((r) => r.id === job.run);
  if (!run) throw new Error(`plan.json: job ${jobId} names no run of the sweep`);
  for (const dep of job.deps)
    if (!isJobDone('.', findJob(plan, dep)))
      throw new Error(`job ${dep} computes stages that this job shares and is not done yet`);
  linkJobStages('.', job);
  const runDir = jobRunDir(job);
  const release = lockJobFolder('.', jobId, runDir, leaseMs);
  try {
    await runExperiment(
      { ...run.config, seeds: [job.seed] },
      {
        runDir,
        progress: fileProgress(jobProgressFile('.', jobId)),
        log: (line) => process.stderr.write(`${line}\n`),
      },
    );
  } finally {
    release();
  }
}
