/**
 * The runs folder as the lab sees it: which runs there are, their key numbers (report.json's summary, as `psm runs`
 * prints them), their seeds and models, and safe paths into them. Everything is read from the records a run writes
 * anyway; nothing here writes into a run. Summaries are cached by file size and time, so the runs page stays fast
 * with many runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { summarize, type Summary } from '../pipeline/report.ts';
import type { RunResults } from '../pipeline/results.ts';
import type { ModelInfo, RunDetail, RunRow, RunStatus, SeedInfo } from './api-types.ts';
import { busy, LabError, notFound } from './errors.ts';
import { runActivity, stageStates, type ProgressConfig, type StageScan } from './progress.ts';

/** A run's seed folders are named `<variant>-seed<N>`. */
const SEED_DIR = /^([a-z][a-z0-9_-]*)-seed(\d+)$/;

/** Fine-tuned arms live in `ft-<arm>-<trainable>`. */
const ARM_STAGE = /^ft-([a-z0-9]+)-([a-z0-9]+)$/;

/** The key numbers of a finished run (report.json's summary) and the config's size of things. */
interface Headline {
  key: string;
  row: Omit<RunRow, 'status' | 'updatedAt' | 'stage' | 'progress'>;
}

/** Reads a JSON file; a missing file is null, a damaged one a clear error (runs write atomically, so it is damage). */
export function readJsonFile<T>(file: string): T | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw busy(`${path.basename(file)} cannot be read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw busy(
      `${path.basename(file)} is not valid JSON (being written, or damaged): ${(e as Error).message}`,
    );
  }
}

function fileKey(file: string): string | null {
  try {
    const st = fs.statSync(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return null;
  }
}

const finite = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

interface RunConfigView extends ProgressConfig {
  world?: string;
  model?: { dim?: number; nLayers?: number; contextLength?: number };
}

/** The run's report.json (summary and results), or null while it has none. */
export interface RunReport {
  summary: Summary;
  results: RunResults;
}

export class RunsFolder {
  private readonly headlines = new Map<string, Headline>();

  constructor(readonly dir: string) {}

  /** The runs folder's real path (null while it does not exist). */
  private root(): string | null {
    try {
      return fs.realpathSync(this.dir);
    } catch {
      return null;
    }
  }

  /** Run folder names, sorted: direct children holding a config.json or results. */
  names(): string[] {
    const root = this.root();
    if (!root) return [];
    return fs
      .readdirSync(root, { withFileTypes: true })
      .filter((d) => (d.isDirectory() || d.isSymbolicLink()) && !d.name.startsWith('.'))
      .map((d) => d.name)
      .filter((n) => ['config.json', 'results.json'].some((f) => fs.existsSync(path.join(root, n, f))))
      .sort();
  }

  /**
   * The folder of run `name`, refusing anything that is not a run directly inside the runs folder (a name with a
   * separator or dots, or a link that leads out of it).
   */
  runDir(name: string): string {
    if (!/^[^/\\\0]{1,255}$/.test(name) || name === '.' || name === '..' || name.startsWith('.'))
      throw new LabError(400, 'invalid_run', `"${name}" is not a run name`, 'run');
    const root = this.root();
    if (!root) throw notFound(`the runs folder ${this.dir} does not exist`);
    let real: string;
    try {
      real = fs.realpathSync(path.join(root, name));
    } catch {
      throw notFound(`no run "${name}" in ${this.dir}`);
    }
    if (path.dirname(real) !== root) throw notFound(`no run "${name}" in ${this.dir}`);
    if (!['config.json', 'results.json'].some((f) => fs.existsSync(path.join(real, f))))
      throw notFound(`"${name}" in ${this.dir} is not a run folder (no config.json)`);
    return real;
  }

  /**
   * A file inside a run folder, for download: the path must stay inside the run after resolving links. Returns the
   * absolute path of a regular file, or throws 404 / 400.
   */
  runFile(name: string, rel: string): string {
    const dir = this.runDir(name);
    if (rel.includes('\0') || path.isAbsolute(rel) || rel.split(/[/\\]/).some((s) => s === '..'))
      throw new LabError(400, 'invalid_path', `"${rel}" is not a path inside the run`, 'path');
    let real: string;
    try {
      real = fs.realpathSync(path.join(dir, rel));
    } catch {
      throw notFound(`no file "${rel}" in run "${name}"`);
    }
    if (!real.startsWith(dir + path.sep))
      throw new LabError(400, 'invalid_path', `"${rel}" leads outside the run`, 'path');
    if (!fs.statSync(real).isFile()) throw notFound(`"${rel}" in run "${name}" is not a file`);
    return real;
  }

  /** report.json of a run (null when not written yet); a multi-seed run shows its partial report meanwhile. */
  report(name: string): { report: RunReport; partial: boolean } | null {
    const dir = this.runDir(name);
    const full = readJsonFile<RunReport>(path.join(dir, 'report.json'));
    if (full) return { report: full, partial: false };
    const partial = readJsonFile<RunReport>(path.join(dir, 'partial', 'report.json'));
    return partial ? { report: partial, partial: true } : null;
  }

  /** The runs page's rows. */
  list(now = Date.now()): RunRow[] {
    const names = this.names();
    for (const cached of this.headlines.keys()) if (!names.includes(cached)) this.headlines.delete(cached);
    return names.map((name) => this.row(name, now));
  }

  row(name: string, now = Date.now()): RunRow {
    const dir = path.join(this.root() ?? this.dir, name);
    const blank: RunRow = {
      name,
      status: 'unreadable',
      createdAt: null,
      updatedAt: null,
      seeds: null,
      world: null,
      tokens: null,
      model: null,
      personaR: null,
      postRise: null,
      cheatVsControl: null,
      goalsMet: null,
      goalsTotal: null,
      stage: null,
      progress: null,
    };
    try {
      const head = this.headline(name, dir);
      const scan = stageStates(dir, head.config);
      const activity = runActivity(dir, scan);
      const status = runStatus(head.finished, scan, activity, now);
      const running = scan.seeds.flatMap((s) => s.stages.filter((st) => st.status === 'running'))[0];
      const { finished: _finished, config: _config, ...numbers } = head;
      return {
        ...blank,
        ...numbers,
        status,
        updatedAt: activity ? new Date(activity).toISOString() : null,
        stage: status === 'done' ? null : (running?.name ?? null),
        progress: status === 'done' ? 1 : scan.total > 0 ? scan.done / scan.total : null,
      };
    } catch (e) {
      return { ...blank, message: (e as Error).message };
    }
  }

  /** The cached key numbers of a run, recomputed when its report or config changes. */
  private headline(
    name: string,
    dir: string,
  ): Headline['row'] & { finished: boolean; config: RunConfigView } {
    const reportFile = path.join(dir, 'report.json');
    const resultsFile = path.join(dir, 'results.json');
    const configFile = path.join(dir, 'config.json');
    const key = `${fileKey(reportFile)}|${fileKey(resultsFile)}|${fileKey(configFile)}`;
    const config = readJsonFile<RunConfigView>(configFile) ?? {};
    const finished = fs.existsSync(reportFile) || fs.existsSync(resultsFile);
    const cached = this.headlines.get(name);
    if (cached && cached.key === key) return { ...cached.row, finished, config };
    let summary: Summary | null = null;
    let createdAt: string | null = null;
    const report = readJsonFile<RunReport>(reportFile);
    if (report) {
      summary = report.summary;
      createdAt = report.results?.createdAt ?? null;
    } else {
      const results = readJsonFile<RunResults>(resultsFile);
      if (results) {
        summary = summarize(results);
        createdAt = results.createdAt ?? null;
      }
    }
    if (!createdAt) createdAt = new Date(fs.statSync(configFile).mtimeMs).toISOString();
    const cheat = summary?.arms.find((a) => a.arm === 'cheat' && a.trainable === 'all' && a.vsControl);
    const row: Headline['row'] = {
      name,
      createdAt,
      seeds: summary?.seeds ?? config.seeds?.length ?? null,
      world: config.world ?? null,
      tokens: finite(config.corpus?.tokens),
      model:
        config.model?.dim !== undefined
          ? `dim ${config.model.dim}, ${config.model.nLayers} layer${config.model.nLayers === 1 ? '' : 's'}`
          : null,
      personaR: finite(summary?.personaInference.meanCorrelation.mean),
      postRise: finite(summary?.postTraining.rise.mean),
      cheatVsControl: finite(cheat?.vsControl?.mean),
      goalsMet: summary ? summary.goals.filter((g) => g.met === true).length : null,
      goalsTotal: summary ? summary.goals.length : null,
    };
    this.headlines.set(name, { key, row });
    return { ...row, finished, config };
  }

  /** Seeds and models of a run (for the report, chat, world and persona-space pages). */
  detail(name: string, now = Date.now()): RunDetail {
    const dir = this.runDir(name);
    const row = this.row(name, now);
    const config = readJsonFile<unknown>(path.join(dir, 'config.json'));
    return {
      name,
      status: row.status,
      world: row.world,
      config,
      seeds: this.seeds(name),
      hasReport: ['report.json', 'partial/report.json'].some((f) => fs.existsSync(path.join(dir, f))),
      staticReport: fs.existsSync(path.join(dir, 'report.html'))
        ? `/runs/${encodeURIComponent(name)}/files/report.html`
        : null,
    };
  }

  /** The seed folders of a run and the finished models in each. */
  seeds(name: string): SeedInfo[] {
    const dir = this.runDir(name);
    return fs
      .readdirSync(dir)
      .map((d) => ({ d, m: SEED_DIR.exec(d) }))
      .filter((x): x is { d: string; m: RegExpExecArray } => x.m !== null)
      .sort((a, b) => a.m[1].localeCompare(b.m[1]) || Number(a.m[2]) - Number(b.m[2]))
      .map(({ d, m }) => {
        const seedDir = path.join(dir, d);
        const interpreted = fs.existsSync(path.join(seedDir, 'interpret', 'interpret.json'));
        return {
          dir: d,
          variant: m[1],
          seed: Number(m[2]),
          interpreted,
          models: seedModels(name, seedDir, d, interpreted),
        };
      });
  }

  /** A seed folder of a run, by its name. */
  seedDir(name: string, seedDir: string): string {
    if (!SEED_DIR.test(seedDir))
      throw new LabError(
        400,
        'invalid_seed',
        `"${seedDir}" is not a seed folder name (e.g. standard-seed1)`,
        'seed',
      );
    const dir = path.join(this.runDir(name), seedDir);
    if (!fs.existsSync(dir)) throw notFound(`run "${name}" has no seed folder "${seedDir}"`);
    return dir;
  }
}

/** Finished models of a seed folder: base (pre-trained), post-trained, then each fine-tuned arm. */
function seedModels(run: string, seedDir: string, seedName: string, interpreted: boolean): ModelInfo[] {
  const has = (stage: string) =>
    fs.existsSync(path.join(seedDir, stage, 'model', 'model.safetensors')) &&
    readJsonFile<{ status?: string }>(path.join(seedDir, stage, 'stage.json'))?.status === 'done';
  const model = (stage: string, label: string, kind: ModelInfo['kind']): ModelInfo => ({
    id: `run:${run}/${seedName}/${stage}`,
    label,
    kind,
    meter: interpreted,
    steerable: true,
    seedDir: seedName,
  });
  const out: ModelInfo[] = [];
  if (has('pretrain')) out.push(model('pretrain', 'base (pre-trained)', 'base'));
  if (has('posttrain')) out.push(model('posttrain', 'post-trained', 'post-trained'));
  for (const d of fs.readdirSync(seedDir).sort()) {
    const m = ARM_STAGE.exec(d);
    if (m && has(d)) out.push(model(d, `${m[1]}/${m[2]}`, 'arm'));
  }
  return out;
}

/**
 * A run is done once its results are saved; otherwise running while its records keep moving (a stage can go this
 * long without writing: an interpretation phase of the default experiment), else stopped.
 */
export const STALE_AFTER_MS = 20 * 60_000;

export function runStatus(
  finished: boolean,
  scan: StageScan,
  activity: number | null,
  now: number,
): RunStatus {
  const anyRunning = scan.seeds.some((s) => s.stages.some((st) => st.status === 'running'));
  if (finished && !anyRunning) return 'done';
  if (activity !== null && now - activity < STALE_AFTER_MS) return 'running';
  return finished ? 'done' : 'stopped';
}
