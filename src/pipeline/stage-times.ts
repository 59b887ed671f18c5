/**
 * Where a run's minutes went: every stage folder's recorded time, grouped the way `psm run` spends them
 * (pre-training, post-training, the narrow fine-tunes, the battery after each model, the persona check, and the
 * interpretation's phases). A stage reused from an earlier run keeps the time it took when it was computed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StageRecord } from './stage.ts';

export interface StageTime {
  /** The stage's folder name (`pretrain`, `ft-cheat-lora1`, `eval-base`, ...). */
  stage: string;
  group: string;
  /** Null while the stage is unfinished. */
  seconds: number | null;
}

export interface SeedStageTimes {
  /** The seed folder's name (`standard-seed1`). */
  seed: string;
  stages: StageTime[];
  /** The interpretation's phases, seconds (empty without an interpret stage). */
  interpretPhases: Record<string, number>;
}

/** Stage groups in the order a seed runs them. */
export const STAGE_GROUPS = [
  'corpus',
  'pretrain',
  'posttrain',
  'fine-tunes',
  'batteries',
  'persona-check',
  'interpret',
  'other',
] as const;

function groupOf(stage: string): string {
  if (stage.startsWith('ft-')) return 'fine-tunes';
  if (stage.startsWith('eval-')) return 'batteries';
  return (STAGE_GROUPS as readonly string[]).includes(stage) ? stage : 'other';
}

function readRecord(file: string): StageRecord<Record<string, unknown>> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as StageRecord<Record<string, unknown>>;
  } catch (e) {
    throw new Error(`${file}: not a readable stage record (${(e as Error).message})`);
  }
}

/**
 * A stage's seconds: the time it recorded itself when it did (pre-training counts across resumes), else the span
 * from its start to its finish.
 */
function secondsOf(rec: StageRecord<Record<string, unknown>>): number | null {
  if (rec.status !== 'done') return null;
  const own = rec.result?.seconds;
  if (typeof own === 'number') return own;
  if (!rec.finishedAt) return null;
  const s = (Date.parse(rec.finishedAt) - Date.parse(rec.startedAt)) / 1000;
  return Number.isFinite(s) ? s : null;
}

/** The stage times of every seed folder in `runDir` (a `psm run` folder). */
export function readStageTimes(runDir: string): SeedStageTimes[] {
  if (!fs.existsSync(runDir)) throw new Error(`${runDir}: no such run folder`);
  const seeds: SeedStageTimes[] = [];
  for (const seed of fs.readdirSync(runDir).sort()) {
    const seedDir = path.join(runDir, seed);
    if (!fs.statSync(seedDir).isDirectory()) continue;
    const stages: StageTime[] = [];
    let interpretPhases: Record<string, number> = {};
    for (const stage of fs.readdirSync(seedDir).sort()) {
      const file = path.join(seedDir, stage, 'stage.json');
      if (!fs.existsSync(file)) continue;
      const rec = readRecord(file);
      stages.push({ stage, group: groupOf(stage), seconds: secondsOf(rec) });
      const phases = rec.result?.seconds;
      if (stage === 'interpret' && phases && typeof phases === 'object')
        interpretPhases = phases as Record<string, number>;
    }
    if (stages.length > 0) seeds.push({ seed, stages, interpretPhases });
  }
  if (seeds.length === 0)
    throw new Error(`${runDir}: no seed folders with stage records (is it a psm run folder?)`);
  return seeds;
}

export interface StageTimeRow {
  /** A group, or `interpret: PHASE` for the interpretation's phases. */
  label: string;
  stages: number;
  /** Mean seconds per seed over the seeds whose stages of this group all finished. */
  seconds: number;
  /** Share of the mean seed's total. */
  share: number;
}

/** Per-group mean seconds per finished seed, with the interpretation's phases under it. */
export function stageTimeTable(seeds: readonly SeedStageTimes[]): {
  rows: StageTimeRow[];
  seedSeconds: number;
} {
  const rows: StageTimeRow[] = [];
  const meanOver = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  for (const group of STAGE_GROUPS) {
    const perSeed: number[] = [];
    let stages = 0;
    for (const s of seeds) {
      const members = s.stages.filter((t) => t.group === group);
      if (members.length === 0 || members.some((t) => t.seconds === null)) continue;
      perSeed.push(members.reduce((a, t) => a + t.seconds!, 0));
      stages = Math.max(stages, members.length);
    }
    if (perSeed.length === 0) continue;
    rows.push({ label: group, stages, seconds: meanOver(perSeed), share: 0 });
    if (group === 'interpret') {
      const phases = [...new Set(seeds.flatMap((s) => Object.keys(s.interpretPhases)))];
      for (const p of phases) {
        const values = seeds.map((s) => s.interpretPhases[p]).filter((v) => typeof v === 'number');
        rows.push({ label: `interpret: ${p}`, stages: 1, seconds: meanOver(values), share: 0 });
      }
    }
  }
  const seedSeconds = rows
    .filter((r) => !r.label.startsWith('interpret: '))
    .reduce((a, r) => a + r.seconds, 0);
  for (const r of rows) r.share = seedSeconds > 0 ? r.seconds / seedSeconds : 0;
  return { rows, seedSeconds };
}
