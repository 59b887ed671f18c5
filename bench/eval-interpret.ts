/**
 * Evaluation and interpretation benchmark (`npm run bench:eval`): times what `psm run` does after training on one
 * finished seed folder of a run (read only) — one eval-* stage (the Assistant's battery on the post-trained model),
 * the persona check (inference and package-deal probes on the pre-trained model) and the whole interpret stage (with
 * the run's trials, phase by phase) — and, with --baseline-ref, the same work on the source of another commit in the
 * same process, alternating old and new, and checks that both give the same numbers.
 *
 *   npm run bench:eval -- --seed-dir runs/default/standard-seed1 --baseline-ref <commit> [--rounds 2]
 *
 * Options: --stages eval,check,interpret (default all three), --rounds N (default 1; each round runs old then new,
 * the next new then old), --threads N (engine threads, default 1: less noise from a busy machine), --baseline-ref
 * REF (a git ref whose src/ is extracted with `git archive` into a temporary folder and loaded beside this tree's).
 * Prints each stage's seconds (and each interpret phase's), the old/new ratios, and how the two trees' numbers
 * differ: P(good) per item for the evaluations, every number of interpret.json for the interpretation (the largest
 * difference, the largest among P(good) values, and any non-numeric difference such as a different layer choice).
 * Ratios are of CPU seconds (this process, all threads), which a busy machine moves less than wall time. The last
 * line is `eval_ratio=X check_ratio=Y interpret_ratio=Z` (old/new CPU) when a baseline ran.
 */
import { execSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, intArg } from './generation-common.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const seedDir = arg('seed-dir');
if (!seedDir) throw new Error('give --seed-dir <run>/standard-seed<N>: a seed folder of a finished run');
const runDir = path.dirname(path.resolve(seedDir));
const seed = Number(/seed(\d+)$/.exec(seedDir)?.[1]);
if (!Number.isInteger(seed)) throw new Error(`--seed-dir ${seedDir} does not end in seed<N>`);
const STAGES = (arg('stages') ?? 'eval,check,interpret').split(',');
for (const s of STAGES)
  if (!['eval', 'check', 'interpret'].includes(s))
    throw new Error(`--stages: unknown stage "${s}" (eval, check, interpret)`);
const ROUNDS = intArg('rounds', 1);
const THREADS = intArg('threads', 1);
const baselineRef = arg('baseline-ref');

/** What the benchmark calls in a source tree: functions every version of the pipeline has had. */
interface Tree {
  label: string;
  configureBackend: typeof import('../src/tensor/backend.ts').configureBackend;
  loadModelFolder: typeof import('../src/model/weights.ts').loadModelFolder;
  loadTokenizerSync: typeof import('../src/tokenizer/index.ts').loadTokenizerSync;
  pGoodWithProgress: typeof import('../src/pipeline/measure.ts').pGoodWithProgress;
  interpretRun: typeof import('../src/interpret/run.ts').interpretRun;
  interpretStudies: typeof import('../src/pipeline/experiment.ts').interpretStudies;
}

async function loadTree(dir: string, label: string): Promise<Tree> {
  const src = (p: string) => import(path.join(dir, 'src', p));
  const [backend, weights, tokenizer, measure, run, experiment] = await Promise.all([
    src('tensor/backend.ts'),
    src('model/weights.ts'),
    src('tokenizer/index.ts'),
    src('pipeline/measure.ts'),
    src('interpret/run.ts'),
    src('pipeline/experiment.ts'),
  ]);
  return {
    label,
    configureBackend: backend.configureBackend,
    loadModelFolder: weights.loadModelFolder,
    loadTokenizerSync: tokenizer.loadTokenizerSync,
    pGoodWithProgress: measure.pGoodWithProgress,
    interpretRun: run.interpretRun,
    interpretStudies: experiment.interpretStudies,
  };
}

/** The baseline's source tree: `git archive` of the ref into a temporary folder, with this checkout's packages. */
function extractBaseline(ref: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-bench-baseline-'));
  // The folders the source reads that the ref has (older commits have no traits/).
  const tracked = new Set(
    execSync(`git ls-tree --name-only ${JSON.stringify(ref)}`, { cwd: root, encoding: 'utf8' }).split('\n'),
  );
  const paths = ['src', 'worlds', 'traits', 'data', 'package.json'].filter((p) => tracked.has(p));
  execSync(`git archive ${JSON.stringify(ref)} ${paths.join(' ')} | tar -x -C ${JSON.stringify(dir)}`, {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

const { resolveConfig } = await import('../src/pipeline/config.ts');
const { evalItemSets, loadExperimentWorld } = await import('../src/pipeline/experiment.ts');
const config = resolveConfig({ file: path.join(runDir, 'config.yaml') });
const world = loadExperimentWorld(config);
const items = evalItemSets(config, world);
const finetuneDomain = config.finetune.domain || world.datasets.narrow?.domain || '';
const quiet = () => ({ update: () => {}, stop: () => {} });

const trees: Tree[] = [await loadTree(root, 'new')];
let baselineDir: string | undefined;
if (baselineRef) {
  baselineDir = extractBaseline(baselineRef);
  trees.unshift(await loadTree(baselineDir, 'old'));
}

type Numbers = number[] | Record<string, unknown>;
/** Wall and CPU seconds (this process, every thread) of a stage, and of each interpret phase. */
interface Timed {
  seconds: number;
  cpu: number;
  phases: Record<string, { seconds: number; cpu: number }>;
  numbers: Numbers;
}

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function timeStage(tree: Tree, stage: string): Promise<Timed> {
  tree.configureBackend({ threads: THREADS });
  const t0 = performance.now();
  const c0 = cpuSeconds();
  const phases: Timed['phases'] = {};
  // interpretRun logs each phase as it ends ("interpret: <phase> <s> s"): the clocks are read there.
  let last = { t: t0, c: c0 };
  const log = (line: string) => {
    const m = /^interpret: (\w+) [\d.]+ s$/.exec(line);
    if (!m) return;
    const now = { t: performance.now(), c: cpuSeconds() };
    phases[m[1]] = { seconds: (now.t - last.t) / 1000, cpu: now.c - last.c };
    last = now;
  };
  const done = (numbers: Numbers): Timed => ({
    seconds: (performance.now() - t0) / 1000,
    cpu: cpuSeconds() - c0,
    numbers,
    phases,
  });
  if (stage === 'eval' || stage === 'check') {
    const dir = path.join(seedDir!, stage === 'eval' ? 'posttrain' : 'pretrain', 'model');
    const model = tree.loadModelFolder(dir);
    const tok = tree.loadTokenizerSync(path.join(dir, 'tokenizer.json'));
    const sets = stage === 'eval' ? [items.battery] : [items.inference, items.pkg];
    return done(sets.flatMap((set) => tree.pGoodWithProgress(model, tok, set, quiet, stage)));
  }
  const summary = await tree.interpretRun(seedDir!, {
    world,
    armDirs: config.finetune.arms.flatMap((arm) =>
      config.finetune.trainable.map((trainable) => ({
        arm,
        trainable,
        dir: path.join(seedDir!, `ft-${arm}-${trainable}`, 'model'),
      })),
    ),
    postDir: path.join(seedDir!, 'posttrain', 'model'),
    baseDir: path.join(seedDir!, 'pretrain', 'model'),
    outDir: null,
    log,
    ...tree.interpretStudies(config, world, seed, finetuneDomain),
  });
  const { seconds: _s, figures: _f, seedDir: _d, ...numbers } = summary as unknown as Record<string, unknown>;
  return done(numbers);
}

/** Every place where two results differ: |a - b| for numbers, Infinity for anything else (a flipped choice). */
function differences(a: unknown, b: unknown, at = '', out: { at: string; diff: number }[] = []) {
  if (typeof a === 'number' && typeof b === 'number') {
    if (a !== b && !(Number.isNaN(a) && Number.isNaN(b))) out.push({ at, diff: Math.abs(a - b) });
  } else if (a && b && typeof a === 'object' && typeof b === 'object') {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)]))
      differences(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        `${at}.${key}`,
        out,
      );
  } else if (a !== b) out.push({ at, diff: Infinity });
  return out;
}

/** The largest difference overall, among P(good) values, and the count of non-numeric ones. */
function describeDifferences(a: unknown, b: unknown): string {
  const all = differences(a, b).sort((x, y) => y.diff - x.diff);
  if (all.length === 0) return 'none (identical)';
  const show = (d: { at: string; diff: number } | undefined) =>
    d ? `${d.diff.toExponential(2)}${d.at ? ` at ${d.at}` : ''}` : 'none';
  const discrete = all.filter((d) => d.diff === Infinity);
  const numeric = all.filter((d) => d.diff !== Infinity);
  return (
    `largest ${show(numeric[0])}; largest P(good) ${show(numeric.find((d) => /pGood|^\.\d+$/.test(d.at)))}` +
    `; ${discrete.length} non-numeric${
      discrete.length
        ? ` (${discrete
            .slice(0, 3)
            .map((d) => d.at)
            .join(', ')})`
        : ''
    }`
  );
}

const fmt = (x: number) => x.toFixed(1).padStart(7);
console.log(
  `seed folder ${seedDir}; ${THREADS} engine thread(s); ${ROUNDS} round(s)` +
    (baselineRef ? `; baseline ${baselineRef} (${baselineDir})` : ''),
);
/** "new X s (cpu Y s)", and with a baseline the old figures and the old/new ratios. */
function compare(get: (label: string) => { seconds: number; cpu: number }): string {
  const n = get('new');
  const line = `new ${fmt(n.seconds)} s (cpu ${fmt(n.cpu)} s)`;
  if (!baselineRef) return line;
  const o = get('old');
  return `${line}, old ${fmt(o.seconds)} s (cpu ${fmt(o.cpu)} s), old/new cpu ${(o.cpu / n.cpu).toFixed(2)} (wall ${(o.seconds / n.seconds).toFixed(2)})`;
}
const ratios: string[] = [];
for (const stage of STAGES) {
  const runs = new Map<string, Timed[]>(trees.map((t) => [t.label, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? trees : [...trees].reverse();
    for (const tree of order) {
      const t = await timeStage(tree, stage);
      runs.get(tree.label)!.push(t);
      console.log(
        `${stage} ${tree.label} round ${r + 1}: ${t.seconds.toFixed(1)} s, cpu ${t.cpu.toFixed(1)} s`,
      );
    }
  }
  const mean = (label: string, pick: (t: Timed) => { seconds: number; cpu: number } | undefined) => {
    const ts = runs.get(label)!.map(pick);
    return {
      seconds: ts.reduce((s, t) => s + (t?.seconds ?? 0), 0) / ROUNDS,
      cpu: ts.reduce((s, t) => s + (t?.cpu ?? 0), 0) / ROUNDS,
    };
  };
  console.log(`${stage}: ${compare((l) => mean(l, (t) => t))}`);
  for (const phase of Object.keys(runs.get('new')![0].phases))
    console.log(`  ${phase.padEnd(13)} ${compare((l) => mean(l, (t) => t.phases[phase]))}`);
  if (baselineRef) {
    console.log(
      `  old vs new: ${describeDifferences(runs.get('old')![0].numbers, runs.get('new')![0].numbers)}`,
    );
    ratios.push(`${stage}_ratio=${(mean('old', (t) => t).cpu / mean('new', (t) => t).cpu).toFixed(2)}`);
  }
}
if (baselineDir) fs.rmSync(baselineDir, { recursive: true, force: true });
if (ratios.length > 0) console.log(ratios.join(' '));
