/**
 * A sweep file: a base config (a preset and/or a config file, plus overrides) and a grid of config field paths to
 * value lists. Its expansion is the cartesian product of the lists, first field slowest: one validated experiment
 * config per grid point. Every error names the sweep file and the field or grid point at fault.
 *
 *     base: { preset: quick, config: ../configs/control-world.yaml, overrides: { interpret: { enabled: false } } }
 *     seeds: 3                        # or a list: [1, 2, 5]
 *     grid:
 *       finetune.lr.embedding: [0.002, 0.005]
 *       worldTransform: [null, independent-traits]   # null: the field absent (an optional one)
 *     metrics: [post.rise, cheat/embedding.vsControl]  # the report's metrics (psm compare's names)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import {
  ExperimentConfigSchema,
  formatIssues,
  resolveConfig,
  type ConfigOverrides,
  type ExperimentConfig,
} from '../pipeline/config.ts';

/** A sweep larger than this is almost certainly a mistake in the grid (and would take months on a laptop). */
export const MAX_GRID_POINTS = 1000;

const SweepFileSchema = z
  .object({
    /** The sweep's name (the default output folder is sweeps/<name>); default: the file's name. */
    name: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only')
      .optional(),
    base: z
      .object({
        preset: z.string().optional(),
        /** A config file (YAML), relative to the sweep file. */
        config: z.string().optional(),
        overrides: z.record(z.string(), z.unknown()).optional(),
      })
      .strict()
      .default({}),
    /** Seeds of every grid point: n (1..n) or a list; default: the base config's. */
    seeds: z
      .union([z.number().int().min(1).max(50), z.array(z.number().int().nonnegative()).min(1)])
      .optional(),
    grid: z.record(z.string(), z.array(z.unknown()).min(1, 'needs at least one value')).default({}),
    metrics: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict();

export interface SweepFile {
  /** The file as given (for messages) and the folder its relative paths start from. */
  source: string;
  name: string;
  preset?: string;
  configFile?: string;
  overrides: ConfigOverrides;
  seeds?: number[];
  grid: { path: string; values: unknown[] }[];
  metrics?: string[];
}

/** One grid point: its field values, a label made of them, and its validated config. */
export interface GridPoint {
  index: number;
  values: { path: string; value: unknown }[];
  label: string;
  config: ExperimentConfig;
}

/** Reads and checks a sweep file's shape (not yet its grid's fields: expandGrid does that). */
export function loadSweepFile(file: string): SweepFile {
  if (!fs.existsSync(file)) throw new Error(`sweep file ${file} not found`);
  let parsed: unknown;
  try {
    parsed = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid YAML (${(e as Error).message})`);
  }
  const r = SweepFileSchema.safeParse(parsed ?? {});
  if (!r.success) throw new Error(formatIssues(r.error, `sweep file ${file}`));
  const s = r.data;
  const dir = path.dirname(file);
  return {
    source: file,
    name: s.name ?? path.basename(file).replace(/\.ya?ml$/i, ''),
    preset: s.base.preset,
    configFile: s.base.config === undefined ? undefined : path.resolve(dir, s.base.config),
    overrides: (s.base.overrides ?? {}) as ConfigOverrides,
    seeds:
      s.seeds === undefined
        ? undefined
        : typeof s.seeds === 'number'
          ? Array.from({ length: s.seeds }, (_, i) => i + 1)
          : s.seeds,
    grid: Object.entries(s.grid).map(([p, values]) => ({ path: p, values })),
    metrics: s.metrics,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Field paths

/** The schema one level down, through optional wrappers; null where the field is a value, not a section. */
function sectionOf(schema: z.ZodType): z.ZodObject | null {
  let s: z.ZodType = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
  return s instanceof z.ZodObject ? s : null;
}

/** Checks that `fieldPath` names a config field (a section or a value); the error lists the valid names there. */
export function checkFieldPath(fieldPath: string): string[] {
  const parts = fieldPath.split('.');
  let schema: z.ZodType = ExperimentConfigSchema;
  parts.forEach((part, i) => {
    const at = parts.slice(0, i).join('.');
    const section = sectionOf(schema);
    if (!section)
      throw new Error(
        `"${fieldPath}": ${at} is a value, not a section of fields; give its whole value in the grid (grid: { ${at}: [...] })`,
      );
    if (!Object.hasOwn(section.shape, part))
      throw new Error(
        `"${fieldPath}" is not a config field; the fields of ${at || 'the config'} are: ${Object.keys(section.shape).join(', ')}`,
      );
    schema = section.shape[part] as z.ZodType;
  });
  return parts;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Sets (or, for null, removes) the field at `parts` in a plain JSON object, making sections on the way. */
function setField(target: Record<string, unknown>, parts: readonly string[], value: unknown): void {
  let at = target;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(at[part])) at[part] = {};
    at = at[part] as Record<string, unknown>;
  }
  const last = parts[parts.length - 1];
  if (value === null) delete at[last];
  else at[last] = structuredClone(value);
}

/** A grid value as a label shows it: strings bare, null as "none", lists and mappings as compact JSON. */
export function formatValue(v: unknown): string {
  if (v === null) return 'none';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Expansion

/** The base config: defaults <- preset <- config file <- overrides <- the sweep's seeds. */
export function baseConfig(sweep: SweepFile): ExperimentConfig {
  try {
    return resolveConfig({
      preset: sweep.preset,
      file: sweep.configFile,
      overrides: sweep.seeds ? { ...sweep.overrides, seeds: sweep.seeds } : sweep.overrides,
    });
  } catch (e) {
    throw new Error(`sweep file ${sweep.source}, base: ${(e as Error).message}`, { cause: e });
  }
}

/** Every grid point's config, in grid order (the first field varies slowest); each validated like a config file. */
export function expandGrid(sweep: SweepFile): GridPoint[] {
  const base = baseConfig(sweep);
  const fields = sweep.grid.map((g) => {
    try {
      return { ...g, parts: checkFieldPath(g.path) };
    } catch (e) {
      throw new Error(`sweep file ${sweep.source}, grid: ${(e as Error).message}`, { cause: e });
    }
  });
  const count = fields.reduce((n, f) => n * f.values.length, 1);
  if (count > MAX_GRID_POINTS)
    throw new Error(
      `sweep file ${sweep.source}: the grid has ${count} points (${fields.map((f) => f.values.length).join(' x ')}); at most ${MAX_GRID_POINTS}`,
    );
  const points: GridPoint[] = [];
  for (let index = 0; index < count; index++) {
    let rest = index;
    const values: GridPoint['values'] = [];
    for (let f = fields.length - 1; f >= 0; f--) {
      const n = fields[f].values.length;
      values.unshift({ path: fields[f].path, value: fields[f].values[rest % n] });
      rest = Math.floor(rest / n);
    }
    const label = values.map((v) => `${v.path}=${formatValue(v.value)}`).join(' ') || 'base';
    const raw = structuredClone(base) as unknown as Record<string, unknown>;
    values.forEach((v, f) => setField(raw, fields[f].parts, v.value));
    const where = `sweep file ${sweep.source}, grid point ${index + 1} (${label})`;
    const parsed = ExperimentConfigSchema.safeParse(raw);
    if (!parsed.success) throw new Error(formatIssues(parsed.error, where));
    let config: ExperimentConfig;
    try {
      // The same checks as a config file gets (model shape, learning rates, transform with mix), on the whole config.
      config = resolveConfig({ overrides: parsed.data as ConfigOverrides });
    } catch (e) {
      // resolveConfig names its source as the default preset, which the whole config is merged over.
      const message = (e as Error).message.replace(/^preset "default" is invalid:/, 'invalid:');
      throw new Error(`${where}: ${message}`, { cause: e });
    }
    points.push({ index, values, label, config });
  }
  return points;
}
