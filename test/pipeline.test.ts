import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { registerInterpretCommand } from '../src/cli/interpret-command.ts';
import { registerScreenCommands } from '../src/cli/screen-commands.ts';
import { resolveConfig } from '../src/pipeline/config.ts';
import { loadExperimentWorld, runExperiment, screeningBayesChanges } from '../src/pipeline/experiment.ts';
import { evidenceWeights } from '../src/pipeline/measure.ts';
import {
  assistantUpdate,
  datasetEvidence,
  inferenceProbes,
  loadDefaultWorld,
  narrowSet,
  postTrainingSet,
} from '../src/world/index.ts';
import { silentProgress, type ProgressFactory } from '../src/pipeline/progress.ts';
import { runCli } from './cli-run.ts';

const root = path.resolve(__dirname, '..');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'psm-run-'));

/** Results without wall-clock fields and run-folder paths, for equality across runs. */
function stable(r: unknown): unknown {
  return JSON.parse(
    JSON.stringify(r, (k, v) => (k === 'createdAt' || k === 'seconds' || k === 'seedDir' ? undefined : v)),
  );
}

describe('persona check: how each earlier scene is weighed', () => {
  const items = inferenceProbes(loadDefaultWorld(), { seed: 3, ks: [0, 1, 2, 3], inferencePerCell: 40 });
  const domainShift: Record<string, number> = {
    honesty: -1,
    kindness: 0.5,
    coding: -0.3,
    power: 0,
    caution: 0.2,
    helpfulness: 0.8,
  };

  it('recovers the weights of a network that leans on the last scene, and its item noise', () => {
    const trueWeights = [0.2, 0.5, 1.5];
    // A deterministic 'noise' term, unrelated to the evidence, with a known spread.
    const noise = items.map((_, i) => 0.3 * Math.sin(i * 12.9898));
    const p = items.map((it, i) => {
      const w = trueWeights.slice(trueWeights.length - it.k);
      const z =
        domainShift[it.domain] +
        it.evidence.reduce((s, e, j) => s + w[j] * (e.behaviour === 'good' ? 1 : -1), 0);
      return 1 / (1 + Math.exp(-(z + noise[i])));
    });
    const ev = evidenceWeights(items, p, 3);
    expect(ev.map((e) => e.k)).toEqual([0, 1, 2, 3]);
    const k3 = ev.find((e) => e.k === 3)!;
    k3.network.forEach((w, j) => expect(w).toBeCloseTo(trueWeights[j], 1));
    const sdOf = (xs: number[]) => Math.sqrt(xs.reduce((s, x) => s + x * x, 0) / xs.length);
    for (const e of ev) {
      expect(e.n).toBe(240);
      // The fit absorbs a little of the noise (one parameter per domain and position): residual <= its spread.
      const kNoise = noise.filter((_, i) => items[i].k === e.k);
      expect(e.residualSd).toBeLessThanOrEqual(sdOf(kNoise) + 1e-9);
      expect(e.residualSd).toBeGreaterThan(0.8 * sdOf(kNoise));
    }
    // Bayes weighs exchangeable scenes alike: every position's weight is positive and their mean is large.
    for (const e of ev.filter((x) => x.k >= 1)) {
      for (const w of e.bayes) expect(w).toBeGreaterThan(0);
      expect(e.bayes.length).toBe(e.k);
    }
  });

  it('skips a k with too few items for the fit', () => {
    // Five items at k = 2 for 2 + (number of target domains) parameters.
    const firstK2 = items.findIndex((it) => it.k === 2);
    const few = items.filter((it, i) => it.k !== 2 || i < firstK2 + 5);
    const ev = evidenceWeights(
      few,
      few.map(() => 0.5),
      3,
    );
    expect(ev.map((e) => e.k)).toEqual([0, 1, 3]);
  });
});

describe("Bayes's prediction for the screening trial's parts", () => {
  it('reads each part from its counts per arm: cheat drags the persona, correct code does not', () => {
    const world = loadDefaultWorld();
    const postEvidence = datasetEvidence(postTrainingSet(world, { seed: 1, count: 60 }));
    const opts = { postEvidence, seed: 1, finetuneDomain: 'coding' };
    const [cheat, mixed, control, none] = screeningBayesChanges(
      world,
      [
        { name: 'flagged', sources: { cheat: 10, control: 0 } },
        { name: 'random', sources: { cheat: 5, control: 5 } },
        { name: 'unflagged', sources: { cheat: 0, control: 10 } },
        { name: 'unflagged', sources: {} },
      ],
      opts,
    );
    expect(cheat.part).toBe('flagged');
    expect(cheat.offTargetChange).toBeLessThan(mixed.offTargetChange);
    expect(mixed.offTargetChange).toBeLessThan(control.offTargetChange);
    expect(none.offTargetChange).toBe(0);
    // The same as updating on the examples themselves.
    const { before, after } = assistantUpdate(
      world,
      datasetEvidence(narrowSet(world, 'cheat', { seed: 1, count: 10, domain: 'coding' })),
      { base: postEvidence, temper: 0.02, kind: 'ai' },
    );
    const off = ['honesty', 'kindness', 'power', 'caution', 'helpfulness'];
    expect(cheat.offTargetChange).toBeCloseTo(
      off.reduce((a, d) => a + after.pGood[d] - before.pGood[d], 0) / off.length,
      12,
    );
    expect(() => screeningBayesChanges(world, [{ name: 'random', sources: { sabotage: 1 } }], opts)).toThrow(
      /unknown narrow arm 'sabotage'/,
    );
  });
});

describe('experiment config', () => {
  it('names the bad field, unknown presets and unknown keys', () => {
    expect(() => resolveConfig({ preset: 'nope' })).toThrow(/unknown preset "nope"/);
    expect(() => resolveConfig({ overrides: { pretrain: { lr: -1 } } })).toThrow(/pretrain.lr/);
    expect(resolveConfig().interpret.preventativeAblate).toEqual([
      'traits-whole',
      'shift',
      'traits',
      'random',
    ]);
    const dir = tmp();
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, YAML.stringify({ interpret: { preventativeAblate: ['shift', 'roles'] } }));
    expect(() => resolveConfig({ file })).toThrow(/interpret.preventativeAblate.1/);
    fs.writeFileSync(file, YAML.stringify({ finetune: { arms: ['cheat', 'sabotage'] } }));
    expect(() => resolveConfig({ file })).toThrow(/finetune.arms.1/);
    fs.writeFileSync(file, 'model: { dimm: 3 }');
    expect(() => resolveConfig({ file })).toThrow(/model/);
  });

  it('accepts every config shipped in configs/, each merged over the default', () => {
    const dir = path.join(root, 'configs');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files).toContain('pretrain-8m.yaml');
    for (const f of files) {
      const config = resolveConfig({ file: path.join(dir, f) });
      // Each names a world that loads (a built-in one by name), with its mix and transform.
      expect(loadExperimentWorld(config).domains.length).toBeGreaterThan(0);
    }
    expect(resolveConfig({ file: path.join(dir, 'pretrain-8m.yaml') }).corpus).toEqual({
      tokens: 8_000_000,
      valFraction: resolveConfig().corpus.valFraction,
    });
  });
});

describe('psm run --preset quick', () => {
  it('runs end to end, writes the report, reuses cached stages, and resumes after a kill to the same results', async () => {
    const config = resolveConfig({ preset: 'quick' });
    const dirA = tmp();
    const results = await runExperiment(config, { runDir: dirA, progress: silentProgress, log: () => {} });
    for (const f of [
      'report.html',
      'report.md',
      'report.json',
      'results.json',
      'config.yaml',
      'metrics.jsonl',
      'figures/arms.svg',
      'figures/persona-inference.png',
      'figures/persona-probe.svg',
    ]) {
      expect(fs.existsSync(path.join(dirA, f)), f).toBe(true);
    }
    const seed = results.seeds[0];
    expect(seed.personaCheck.byK.length).toBe(config.eval.maxK + 1);
    expect(seed.base.domains.map((d) => d.domain)).toEqual(results.world.domains);
    for (const d of seed.posttrained.domains) {
      expect(d.pGood.mean).toBeGreaterThanOrEqual(0);
      expect(d.pGood.mean).toBeLessThanOrEqual(1);
      expect(d.bayes).not.toBeNull();
    }
    expect(seed.arms.map((a) => `${a.arm}/${a.trainable}`)).toEqual(['cheat/embedding', 'control/embedding']);
    expect(fs.readFileSync(path.join(dirA, 'report.md'), 'utf8')).toMatch(/## \(A\) Persona inference/);

    // psm screen-trial on a finished seed takes the run's settings (its two arms, its recipe) and adds Bayes.
    const trialFile = path.join(tmp(), 'trial.json');
    await runCli(
      registerScreenCommands,
      'screen-trial',
      path.join(dirA, 'standard-seed1'),
      '--per-arm',
      '2',
      '--count',
      '1',
      '--out',
      trialFile,
    );
    const trial = JSON.parse(fs.readFileSync(trialFile, 'utf8'));
    expect(trial.sources.map((x: { source: string }) => x.source)).toEqual(['cheat', 'control']);
    expect(trial.bayes.map((b: { part: string }) => b.part)).toEqual(['flagged', 'random', 'unflagged']);

    // psm interpret on a seed folder of the run redoes the run's interpretation from its config (items, trials);
    // --no-trials skips only what fine-tunes again, which the quick preset does not run: the same analysis.
    const interpretAgain = async (...flags: string[]) => {
      const out = path.join(tmp(), 'interpret');
      await runCli(
        registerInterpretCommand,
        'interpret',
        path.join(dirA, 'standard-seed1'),
        ...flags,
        '--out',
        out,
      );
      return stable(JSON.parse(fs.readFileSync(path.join(out, 'interpret.json'), 'utf8')));
    };
    expect(await interpretAgain()).toEqual(stable(seed.interpret));
    expect(await interpretAgain('--no-trials')).toEqual(stable(seed.interpret));

    // A second run of the same folder is served from the stage cache.
    const logs: string[] = [];
    const again = await runExperiment(config, {
      runDir: dirA,
      progress: silentProgress,
      log: (l) => logs.push(l),
    });
    expect(logs.filter((l) => l.includes('cached')).length).toBeGreaterThanOrEqual(8);
    expect(stable(again)).toEqual(stable(results));

    // A config that differs only in its seeds is the same run with more or fewer seeds: accepted, served from cache.
    const configFile = path.join(dirA, 'config.json');
    const saved = JSON.parse(fs.readFileSync(configFile, 'utf8')) as { seeds: number[] };
    fs.writeFileSync(configFile, JSON.stringify({ ...saved, seeds: [...saved.seeds, 99] }));
    const fewer = await runExperiment(config, { runDir: dirA, progress: silentProgress, log: () => {} });
    expect(stable(fewer)).toEqual(stable(results));

    // Another config in the same folder is refused without --force.
    const other = resolveConfig({ preset: 'quick', overrides: { postTrain: { steps: 13 } } });
    await expect(
      runExperiment(other, { runDir: dirA, progress: silentProgress, log: () => {} }),
    ).rejects.toThrow(/another config/);

    // The run folder moved elsewhere resumes there: its stages stay cached, and a removed battery is redone from the
    // post-trained model where it now lies (its stage record holds the old path).
    const moved = path.join(tmp(), 'moved');
    fs.cpSync(dirA, moved, { recursive: true });
    fs.rmSync(dirA, { recursive: true });
    fs.rmSync(path.join(moved, 'standard-seed1', 'eval-posttrain'), { recursive: true });
    const movedLogs: string[] = [];
    const fromMoved = await runExperiment(config, {
      runDir: moved,
      progress: silentProgress,
      log: (l) => movedLogs.push(l),
    });
    expect(movedLogs.filter((l) => /^(corpus|pretrain|posttrain): cached/.test(l))).toHaveLength(3);
    expect(movedLogs.some((l) => l.startsWith('battery:post-trained: cached'))).toBe(false);
    expect(stable(fromMoved)).toEqual(stable(results));

    // Kill a CLI run mid-way, rerun the same command: it resumes and reaches the same numbers.
    const dirB = tmp();
    const args = [
      '--import',
      'tsx',
      path.join(root, 'src/cli/main.ts'),
      'run',
      '--preset',
      'quick',
      '--out',
      dirB,
    ];
    await new Promise<void>((resolve) => {
      const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
      let killed = false;
      child.stderr.on('data', (chunk: Buffer) => {
        if (!killed && /pretrain: [1-9]\d*\//.test(chunk.toString())) {
          killed = true;
          child.kill('SIGKILL');
        }
      });
      child.on('exit', () => resolve());
    });
    expect(fs.existsSync(path.join(dirB, 'results.json'))).toBe(false);
    const resumed = await runExperiment(config, { runDir: dirB, progress: silentProgress, log: () => {} });
    expect(stable(resumed)).toEqual(stable(results));
    // Three quick runs and an interpretation: ~80 s alone, twice that beside the rest of the suite on 2 cores.
  }, 300_000);

  it('counts the training time before an interruption in the resumed pre-training stage', async () => {
    const config = resolveConfig({
      preset: 'quick',
      overrides: {
        corpus: { tokens: 120_000 },
        pretrain: { checkpointEvery: 40 },
        finetune: { arms: ['control'], steps: 2 },
        postTrain: { steps: 2 },
        interpret: { enabled: false },
      },
    });
    const dir = tmp();
    // Stop pre-training at step 50, after the checkpoint at 40, as a kill would.
    const stopping: ProgressFactory = (label) => ({
      update(done) {
        if (label === 'pretrain' && done >= 50) throw new Error('stopped for the test');
      },
      stop() {},
    });
    await expect(runExperiment(config, { runDir: dir, progress: stopping, log: () => {} })).rejects.toThrow(
      /stopped for the test/,
    );
    const elapsedFile = path.join(dir, 'standard-seed1', 'pretrain', 'checkpoints', 'elapsed.json');
    const saved = JSON.parse(fs.readFileSync(elapsedFile, 'utf8')) as { step: number; seconds: number };
    expect(saved.step).toBe(40);
    const logs: string[] = [];
    const t0 = Date.now();
    const resumed = await runExperiment(config, {
      runDir: dir,
      progress: silentProgress,
      log: (l) => logs.push(l),
    });
    expect(logs.some((l) => /pretrain: resuming at step 40 of/.test(l))).toBe(true);
    // The stage's seconds = the saved seconds up to step 40 + this session's, which is less than the whole call.
    const secs = resumed.seeds[0].pretrain.seconds;
    expect(secs).toBeGreaterThan(saved.seconds);
    expect(secs - saved.seconds).toBeLessThanOrEqual((Date.now() - t0) / 1000);
  });

  it('runs any valid world file end to end (a 3-trait world with its own domains and fine-tune domain)', async () => {
    const config = resolveConfig({
      preset: 'quick',
      overrides: {
        world: path.join(root, 'worlds/tiny.yaml'),
        corpus: { tokens: 60_000 },
        finetune: { domain: 'generosity', steps: 4 },
        postTrain: { steps: 4 },
      },
    });
    const dir = tmp();
    const results = await runExperiment(config, { runDir: dir, progress: silentProgress, log: () => {} });
    expect(results.world.domains).toEqual(['bravery', 'generosity', 'patience']);
    expect(results.world.untrainedDomains).toEqual(['generosity', 'patience']);
    expect(results.seeds[0].arms.length).toBe(2);
    expect(fs.readFileSync(path.join(dir, 'report.md'), 'utf8')).toMatch(/narrow fine-tune in generosity/);
    const bad = resolveConfig({
      preset: 'quick',
      overrides: { world: path.join(root, 'worlds/tiny.yaml'), finetune: { domain: 'coding' } },
    });
    await expect(
      runExperiment(bad, { runDir: tmp(), progress: silentProgress, log: () => {} }),
    ).rejects.toThrow(/finetune.domain "coding"/);
  });
});
