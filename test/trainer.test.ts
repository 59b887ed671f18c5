import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { noGrad } from '../src/autograd/tensor.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { addVectorHook, HookSet } from '../src/model/hooks.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { scoreContinuations } from '../src/model/score.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { SupervisedSource, TokenWindowSource } from '../src/training/data.ts';
import { learningRate } from '../src/training/schedule.ts';
import { Trainer } from '../src/training/trainer.ts';
import { makeTrainer, TOTAL_STEPS } from './fixtures/train-run.ts';

configureBackend();

const config = parseLlamaConfig({
  vocabSize: 30,
  dim: 16,
  nLayers: 2,
  nHeads: 2,
  nKvHeads: 2,
  hiddenDim: 32,
  maxSeqLen: 24,
});
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'psm-train-'));

function weightsOf(model: LlamaModel): Map<string, Float32Array> {
  return new Map([...model.params].map(([k, t]) => [k, Float32Array.from(t.data)]));
}

describe('schedule', () => {
  it('warms up linearly then decays by cosine to the minimum', () => {
    const s = { peakLr: 1, minLr: 0.1, warmupSteps: 4, totalSteps: 14 };
    expect(learningRate(s, 0)).toBeCloseTo(0.25);
    expect(learningRate(s, 3)).toBeCloseTo(1);
    expect(learningRate(s, 9)).toBeCloseTo(0.55);
    expect(learningRate(s, 14)).toBeCloseTo(0.1);
  });
});

describe('trainer', () => {
  it('learns a repeating sequence (loss falls well below uniform)', () => {
    const model = new LlamaModel(config).initialize(1);
    const tokens = Int32Array.from({ length: 2000 }, (_, i) => [3, 1, 4, 1, 5, 9, 2, 6][i % 8]);
    const trainer = new Trainer(model, new TokenWindowSource(tokens, 8, 16, 1), {
      schedule: { peakLr: 1e-2, minLr: 1e-3, warmupSteps: 5, totalSteps: 60 },
      trainable: { kind: 'all' },
      seed: 1,
    });
    const losses: number[] = [];
    trainer.run((i) => losses.push(i.loss));
    expect(losses[0]).toBeGreaterThan(2.5);
    expect(losses[losses.length - 1]).toBeLessThan(0.6);
  });

  it('is reproducible: same seed, same weights bit for bit', () => {
    const a = makeTrainer(undefined);
    const b = makeTrainer(undefined);
    a.run();
    b.run();
    for (const [k, t] of a.model.params)
      expect(Buffer.from(t.data.buffer).equals(Buffer.from(b.model.param(k).data.buffer))).toBe(true);
  });

  it('a run killed at any moment resumes to bit-identical weights', async () => {
    const reference = makeTrainer(undefined);
    reference.run();
    const dir = tmp();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(__dirname, 'fixtures/train-run.ts'), dir],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (/step 5/.test(chunk.toString())) child.kill('SIGKILL');
      });
      child.on('exit', () => resolve());
    });
    const resumed = makeTrainer(dir);
    const from = resumed.resume();
    expect(from).toBeGreaterThanOrEqual(4);
    expect(from).toBeLessThan(TOTAL_STEPS);
    resumed.run();
    for (const [k, t] of reference.model.params) {
      expect(Buffer.from(resumed.model.param(k).data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(
        true,
      );
    }
  });

  it('data-parallel workers: same gradients as one thread (to float32 summation order), reproducible, resumable', () => {
    // Weighted loss (emphasis on some tokens) so the combination must weigh each share by its loss weight.
    const tokens = Int32Array.from({ length: 3000 }, (_, i) => (i * 7 + (i >> 3)) % 30);
    const mask = Uint8Array.from({ length: 3000 }, (_, i) => (i % 5 === 0 ? 1 : 0));
    const make = (workers: number, dir?: string) =>
      new Trainer(
        new LlamaModel(config).initialize(4),
        new TokenWindowSource(tokens, 6, 16, 2, { mask, weight: 4 }),
        {
          schedule: { peakLr: 3e-3, minLr: 3e-4, warmupSteps: 2, totalSteps: 6 },
          trainable: { kind: 'all' },
          seed: 2,
          workers,
          checkpointDir: dir,
          checkpointEvery: dir ? 1 : undefined,
        },
      );
    const single = make(1);
    const parallel = make(3);
    const s1 = single.trainStep();
    const p1 = parallel.trainStep();
    expect(p1.tokens).toBe(s1.tokens);
    expect(p1.loss).toBeCloseTo(s1.loss, 5);
    expect(p1.gradNorm).toBeCloseTo(s1.gradNorm, 4);
    single.run();
    parallel.run();
    let maxDiff = 0;
    for (const [k, t] of single.model.params) {
      const q = parallel.model.param(k).data;
      for (let i = 0; i < t.size; i++) maxDiff = Math.max(maxDiff, Math.abs(t.data[i] - q[i]));
    }
    expect(maxDiff).toBeLessThan(1e-4);
    // Bit-identical across data-parallel runs, and across a resume from a checkpoint.
    const again = make(3);
    again.run();
    const dir = tmp();
    const first = make(3, dir);
    first.trainStep();
    first.trainStep();
    first.close();
    const resumed = make(3, dir);
    expect(resumed.resume()).toBe(2);
    resumed.run();
    for (const [k, t] of parallel.model.params) {
      expect(Buffer.from(again.model.param(k).data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
      expect(Buffer.from(resumed.model.param(k).data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(
        true,
      );
    }
  });

  it('document windows start at a separator, deterministically, and resume from their state', () => {
    // A stream of documents of varying length, each preceded by the separator 0.
    const stream: number[] = [];
    for (let d = 0; d < 60; d++)
      stream.push(0, ...Array.from({ length: 5 + (d % 17) }, (_, i) => 1 + ((d + i) % 9)));
    const tokens = Int32Array.from(stream);
    const windows = new TokenWindowSource(tokens, 4, 16, 7, null, 0);
    const again = new TokenWindowSource(tokens, 4, 16, 7, null, 0);
    const seen = new Set<number>();
    for (let step = 0; step < 20; step++) {
      const b = windows.next();
      expect(b.inputs).toEqual(again.next().inputs);
      for (let r = 0; r < b.batch; r++) {
        expect(b.inputs[r * 16]).toBe(0);
        seen.add(b.inputs[r * 16 + 1]);
      }
    }
    // Different documents are drawn (their first tokens differ).
    expect(seen.size).toBeGreaterThan(3);
    const resumed = new TokenWindowSource(tokens, 4, 16, 1, null, 0);
    resumed.restore(windows.state());
    expect(resumed.next().inputs).toEqual(windows.next().inputs);
    // Random offsets (no separator) start elsewhere too.
    const random = new TokenWindowSource(tokens, 4, 16, 7);
    const firsts = Array.from({ length: 20 }, () => random.next().inputs[0]);
    expect(firsts.some((t) => t !== 0)).toBe(true);
    expect(() => new TokenWindowSource(tokens, 4, 16, 7, null, 99)).toThrow(/no separator token \(id 99\)/);
  });

  it('data-parallel workers refuse partial trainable sets and hooks', () => {
    const model = new LlamaModel(config).initialize(4);
    const source = new TokenWindowSource(new Int32Array(500), 4, 16, 5);
    const schedule = { peakLr: 1, minLr: 0, warmupSteps: 0, totalSteps: 3 };
    expect(
      () =>
        new Trainer(model, source, {
          schedule,
          trainable: { kind: 'embeddingRows', rows: [1] },
          seed: 1,
          workers: 2,
        }),
    ).toThrow(/need trainable 'all'/);
    expect(
      () => new Trainer(model, source, { schedule, trainable: { kind: 'all' }, seed: 1, workers: 0 }),
    ).toThrow(/workers must be a positive integer/);
  });

  it('refuses to resume a checkpoint written with other settings', () => {
    const dir = tmp();
    const a = makeTrainer(dir);
    a.trainStep();
    a.checkpoint();
    const model = new LlamaModel(a.model.config).initialize(11);
    const other = new Trainer(model, new TokenWindowSource(new Int32Array(500), 4, 16, 5), {
      schedule: { peakLr: 1, minLr: 0, warmupSteps: 0, totalSteps: 3 },
      trainable: { kind: 'all' },
      seed: 5,
      checkpointDir: dir,
    });
    expect(() => other.resume()).toThrow(/different settings/);
  });

  it('loss masks: only response tokens are learned from', () => {
    const model = new LlamaModel(config).initialize(2);
    // Prompt tokens are random noise; the response is always [7, 8].
    const examples = Array.from({ length: 40 }, (_, i) => ({
      prompt: [1 + (i % 5), 2 + ((i * 3) % 7), 10],
      response: [7, 8],
    }));
    const trainer = new Trainer(model, new SupervisedSource(examples, 8, 24, 1), {
      schedule: { peakLr: 1e-2, minLr: 1e-2, warmupSteps: 0, totalSteps: 40 },
      trainable: { kind: 'all' },
      seed: 1,
    });
    const infos: number[] = [];
    trainer.run((i) => infos.push(i.tokens));
    expect(infos[0]).toBe(8 * 2);
    const [r] = scoreContinuations(model, [{ prompt: [3, 4, 10], continuation: [7, 8] }]);
    expect(r.logprob).toBeGreaterThan(-0.5);
  });

  it('embedding-row training changes only the chosen rows', () => {
    const model = new LlamaModel(config).initialize(3);
    const before = weightsOf(model);
    const tokens = Int32Array.from({ length: 500 }, (_, i) => (i * 5) % 30);
    const trainer = new Trainer(model, new TokenWindowSource(tokens, 4, 16, 2), {
      schedule: { peakLr: 1e-2, minLr: 1e-2, warmupSteps: 0, totalSteps: 5 },
      trainable: { kind: 'embeddingRows', rows: [5] },
      seed: 2,
    });
    trainer.run();
    for (const [name, t] of model.params) {
      const old = before.get(name)!;
      if (name !== 'model.embed_tokens.weight') {
        expect(Array.from(t.data)).toEqual(Array.from(old));
        continue;
      }
      for (let r = 0; r < 30; r++) {
        const changed = t.data.subarray(r * 16, (r + 1) * 16).some((v, i) => v !== old[r * 16 + i]);
        expect(changed, `row ${r}`).toBe(r === 5);
      }
    }
    expect(
      () =>
        new Trainer(model, new TokenWindowSource(tokens, 4, 16, 2), {
          ...trainer.options,
          trainable: { kind: 'embeddingRows', rows: [99] },
        }),
    ).toThrow(/outside the vocabulary/);
  });

  it('LoRA trains only the adapters and merging reproduces the adapted model', () => {
    const model = new LlamaModel(config).initialize(4);
    const before = weightsOf(model);
    const tokens = Int32Array.from({ length: 500 }, (_, i) => (i * 3) % 30);
    const trainer = new Trainer(model, new TokenWindowSource(tokens, 4, 16, 3), {
      schedule: { peakLr: 1e-2, minLr: 1e-2, warmupSteps: 0, totalSteps: 5 },
      trainable: { kind: 'lora', rank: 1, targets: ['q_proj', 'v_proj', 'down_proj'] },
      seed: 3,
    });
    trainer.run();
    for (const [name, t] of model.params)
      expect(Array.from(t.data), name).toEqual(Array.from(before.get(name)!));
    const ids = Int32Array.from([1, 2, 3, 4]);
    const adapted = noGrad(() => model.forward(ids, 1).data);
    model.mergeLora();
    const merged = noGrad(() => model.forward(ids, 1).data);
    for (let i = 0; i < adapted.length; i++) expect(merged[i]).toBeCloseTo(adapted[i], 4);
    expect(
      model
        .param('model.layers.0.self_attn.q_proj.weight')
        .data.some((v, i) => v !== before.get('model.layers.0.self_attn.q_proj.weight')![i]),
    ).toBe(true);
  });

  it('training hooks: gradients flow through an edited activation (steering during training changes the result)', () => {
    const tokens = Int32Array.from({ length: 500 }, (_, i) => (i * 3) % 30);
    const run = (hooks?: HookSet) => {
      const model = new LlamaModel(config).initialize(5);
      new Trainer(model, new TokenWindowSource(tokens, 4, 16, 3), {
        schedule: { peakLr: 1e-2, minLr: 1e-2, warmupSteps: 0, totalSteps: 3 },
        trainable: { kind: 'all' },
        seed: 3,
        hooks,
      }).run();
      return model.param('model.layers.0.mlp.up_proj.weight').data;
    };
    const vec = new Float32Array(16).fill(0.5);
    const plain = run();
    const steered = run(new HookSet().add('blocks.0.hook_resid_mid', addVectorHook(vec, 2)));
    expect(plain.some((v, i) => Math.abs(v - steered[i]) > 1e-6)).toBe(true);
  });
});
