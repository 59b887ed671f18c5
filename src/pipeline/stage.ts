/**
 * Stage caching. A stage's folder holds its outputs and `stage.json` = {version, inputsHash, status, result}.
 * A stage whose recorded hash matches its inputs is skipped and its result reused; a stage folder written
 * for other inputs is never overwritten unless `force` is set; an unfinished stage (killed mid-way) runs
 * again and may resume from its own checkpoints, once the temp files its killed writes left are removed.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteJsonSync, removeOrphanTemps } from '../io/atomic-write.ts';

/** Bumped when stage outputs change meaning; a run folder from another version is refused. */
export const PIPELINE_VERSION = 1;

export interface StageRecord<R> {
  version: number;
  stage: string;
  inputsHash: string;
  status: 'running' | 'done';
  startedAt: string;
  finishedAt?: string;
  result?: R;
}

/** Stable hash of JSON-able inputs (object keys sorted). */
export function hashInputs(value: unknown): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v as object)
          .sort()
          .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical(value)))
    .digest('hex')
    .slice(0, 16);
}

/** The hash a stage records of its inputs (with the pipeline's version). */
export function stageInputsHash(inputs: unknown): string {
  return hashInputs({ inputs, version: PIPELINE_VERSION });
}

export interface StageContext {
  dir: string;
  /** True when this stage found an unfinished attempt (its folder may hold checkpoints to resume from). */
  resuming: boolean;
}

export class StageMismatchError extends Error {}

export function readStageRecord<R>(dir: string): StageRecord<R> | null {
  const file = path.join(dir, 'stage.json');
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as StageRecord<R>;
  } catch (e) {
    throw new Error(
      `${file}: cannot be read (${(e as Error).message}); delete the stage folder or rerun with --force`,
    );
  }
}

export async function runStage<R>(
  dir: string,
  stage: string,
  inputs: unknown,
  fn: (ctx: StageContext) => Promise<R> | R,
  opts: { force?: boolean; log?: (line: string) => void } = {},
): Promise<R> {
  const inputsHash = stageInputsHash(inputs);
  const previous = readStageRecord<R>(dir);
  let resuming = false;
  if (previous) {
    if (previous.version !== PIPELINE_VERSION) {
      if (!opts.force)
        throw new StageMismatchError(
          `${dir}: written by pipeline version ${previous.version}, this is version ${PIPELINE_VERSION}; use --force to redo it`,
        );
    } else if (previous.inputsHash !== inputsHash) {
      if (!opts.force)
        throw new StageMismatchError(
          `${dir}: stage "${stage}" was run with other inputs; use --force to overwrite or choose another run folder`,
        );
    } else if (previous.status === 'done') {
      opts.log?.(`${stage}: cached (${dir})`);
      return previous.result as R;
    } else {
      resuming = true;
      // A kill mid-write leaves temp files (atomic-write names) anywhere in the stage's folder; nothing else writes
      // there, and the rerun rewrites whatever they were meant to become.
      for (const orphan of removeOrphanTemps(dir, { recursive: true }))
        opts.log?.(`${stage}: removed ${orphan}, left by an interrupted write`);
    }
    if (!resuming) fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.mkdirSync(dir, { recursive: true });
  const record: StageRecord<R> = {
    version: PIPELINE_VERSION,
    stage,
    inputsHash,
    status: 'running',
    startedAt: new Date().toISOString(),
  };
  atomicWriteJsonSync(path.join(dir, 'stage.json'), record);
  const result = await fn({ dir, resuming });
  atomicWriteJsonSync(path.join(dir, 'stage.json'), {
    ...record,
    status: 'done',
    finishedAt: new Date().toISOString(),
    result,
  });
  return result;
}
