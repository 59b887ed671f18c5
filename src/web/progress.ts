/**
 * Live progress of a run from the records it writes anyway (nothing is added to the training loop): each stage's
 * stage.json (running / done, with times), pre-training's probes.jsonl and checkpoint clock (elapsed.json), and the
 * run's metrics.jsonl (time-stamped probe records). From them: the stage in progress, its step, rate and ETA, the
 * persona-inference curve as it grows, and an estimate of the whole run's remaining time from its finished stages.
 * Files are parsed once per change (size and time), so polling many runs stays cheap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CurvePoint, LiveStage, RunProgress, SeedProgress, StageState } from './api-types.ts';

/** The parts of config.json the progress needs. */
export interface ProgressConfig {
  seeds?: number[];
  corpus?: { tokens?: number };
  model?: { contextLength?: number };
  pretrain?: { batchSize?: number };
  finetune?: { arms?: string[]; trainable?: string[] };
  interpret?: { enabled?: boolean };
  alignmentPretraining?: { enabled?: boolean };
}

export interface StageScan {
  seeds: SeedProgress[];
  done: number;
  total: number;
}

interface StageRecordView {
  status?: string;
  startedAt?: string;
  finishedAt?: string;
  result?: { tokens?: number };
}

/** Parsed files by path, reused while the file's size and time stay the same. */
const parsed = new Map<string, { key: string; value: unknown }>();

function statKey(file: string): { key: string; mtimeMs: number } | null {
  try {
    const st = fs.statSync(file);
    return { key: `${st.size}:${st.mtimeMs}`, mtimeMs: st.mtimeMs };
  } catch {
    return null;
  }
}

/** A file's parsed content, cached by size and time; null when absent or not (yet) readable. */
function cachedRead<T>(file: string, parse: (text: string) => T): T | null {
  const st = statKey(file);
  if (!st) {
    parsed.delete(file);
    return null;
  }
  const hit = parsed.get(file);
  if (hit && hit.key === st.key) return hit.value as T;
  try {
    const value = parse(fs.readFileSync(file, 'utf8'));
    parsed.set(file, { key: st.key, value });
    return value;
  } catch {
    // Written atomically, so a failed read is a file replaced under us: the next poll sees the new one.
    return null;
  }
}

function readStage(file: string): StageRecordView | null {
  return cachedRead(file, (t) => {
    const r = JSON.parse(t) as StageRecordView;
    // Only what progress needs: a stage's result can be large (the interpretation's summary).
    return {
      status: r.status,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      result: r.result ? { tokens: r.result.tokens } : undefined,
    };
  });
}

function readJsonLines<T>(file: string): T[] {
  return (
    cachedRead(file, (t) =>
      t
        .split('\n')
        .filter((l) => l.trim())
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as T];
          } catch {
            return []; // a line still being appended
          }
        }),
    ) ?? []
  );
}

/**
 * The stage folders of one seed, in the order the pipeline runs them (src/pipeline/experiment.ts runSeed); the
 * expected list lets the page show what is still to come.
 */
export function expectedStages(config: ProgressConfig): string[] {
  const arms = config.finetune?.arms ?? [];
  const trainable = config.finetune?.trainable ?? [];
  const fts = arms.flatMap((a) => trainable.flatMap((t) => [`ft-${a}-${t}`, `eval-ft-${a}-${t}`]));
  return [
    'corpus',
    'pretrain',
    'persona-check',
    'eval-base',
    'posttrain',
    'eval-posttrain',
    ...fts,
    ...(config.interpret?.enabled === false ? [] : ['interpret']),
  ];
}

/** Seed folders the config plans, in the pipeline's order (standard seeds, then alignment pre-training's). */
export function expectedSeedDirs(config: ProgressConfig): string[] {
  const seeds = config.seeds ?? [];
  return [
    ...seeds.map((s) => `standard-seed${s}`),
    ...(config.alignmentPretraining?.enabled ? seeds.map((s) => `alignment-seed${s}`) : []),
  ];
}

function seconds(a: string | undefined, b: string | undefined): number | null {
  if (!a || !b) return null;
  const s = (Date.parse(b) - Date.parse(a)) / 1000;
  return Number.isFinite(s) ? s : null;
}

/** Every planned stage of every seed with its state, plus stage folders the plan does not know. */
export function stageStates(runDir: string, config: ProgressConfig): StageScan {
  const planned = expectedStages(config);
  const seedDirs = new Set(expectedSeedDirs(config));
  for (const d of safeReaddir(runDir)) if (/-seed\d+$/.test(d)) seedDirs.add(d);
  let done = 0;
  let total = 0;
  const seeds = [...seedDirs].map((dir): SeedProgress => {
    const names = [...planned];
    for (const d of safeReaddir(path.join(runDir, dir)))
      if (!names.includes(d) && fs.existsSync(path.join(runDir, dir, d, 'stage.json'))) names.push(d);
    const stages = names.map((name): StageState => {
      const r = readStage(path.join(runDir, dir, name, 'stage.json'));
      const status = r?.status === 'done' ? 'done' : r?.status === 'running' ? 'running' : 'pending';
      return {
        name,
        status,
        startedAt: r?.startedAt ?? null,
        finishedAt: r?.finishedAt ?? null,
        seconds: status === 'done' ? seconds(r?.startedAt, r?.finishedAt) : null,
      };
    });
    done += stages.filter((s) => s.status === 'done').length;
    total += stages.length;
    return { dir, stages };
  });
  return { seeds, done, total };
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Time of the newest record of a run (ms), or null when it has none. */
export function runActivity(runDir: string, scan: StageScan): number | null {
  const files = [path.join(runDir, 'config.json'), path.join(runDir, 'metrics.jsonl')];
  for (const s of scan.seeds) {
    for (const st of s.stages)
      if (st.status !== 'pending') files.push(path.join(runDir, s.dir, st.name, 'stage.json'));
    const pre = path.join(runDir, s.dir, 'pretrain');
    files.push(
      path.join(pre, 'probes.jsonl'),
      path.join(pre, 'checkpoints', 'latest.json'),
      path.join(pre, 'checkpoints', 'elapsed.json'),
    );
  }
  let latest: number | null = null;
  for (const f of files) {
    const st = statKey(f);
    if (st && (latest === null || st.mtimeMs > latest)) latest = st.mtimeMs;
  }
  return latest;
}

interface MetricRecord {
  time?: string;
  seed?: number;
  stage?: string;
  step?: number;
}

interface ProbeRecord {
  step: number;
  tokens: number;
  loss: number | null;
  correlation: number | null;
}

/** A stage's kind, for estimating its time from finished stages alike (every fine-tune is one kind). */
export function stageKind(name: string): string {
  return name.replace(/^eval-ft-.*/, 'eval-ft').replace(/^ft-.*/, 'ft');
}

/** The run's live state: stages, the stage in progress with its rate and ETA, and the pre-training curve. */
export function runProgress(
  run: string,
  runDir: string,
  config: ProgressConfig,
  status: RunProgress['status'],
  now = Date.now(),
): RunProgress {
  const scan = stageStates(runDir, config);
  const metrics = readJsonLines<MetricRecord>(path.join(runDir, 'metrics.jsonl'));
  const curve: CurvePoint[] = [];
  for (const s of scan.seeds) {
    const seed = Number(/seed(\d+)$/.exec(s.dir)?.[1]);
    const probes = readJsonLines<ProbeRecord>(path.join(runDir, s.dir, 'pretrain', 'probes.jsonl'));
    for (const p of probes) {
      const m = metrics.find((r) => r.stage === 'pretrain-probe' && r.seed === seed && r.step === p.step);
      curve.push({
        seedDir: s.dir,
        step: p.step,
        tokens: p.tokens,
        correlation: typeof p.correlation === 'number' ? p.correlation : null,
        loss: typeof p.loss === 'number' ? p.loss : null,
        time: m?.time ?? null,
      });
    }
  }
  const durations = new Map<string, number[]>();
  for (const s of scan.seeds)
    for (const st of s.stages)
      if (st.seconds !== null)
        durations.set(stageKind(st.name), [...(durations.get(stageKind(st.name)) ?? []), st.seconds]);
  const typical = (name: string): number | null => {
    const ds = durations.get(stageKind(name));
    return ds && ds.length ? ds.reduce((a, b) => a + b, 0) / ds.length : null;
  };

  let current: LiveStage | null = null;
  const running = scan.seeds.flatMap((s) =>
    s.stages.filter((st) => st.status === 'running').map((st) => ({ s, st })),
  )[0];
  if (running && status === 'running') {
    const { s, st } = running;
    const startedMs = st.startedAt ? Date.parse(st.startedAt) : NaN;
    const elapsedS = Number.isFinite(startedMs) ? Math.max(0, (now - startedMs) / 1000) : null;
    current = {
      seedDir: s.dir,
      stage: st.name,
      startedAt: st.startedAt,
      elapsedS,
      step: null,
      steps: null,
      rate: null,
      etaS: null,
      lastRecordAgeS: null,
    };
    if (st.name === 'pretrain')
      Object.assign(current, pretrainClock(runDir, s.dir, config, metrics, startedMs, now));
    else {
      const t = typical(st.name);
      if (t !== null && elapsedS !== null) current.etaS = Math.max(0, t - elapsedS);
    }
  }

  // The rest of the run: each pending stage takes as long as its finished kind did here (unknown kinds: no ETA).
  let etaS: number | null = current ? current.etaS : 0;
  for (const s of scan.seeds)
    for (const st of s.stages) {
      if (st.status !== 'pending' || etaS === null) continue;
      const t = st.name === 'pretrain' ? pretrainEstimate(scan, typical) : typical(st.name);
      etaS = t === null ? null : etaS + t;
    }
  if (status !== 'running') etaS = null;
  const activity = runActivity(runDir, scan);
  return {
    run,
    status,
    stagesDone: scan.done,
    stagesTotal: scan.total,
    current,
    etaS,
    seeds: scan.seeds,
    curve,
    updatedAt: activity ? new Date(activity).toISOString() : null,
  };
}

function pretrainEstimate(scan: StageScan, typical: (name: string) => number | null): number | null {
  return scan.seeds.some((s) => s.stages.some((st) => st.name === 'pretrain' && st.status === 'done'))
    ? typical('pretrain')
    : null;
}

/**
 * Pre-training's step, total, rate and ETA: the total from the corpus's token count and the batch shape (as the
 * pipeline computes it), the steps and times from the probe records and the checkpoint clock since this attempt
 * started (a resumed stage restarts its clock).
 */
function pretrainClock(
  runDir: string,
  seedDir: string,
  config: ProgressConfig,
  metrics: MetricRecord[],
  startedMs: number,
  now: number,
): Partial<LiveStage> {
  const corpus = readStage(path.join(runDir, seedDir, 'corpus', 'stage.json'));
  const trainTokens = corpus?.result?.tokens;
  const per = (config.pretrain?.batchSize ?? 0) * (config.model?.contextLength ?? 0);
  const steps = trainTokens && per > 0 ? Math.max(1, Math.floor(trainTokens / per)) : null;
  const seed = Number(/seed(\d+)$/.exec(seedDir)?.[1]);
  const points: { step: number; t: number }[] = metrics
    .filter((m) => m.stage === 'pretrain-probe' && m.seed === seed && typeof m.step === 'number' && m.time)
    .map((m) => ({ step: m.step as number, t: Date.parse(m.time as string) }));
  const clockFile = path.join(runDir, seedDir, 'pretrain', 'checkpoints', 'elapsed.json');
  const clock = cachedRead(clockFile, (t) => JSON.parse(t) as { step?: number });
  const clockAt = statKey(clockFile)?.mtimeMs;
  if (clock && typeof clock.step === 'number' && clockAt !== undefined)
    points.push({ step: clock.step, t: clockAt });
  const attempt = points
    .filter((p) => Number.isFinite(p.t) && (!Number.isFinite(startedMs) || p.t >= startedMs - 1000))
    .sort((a, b) => a.t - b.t);
  const last = attempt.at(-1);
  const first = attempt[0];
  const rate =
    last && first && last.t > first.t && last.step > first.step
      ? ((last.step - first.step) * 1000) / (last.t - first.t)
      : null;
  const step = last?.step ?? null;
  return {
    step,
    steps,
    rate,
    etaS:
      rate && steps !== null && step !== null
        ? Math.max(0, (steps - step) / rate - (now - last!.t) / 1000)
        : null,
    lastRecordAgeS: last ? Math.max(0, (now - last.t) / 1000) : null,
  };
}
