/**
 * Training checkpoints. Each is a folder `step-NNNNNNNN/` holding a loadable Hugging Face model folder
 * (config.json, model.safetensors, tokenizer.json when given) plus adapters.safetensors (LoRA),
 * optimizer.safetensors (AdamW moments) and trainer_state.json (step, data cursor, schedule). A folder is
 * written under a temporary name and renamed when complete; `latest.json` then moves to it atomically, so a
 * kill at any moment leaves the previous checkpoint intact and current.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteJsonSync, removeOrphanTemps, tempPathFor } from '../io/atomic-write.ts';
import { readSafetensorsSync, writeSafetensorsSync, type TensorData } from '../io/safetensors.ts';
import type { LlamaModel } from '../model/llama.ts';
import { readWeightsInto, saveModelFolder } from '../model/weights.ts';
import type { AdamW } from './optimizer.ts';

export const LATEST_FILE = 'latest.json';
export const CHECKPOINT_FORMAT = 'psm-lab-checkpoint-v1';

export interface TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  step: number;
  optimizerStep: number;
  data: Record<string, unknown>;
  /** Free-form description of the run (trainable set, schedule, seed) to detect mismatched resumes. */
  fingerprint: string;
}

function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

export function saveCheckpoint(
  dir: string,
  model: LlamaModel,
  optimizer: AdamW,
  state: TrainerState,
  extraFiles: Record<string, string | Uint8Array> = {},
  keep = 1,
): string {
  fs.mkdirSync(dir, { recursive: true });
  const final = path.join(dir, stepDirName(state.step));
  const tmp = tempPathFor(final);
  fs.mkdirSync(tmp, { recursive: true });
  // The model folder is saved without adapters; LoRA matrices go to their own file.
  const adapters = new Map(model.adapters);
  model.adapters.clear();
  try {
    saveModelFolder(tmp, model, extraFiles, { step: String(state.step) });
  } finally {
    for (const [k, v] of adapters) model.adapters.set(k, v);
  }
  const adapterTensors = new Map<string, TensorData>();
  for (const a of adapters.values()) {
    adapterTensors.set(a.a.name, { data: a.a.data, shape: [...a.a.shape] });
    adapterTensors.set(a.b.name, { data: a.b.data, shape: [...a.b.shape] });
  }
  if (adapterTensors.size > 0) writeSafetensorsSync(path.join(tmp, 'adapters.safetensors'), adapterTensors);
  const moments = new Map<string, TensorData>();
  for (const p of optimizer.params) {
    moments.set(`m.${p.tensor.name}`, { data: optimizer.m.get(p.tensor.name)!, shape: [p.tensor.size] });
    moments.set(`v.${p.tensor.name}`, { data: optimizer.v.get(p.tensor.name)!, shape: [p.tensor.size] });
  }
  writeSafetensorsSync(path.join(tmp, 'optimizer.safetensors'), moments);
  atomicWriteJsonSync(path.join(tmp, 'trainer_state.json'), state);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  atomicWriteJsonSync(path.join(dir, LATEST_FILE), { step: state.step, dir: stepDirName(state.step) });
  pruneCheckpoints(dir, keep);
  return final;
}

function pruneCheckpoints(dir: string, keep: number): void {
  const entries = fs
    .readdirSync(dir)
    .filter((n) => /^step-\d{8}$/.test(n))
    .sort();
  for (const old of entries.slice(0, Math.max(0, entries.length - keep)))
    fs.rmSync(path.join(dir, old), { recursive: true, force: true });
  // Folders and files left by a save that was killed before its rename.
  removeOrphanTemps(dir);
}

/**
 * Before a resume: removes what saves killed mid-way left in dir (step folders and files under temp names) and
 * returns the latest complete checkpoint, or null when there is none.
 */
export function resumableCheckpoint(dir: string): string | null {
  removeOrphanTemps(dir);
  return latestCheckpoint(dir);
}

/** The folder of the latest complete checkpoint in dir, or null when there is none. */
export function latestCheckpoint(dir: string): string | null {
  const pointer = path.join(dir, LATEST_FILE);
  if (!fs.existsSync(pointer)) return null;
  let parsed: { dir?: unknown };
  try {
    parsed = JSON.parse(fs.readFileSync(pointer, 'utf8'));
  } catch (e) {
    throw new Error(`${pointer}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof parsed.dir !== 'string' || !/^step-\d{8}$/.test(parsed.dir))
    throw new Error(`${pointer}: has no valid "dir" entry`);
  const folder = path.join(dir, parsed.dir);
  if (!fs.existsSync(folder)) throw new Error(`${pointer} points to ${folder}, which does not exist`);
  return folder;
}

/** Restores weights, adapters and optimizer moments from a checkpoint folder; returns the trainer state. */
export function loadCheckpoint(
  folder: string,
  model: LlamaModel,
  optimizer: AdamW,
  fingerprint: string,
): TrainerState {
  const statePath = path.join(folder, 'trainer_state.json');
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(statePath, 'utf8')) as TrainerState;
  } catch (e) {
    throw new Error(`${statePath}: cannot be read (${(e as Error).message})`);
  }
  if (state.format !== CHECKPOINT_FORMAT)
    throw new Error(`${statePath}: format "${state.format}" is not ${CHECKPOINT_FORMAT}`);
  if (state.fingerprint !== fingerprint) {
    throw new Error(
      `${statePath}: checkpoint was written by a run with different settings; refusing to resume (use a new output folder or --force)`,
    );
  }
  readWeightsInto(model, path.join(folder, 'model.safetensors'));
  if (model.adapters.size > 0) {
    const file = path.join(folder, 'adapters.safetensors');
    const adapters = readSafetensorsSync(file).tensors;
    for (const a of model.adapters.values()) {
      for (const t of [a.a, a.b]) {
        const src = adapters.get(t.name);
        if (!src || src.data.length !== t.size)
          throw new Error(`${file}: adapter tensor "${t.name}" is missing or has the wrong size`);
        t.data.set(src.data);
      }
    }
  }
  const optFile = path.join(folder, 'optimizer.safetensors');
  const moments = readSafetensorsSync(optFile).tensors;
  for (const p of optimizer.params) {
    for (const kind of ['m', 'v'] as const) {
      const src = moments.get(`${kind}.${p.tensor.name}`);
      if (!src || src.data.length !== p.tensor.size)
        throw new Error(`${optFile}: moment "${kind}.${p.tensor.name}" is missing or has the wrong size`);
      (kind === 'm' ? optimizer.m : optimizer.v).get(p.tensor.name)!.set(src.data);
    }
  }
  optimizer.step = state.optimizerStep;
  return state;
}
