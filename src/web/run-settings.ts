/**
 * A run's settings as the commands that redo its work read them (psm interpret, psm prevent): its config.yaml, and
 * the world that config names. Cached per run while config.yaml is unchanged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveConfig, type ExperimentConfig } from '../pipeline/config.ts';
import { loadExperimentWorld } from '../pipeline/experiment.ts';
import type { World } from '../world/index.ts';

export interface RunSettings {
  config: ExperimentConfig;
  world: World;
}

const cache = new Map<string, { stamp: string; settings: RunSettings }>();

export function runSettings(runDir: string): RunSettings {
  const file = path.join(runDir, 'config.yaml');
  let stamp: string;
  try {
    const st = fs.statSync(file);
    stamp = `${st.size}:${st.mtimeMs}`;
  } catch {
    throw new Error(`${path.basename(runDir)}: config.yaml not found (is it a run folder?)`);
  }
  const hit = cache.get(runDir);
  if (hit && hit.stamp === stamp) return hit.settings;
  const config = resolveConfig({ file });
  const settings = { config, world: loadExperimentWorld(config) };
  cache.set(runDir, { stamp, settings });
  return settings;
}
