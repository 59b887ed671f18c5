/**
 * `psm sweep status`: every job of a sweep (a grid point's seed) read from the sweep folder alone, wherever its
 * workers run: done; running where (host and pid, with the age of its worker's heartbeat) and in which stage; queued;
 * retrying or failed with its error; waiting on the jobs whose stages it shares; blocked by a failed one.
 */
import { HEARTBEAT_MS } from './attempt.ts';
import { storePath, uniqueStages, type PlannedJob, type SweepPlan } from './plan.ts';
import { isJobDone, readJobProgress, readJobRecord, readPlan, stageState, type JobRecord } from './store.ts';

export type JobState =
  'done' | 'running' | 'stalled' | 'queued' | 'retrying' | 'stopped' | 'failed' | 'waiting' | 'blocked';

export interface JobStatus {
  job: string;
  run: string;
  label: string;
  seed: number;
  state: JobState;
  /** host/pid of the job's process while it runs. */
  where?: string;
  heartbeatAgeS?: number;
  /** The running stage and its progress. */
  stage?: string;
  stagesDone: number;
  stages: number;
  attempts: number;
  maxAttempts?: number;
  error?: string;
  /** The unfinished jobs it waits on (waiting), or the failed one (blocked). */
  on?: string[];
}

export interface StageStatus {
  folder: string;
  path: string;
  state: 'done' | 'started' | 'none';
  /** The jobs that use it (more than one: shared across the grid). */
  jobs: string[];
}

export interface SweepStatus {
  name: string;
  jobs: JobStatus[];
  stages: StageStatus[];
}

/** A heartbeat older than this many intervals: the worker is gone (its lease runs out, the queue hands the job on). */
const STALE_HEARTBEATS = 5;

function lastError(r: JobRecord | null): string | undefined {
  return [...(r?.attempts ?? [])].reverse().find((a) => a.error)?.error;
}

function jobStatus(
  sweepDir: string,
  plan: SweepPlan,
  job: PlannedJob,
  states: Map<string, JobState>,
): JobStatus {
  const run = plan.runs.find((r) => r.id === job.run);
  const record = readJobRecord(sweepDir, job.id);
  const stageStates = job.stages.map((s) => stageState(sweepDir, s));
  const base: JobStatus = {
    job: job.id,
    run: job.run,
    label: run?.label ?? job.run,
    seed: job.seed,
    state: 'waiting',
    stagesDone: stageStates.filter((s) => s === 'done').length,
    stages: job.stages.length,
    attempts: record?.attempts.length ?? 0,
    maxAttempts: record?.maxAttempts,
  };
  if (isJobDone(sweepDir, job)) return { ...base, state: 'done' };
  if (record?.state === 'running') {
    const a = record.attempts[record.attempts.length - 1];
    const age = (Date.now() - Date.parse(a.heartbeatAt)) / 1000;
    const p = readJobProgress(sweepDir, job.id);
    return {
      ...base,
      state: age * 1000 > STALE_HEARTBEATS * HEARTBEAT_MS ? 'stalled' : 'running',
      where: `${a.host}/${a.pid ?? a.workerPid}`,
      heartbeatAgeS: Math.round(age),
      stage: p && p.pid === a.pid ? `${p.label} ${p.done}/${p.total} ${p.unit}` : undefined,
    };
  }
  if (record && record.state !== 'done') return { ...base, state: record.state, error: lastError(record) };
  const unfinished = job.deps.filter((d) => states.get(d) !== 'done');
  const failed = unfinished.filter((d) => states.get(d) === 'failed' || states.get(d) === 'blocked');
  return failed.length > 0 ? { ...base, state: 'blocked', on: failed } : { ...base, on: unfinished };
}

export function sweepStatus(sweepDir: string): SweepStatus {
  const plan = readPlan(sweepDir);
  const states = new Map<string, JobState>();
  // Jobs depend on earlier ones only, so in plan order each job's dependencies are known before it.
  const jobs = plan.jobs.map((j) => {
    const s = jobStatus(sweepDir, plan, j, states);
    states.set(j.id, s.state);
    return s;
  });
  const stages = uniqueStages(plan).map((s) => ({
    folder: s.folder,
    path: storePath(s),
    state: stageState(sweepDir, s),
    jobs: plan.jobs.filter((j) => j.stages.some((x) => storePath(x) === storePath(s))).map((j) => j.id),
  }));
  return { name: plan.name, jobs, stages };
}

export function formatStatus(s: SweepStatus, opts: { stages?: boolean } = {}): string {
  const count = (state: JobState) => s.jobs.filter((j) => j.state === state).length;
  const states: JobState[] = [
    'done',
    'running',
    'stalled',
    'queued',
    'retrying',
    'stopped',
    'waiting',
    'failed',
    'blocked',
  ];
  const out = [
    `sweep ${s.name}: ${s.jobs.length} jobs (grid point x seed): ${states
      .filter((x) => count(x) > 0)
      .map((x) => `${count(x)} ${x}`)
      .join(', ')}; stages ${s.stages.filter((x) => x.state === 'done').length}/${s.stages.length} done`,
    '',
  ];
  const rows = s.jobs.map((j) => {
    const detail =
      j.state === 'running' || j.state === 'stalled'
        ? `${j.where} (heartbeat ${j.heartbeatAgeS} s ago)${j.stage ? `: ${j.stage}` : ''}`
        : j.state === 'waiting' || j.state === 'blocked'
          ? j.on && j.on.length > 0
            ? `on ${j.on.join(', ')}`
            : 'for a free worker'
          : j.error
            ? `attempt ${j.attempts}/${j.maxAttempts ?? '?'}: ${j.error}`
            : '';
    return [j.label, `s${j.seed}`, j.state, `${j.stagesDone}/${j.stages}`, detail];
  });
  const head = ['grid point', 'seed', 'state', 'stages', 'where / why'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [head, ...rows])
    out.push(
      r
        .map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]) : c))
        .join('  ')
        .trimEnd(),
    );
  if (opts.stages) {
    out.push('', 'stage store:');
    for (const st of s.stages)
      out.push(
        `  ${st.state.padEnd(7)} ${st.path}${st.jobs.length > 1 ? `  (shared by ${st.jobs.length} jobs)` : ''}`,
      );
  }
  return out.join('\n');
}
