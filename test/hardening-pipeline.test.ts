// The pipeline under hostile conditions: bad configs refused before any work (and without a run folder), a second
// `psm run` on a folder in use, temp files left by kills, and a run killed in every stage that still reaches the
// numbers of an uninterrupted one.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { registerRunCommands } from '../src/cli/run-commands.ts';
import { LOCK_FILE } from '../src/io/folder-lock.ts';
import { resolveConfig } from '../src/pipeline/config.ts';
import { runExperiment } from '../src/pipeline/experiment.ts';
import { silentProgress, type ProgressFactory } from '../src/pipeline/progress.ts';
import { readStageRecord, runStage } from '../src/pipeline/stage.ts';
import { runCli } from './cli-run.ts';

const root = path.resolve(__dirname, '..');
const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-hardening-run-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const configFile = (text: string) => {
  const file = path.join(tmp(), 'config.yaml');
  fs.writeFileSync(file, text);
  return file;
};

/** Results and report without wall-clock fields and run-folder paths, for equality across runs. */
function stable(r: unknown): unknown {
  return JSON.parse(
    JSON.stringify(r, (k, v) => (k === 'createdAt' || k === 'seconds' || k === 'seedDir' ? undefined : v)),
  );
}

/** The paths at which two JSON values differ (at most 20), to say where a resumed run went another way. */
function differences(a: unknown, b: unknown, at = '$', out: string[] = []): string[] {
  if (out.length >= 20) return out;
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys)
      differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`, out);
  } else if (!Object.is(a, b)) out.push(`${at}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  return out;
}

/** Every path under dir whose name is a temp name of an atomic write. */
function tempFilesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => /\.tmp-\d+-/.test(p));
}

describe('configs refused before any work, naming the field', () => {
  it('duplicate seeds', () => {
    expect(() => resolveConfig({ preset: 'quick', file: configFile('seeds: [1, 1]\n') })).toThrow(
      /config\.yaml is invalid:\n {2}seeds: lists seed 1 twice/,
    );
    expect(() => resolveConfig({ overrides: { seeds: [3, 2, 3] } })).toThrow(/seeds: lists seed 3 twice/);
  });

  it('__proto__, constructor and prototype keys', () => {
    expect(() => resolveConfig({ file: configFile('__proto__: { seeds: [5] }\n') })).toThrow(
      /__proto__: "__proto__" is not a config field/,
    );
    expect(() => resolveConfig({ file: configFile('model:\n  constructor: { dim: 8 }\n') })).toThrow(
      /model\.constructor: "constructor" is not a config field/,
    );
    const overrides = JSON.parse('{"pretrain": {"prototype": {"lr": 1}}}');
    expect(() => resolveConfig({ overrides })).toThrow(
      /pretrain\.prototype: "prototype" is not a config field/,
    );
  });

  it('head counts, at config time: psm run refuses before the corpus and leaves no run folder', async () => {
    const bad = configFile('model: { dim: 48, nHeads: 4, nKvHeads: 3 }\n');
    expect(() => resolveConfig({ preset: 'quick', file: bad })).toThrow(
      /model\.nKvHeads: nHeads 4 is not a multiple of nKvHeads 3/,
    );
    expect(() => resolveConfig({ overrides: { model: { nHeads: 5 } } })).toThrow(
      /model\.dim: dim 128 is not divisible by nHeads 5/,
    );
    expect(() => resolveConfig({ overrides: { model: { dim: 48, nHeads: 16, nKvHeads: 16 } } })).toThrow(
      /model\.nHeads: head dimension must be even/,
    );
    const out = path.join(tmp(), 'run');
    await expect(
      runCli(registerRunCommands, 'run', '--preset', 'quick', '--config', bad, '--out', out),
    ).rejects.toThrow(/nKvHeads/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('a config that does not fit its world leaves no run folder (API and psm run)', async () => {
    const config = resolveConfig({
      preset: 'quick',
      overrides: { world: path.join(root, 'worlds/tiny.yaml'), finetune: { domain: 'coding' } },
    });
    const api = path.join(tmp(), 'api');
    await expect(
      runExperiment(config, { runDir: api, progress: silentProgress, log: () => {} }),
    ).rejects.toThrow(/finetune\.domain "coding"/);
    expect(fs.existsSync(api)).toBe(false);
    const file = configFile(`world: ${path.join(root, 'worlds/tiny.yaml')}\nfinetune: { domain: coding }\n`);
    const cli = path.join(tmp(), 'cli');
    await expect(
      runCli(registerRunCommands, 'run', '--preset', 'quick', '--config', file, '--out', cli),
    ).rejects.toThrow(/finetune\.domain "coding"/);
    expect(fs.existsSync(cli)).toBe(false);
  });

  it('says so when the tokenizer learns fewer tokens than tokenizer.vocabSize', async () => {
    const config = resolveConfig({
      preset: 'quick',
      overrides: {
        world: path.join(root, 'worlds/tiny.yaml'),
        corpus: { tokens: 20_000 },
        tokenizer: { vocabSize: 20_000, trainDocuments: 100 },
        finetune: { domain: 'generosity' },
      },
    });
    // Stop once pre-training starts: the corpus stage is all this needs.
    const stopAtPretrain: ProgressFactory = (label) => {
      if (label === 'pretrain') throw new Error('stopped for the test');
      return silentProgress(label, 0, '');
    };
    const logs: string[] = [];
    await expect(
      runExperiment(config, { runDir: tmp(), progress: stopAtPretrain, log: (l) => logs.push(l) }),
    ).rejects.toThrow(/stopped for the test/);
    expect(logs.join('\n')).toMatch(
      /warning: tokenizer\.vocabSize is 20000, but 100 documents of this world give only \d+ tokens; the model's vocabulary is \d+/,
    );
  });
});

describe('an interrupted stage resumes without what its killed writes left', () => {
  it('removes temp files of dead writers anywhere in the stage folder, and nothing else', async () => {
    const dir = path.join(tmp(), 'stage');
    await expect(
      runStage(dir, 'demo', { n: 1 }, () => {
        throw new Error('killed');
      }),
    ).rejects.toThrow('killed');
    expect(readStageRecord(dir)?.status).toBe('running');
    const gone = spawnSync(process.execPath, [
      '-e',
      'process.stdout.write(String(process.pid))',
    ]).stdout.toString();
    fs.mkdirSync(path.join(dir, 'model'));
    fs.mkdirSync(path.join(dir, 'checkpoints', `step-00000100.tmp-${gone}-0123456789ab`), {
      recursive: true,
    });
    for (const f of [
      `stage.json.tmp-${gone}-0123456789ab`,
      `model/model.safetensors.tmp-${gone}-abcdef012345`,
      'keep.txt',
    ])
      fs.writeFileSync(path.join(dir, f), 'x');
    const logs: string[] = [];
    const result = await runStage(dir, 'demo', { n: 1 }, ({ resuming }) => ({ resuming }), {
      log: (l) => logs.push(l),
    });
    expect(result).toEqual({ resuming: true });
    expect(tempFilesUnder(dir)).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'keep.txt'))).toBe(true);
    expect(logs.filter((l) => /demo: removed .* left by an interrupted write/.test(l)).length).toBe(3);
  });
});

/** Where a run is killed: when `ready` holds (checked on each stderr chunk and every 50 ms), in stage `stage`. */
interface KillPoint {
  stage: string;
  ready: (stderr: string, seedDir: string) => boolean;
}

const seedFile = (seedDir: string, f: string) => fs.existsSync(path.join(seedDir, f));
/** The stage has begun: its stage.json is written first thing (short stages are killed this way, not on output). */
const started = (stage: string) => (_: string, d: string) => seedFile(d, `${stage}/stage.json`);
const KILL_POINTS: KillPoint[] = [
  // The tokenizer is written, the corpus is being generated.
  { stage: 'corpus', ready: (_, d) => seedFile(d, 'corpus/tokenizer.json') },
  // Pre-training has saved its first checkpoint (step 100 of 290).
  { stage: 'pretrain', ready: (_, d) => seedFile(d, 'pretrain/checkpoints/latest.json') },
  { stage: 'persona-check', ready: started('persona-check') },
  { stage: 'posttrain', ready: started('posttrain') },
  { stage: 'ft-cheat-embedding', ready: started('ft-cheat-embedding') },
  { stage: 'eval-ft-control-embedding', ready: started('eval-ft-control-embedding') },
  // Persona vectors are done, monitoring, steering and the rest of the interpretation are not.
  { stage: 'interpret', ready: (s) => /^interpret: vectors /m.test(s) },
];

function psmRun(runDir: string): ChildProcess {
  const args = [
    '--import',
    'tsx',
    path.join(root, 'src/cli/main.ts'),
    'run',
    '--preset',
    'quick',
    '--out',
    runDir,
  ];
  return spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
}

/** Runs psm run until `point` is reached, then SIGKILLs it; returns its stderr. */
async function runAndKill(
  runDir: string,
  point: KillPoint,
  whileRunning?: (child: ChildProcess) => Promise<void>,
) {
  const seedDir = path.join(runDir, 'standard-seed1');
  const child = psmRun(runDir);
  let stderr = '';
  let killed = false;
  const check = () => {
    if (!killed && point.ready(stderr, seedDir)) {
      killed = true;
      child.kill('SIGKILL');
    }
  };
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    check();
  });
  const timer = setInterval(check, 50);
  const during = whileRunning?.(child);
  const end = await exited(child);
  clearInterval(timer);
  await during;
  return { ...end, stderr };
}

describe('psm run --preset quick killed in every stage', () => {
  it('resumes each time to the results of an uninterrupted run; a second psm run on the folder is refused', async () => {
    // The uninterrupted run, also as a child process: a run in this thread would block the test runner's own messages.
    const reference = path.join(tmp(), 'reference');
    const whole = psmRun(reference);
    whole.stderr!.resume();
    expect((await exited(whole)).code).toBe(0);

    const runDir = path.join(tmp(), 'run');
    for (const [i, point] of KILL_POINTS.entries()) {
      // While the first run holds the folder, a second psm run on it is refused, naming the holder.
      const secondRun = async (holder: ChildProcess) => {
        const holds = () => {
          try {
            return JSON.parse(fs.readFileSync(path.join(runDir, LOCK_FILE), 'utf8')).pid === holder.pid;
          } catch {
            return false; // not yet taken (the lock of the run killed before is there until then)
          }
        };
        while (!holds()) await new Promise((r) => setTimeout(r, 50));
        const second = psmRun(runDir);
        let err = '';
        second.stderr!.on('data', (c: Buffer) => (err += c.toString()));
        const end = await exited(second);
        expect(end.code).toBe(1);
        expect(err).toMatch(
          new RegExp(`${runDir} is in use by another psm run: pid ${holder.pid} on this host since \\d{4}-`),
        );
      };
      const end = await runAndKill(runDir, point, i === 1 ? secondRun : undefined);
      expect(end.signal, `${point.stage}: ${end.stderr}`).toBe('SIGKILL');
      // The kill came while the stage was running (not before it started, not after it finished).
      expect(readStageRecord(path.join(runDir, 'standard-seed1', point.stage))?.status, point.stage).toBe(
        'running',
      );
    }
    // The last run finds the lock of a killed process and takes it over.
    expect(fs.existsSync(path.join(runDir, LOCK_FILE))).toBe(true);
    const last = psmRun(runDir);
    last.stderr!.resume();
    expect((await exited(last)).code).toBe(0);

    for (const f of ['results.json', 'report.json']) {
      const read = (dir: string) => stable(JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
      expect(differences(read(runDir), read(reference)), f).toEqual([]);
    }
    expect(tempFilesUnder(runDir)).toEqual([]);
    expect(fs.existsSync(path.join(runDir, LOCK_FILE))).toBe(false);
  }, 300_000);
});
