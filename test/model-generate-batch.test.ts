/**
 * Batched decoding (generateBatch, DecodeBatch, LlamaModel.forwardStep): several sequences of different prompt
 * lengths, budgets, stop points, sampling settings and interventions, decoded together, give each sequence the
 * tokens it gets alone. With the JS matmul the logits are the same to the bit; with ONNX Runtime, whose matmul
 * sums one row in another order than several, they agree to float32 rounding and the tokens agree except on a
 * near-tie.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { noGrad, Tensor } from '../src/autograd/tensor.ts';
import {
  DecodeBatch,
  generate,
  type DecodeBatchOptions,
  generateBatch,
  NonFiniteLogitsError,
  type BatchRequest,
  type DecodeJob,
} from '../src/model/generate.ts';
import { addVectorHook, HookSet, recordHook, type HookContext } from '../src/model/hooks.ts';
import { KvCache, type LlamaModel } from '../src/model/llama.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { Rng } from '../src/tensor/random.ts';
import { caseConfig, randomModel } from './architecture-fixtures.ts';

const VOCAB = 96;
const ARCHITECTURES = ['llama3', 'qwen25', 'qwen3', 'gemma3'] as const;

/** Decoding as generate() did before batching: the prompt, then one forwardHidden per token on its own cache. */
function cacheLoop(model: LlamaModel, prompt: number[], maxNewTokens: number, hooks?: HookSet): number[] {
  return noGrad(() => {
    const cache = new KvCache(model.config, 1, prompt.length + maxNewTokens);
    const dim = model.config.dim;
    let hidden = model.forwardHidden(Int32Array.from(prompt), 1, { cache, hooks });
    const out: number[] = [];
    for (let step = 0; step < maxNewTokens; step++) {
      const last = new Tensor(Float32Array.from(hidden.data.subarray(hidden.size - dim)), [1, dim]);
      const logits = model.logits(last).data;
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
      out.push(best);
      if (step < maxNewTokens - 1) hidden = model.forwardHidden(Int32Array.of(best), 1, { cache, hooks });
    }
    return out;
  });
}

/** Prompts of different lengths (the Gemma case's window is 5, so the longer ones slide), budgets and sampling. */
function requests(seed: number): BatchRequest[] {
  const rng = new Rng(seed);
  const lengths = [3, 9, 1, 14, 6, 20, 2];
  const budgets = [12, 5, 30, 8, 16, 25, 40];
  return lengths.map((len, i) => ({
    prompt: Array.from({ length: len }, () => rng.int(VOCAB)),
    maxNewTokens: budgets[i],
    temperature: i % 2 === 0 ? 0 : 0.9,
    topP: i % 3 === 0 ? 1 : 0.9,
    seed: 100 + i,
  }));
}

/** Adds, to some requests, a stop id taken from the middle of their reply alone, so they stop at different points. */
function withStops(model: LlamaModel, reqs: BatchRequest[]): BatchRequest[] {
  return reqs.map((r, i) => {
    if (i % 3 === 2) return r;
    const alone = generate(model, r.prompt, r);
    return { ...r, stopIds: [alone[Math.min(alone.length - 1, 2 + i)]] };
  });
}

interface Recorded {
  tokens: number[];
  logits: Float32Array[];
}

/** Greedy jobs that keep every step's logits, for comparing batched rows with the same sequences alone. */
function recordingJobs(reqs: BatchRequest[]): { jobs: DecodeJob[]; records: Recorded[] } {
  const records = reqs.map(() => ({ tokens: [] as number[], logits: [] as Float32Array[] }));
  const jobs = reqs.map((r, i): DecodeJob => ({
    prompt: r.prompt,
    capacity: r.prompt.length + r.maxNewTokens,
    hooks: r.hooks,
    next(logits) {
      const rec = records[i];
      rec.logits.push(Float32Array.from(logits));
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
      rec.tokens.push(best);
      return rec.tokens.length < r.maxNewTokens ? best : null;
    },
  }));
  return { jobs, records };
}

function runJobs(
  model: LlamaModel,
  jobs: DecodeJob[],
  maxBatch: number,
  options: DecodeBatchOptions = {},
): void {
  const batch = new DecodeBatch(model, options);
  let next = 0;
  while (next < jobs.length || batch.size > 0) {
    while (next < jobs.length && batch.size < maxBatch) batch.admit(jobs[next++]);
    batch.step();
  }
}

/** Each request's greedy run alone and in a batch of `maxBatch`, with every step's logits. */
function aloneAndBatched(
  model: LlamaModel,
  reqs: BatchRequest[],
  maxBatch: number,
  options: DecodeBatchOptions = {},
): [Recorded[], Recorded[]] {
  const alone = reqs.map((r) => {
    const { jobs, records } = recordingJobs([r]);
    runJobs(model, jobs, 1, options);
    return records[0];
  });
  const { jobs, records } = recordingJobs(reqs);
  runJobs(model, jobs, maxBatch, options);
  return [alone, records];
}

describe('generate', () => {
  beforeAll(() => configureBackend());

  it('decodes exactly as a forward per token on its own cache', () => {
    for (const arch of ARCHITECTURES) {
      const model = randomModel(caseConfig(arch, VOCAB), 3);
      const hooks = new HookSet().add(
        'blocks.0.hook_resid_post',
        addVectorHook(new Float32Array(model.config.dim).fill(0.5), 2),
      );
      for (const prompt of [[5], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]) {
        expect(generate(model, prompt, { maxNewTokens: 12, temperature: 0 })).toEqual(
          cacheLoop(model, prompt, 12),
        );
        expect(generate(model, prompt, { maxNewTokens: 12, temperature: 0, hooks })).toEqual(
          cacheLoop(model, prompt, 12, hooks),
        );
      }
    }
  });
});

describe('generateBatch with the JS matmul: the same to the bit as alone', () => {
  beforeAll(() => configureBackend({ backend: 'js' }));

  for (const arch of ARCHITECTURES) {
    it(`${arch}: greedy and seeded sampling, different prompt lengths, budgets and stop points`, () => {
      const model = randomModel(caseConfig(arch, VOCAB), 7);
      const reqs = withStops(model, requests(11));
      const alone = reqs.map((r) => generate(model, r.prompt, r));
      // Stops end some replies early, at different steps.
      const lengths = alone.map((a) => a.length);
      expect(lengths.some((n, i) => n < reqs[i].maxNewTokens)).toBe(true);
      expect(new Set(lengths).size).toBeGreaterThan(3);
      for (const maxBatch of [3, 8]) expect(generateBatch(model, reqs, { maxBatch })).toEqual(alone);

      const [one, many] = aloneAndBatched(model, requests(12), 4);
      many.forEach((m, i) => {
        expect(m.tokens).toEqual(one[i].tokens);
        m.logits.forEach((row, s) => expect(row).toEqual(one[i].logits[s]));
      });
    });
  }
});

describe('generateBatch with ONNX Runtime', () => {
  beforeAll(() => configureBackend());

  for (const arch of ARCHITECTURES) {
    it(`${arch}: logits agree to float32 rounding; tokens agree except on a near-tie`, () => {
      const model = randomModel(caseConfig(arch, VOCAB), 7);
      const [one, many] = aloneAndBatched(model, requests(13), 4);
      let compared = 0;
      many.forEach((m, i) => {
        for (let s = 0; s < m.tokens.length; s++) {
          const a = one[i].logits[s];
          const b = m.logits[s];
          let diff = 0;
          for (let j = 0; j < a.length; j++) diff = Math.max(diff, Math.abs(a[j] - b[j]));
          expect(diff).toBeLessThan(1e-3);
          compared++;
          const [x, y] = [one[i].tokens[s], m.tokens[s]];
          if (x !== y) {
            // A flip is allowed only between two tokens the model scores the same to rounding; the sequences
            // then go separate ways, so the comparison of this request stops.
            expect(Math.abs(a[x] - a[y])).toBeLessThan(1e-3);
            break;
          }
        }
      });
      expect(compared).toBeGreaterThan(100);
      // Seeded sampling and stops on this backend, through the public function.
      const reqs = withStops(model, requests(14));
      const alone = reqs.map((r) => generate(model, r.prompt, r));
      expect(generateBatch(model, reqs, { maxBatch: 4 })).toEqual(alone);
    });
  }

  for (const arch of ['llama3', 'gemma3'] as const) {
    it(`${arch}: batch-invariant decoding gives every job the same logits to the bit, alone or batched`, () => {
      const model = randomModel(caseConfig(arch, VOCAB), 7);
      const [one, many] = aloneAndBatched(model, requests(13), 4, { batchInvariant: true });
      many.forEach((m, i) => {
        expect(m.tokens).toEqual(one[i].tokens);
        m.logits.forEach((l, s) => expect(Array.from(l)).toEqual(Array.from(one[i].logits[s])));
      });
      // And with other batch sizes: a job's neighbours, and how many there are, change nothing.
      const [, three] = aloneAndBatched(model, requests(13), 3, { batchInvariant: true });
      three.forEach((m, i) =>
        expect(m.logits.map((l) => Array.from(l))).toEqual(many[i].logits.map((l) => Array.from(l))),
      );
    });
  }

  it("applies each request's interventions to its own sequence only", () => {
    const model = randomModel(caseConfig('qwen25', VOCAB), 5);
    const dim = model.config.dim;
    const direction = new Float32Array(dim).map((_, j) => Math.sin(j + 1));
    const seen: { positions: number[]; shape: number[] }[][] = [[], []];
    const recordInto = (k: number) => (data: Float32Array, ctx: HookContext) =>
      seen[k].push({
        positions: [...ctx.positions],
        shape: [ctx.batch, ctx.seqLen, data.length / (ctx.batch * ctx.seqLen)],
      });
    const steerGenerated = (alpha: number, promptLength: number) =>
      new HookSet().add(
        'blocks.1.hook_resid_pre',
        addVectorHook(direction, alpha, (_b, pos) => pos >= promptLength),
      );
    const base = requests(21)
      .slice(0, 5)
      .map((r) => ({ ...r, temperature: 0 }));
    const reqs: BatchRequest[] = base.map((r, i) =>
      i === 0
        ? { ...r, hooks: steerGenerated(4, r.prompt.length) }
        : i === 2
          ? { ...r, hooks: steerGenerated(-3, r.prompt.length).add('final_norm', recordHook(recordInto(1))) }
          : r,
    );
    const alone = reqs.map((r) => generate(model, r.prompt, r));
    const aloneSeen = seen[1].splice(0);
    const batched = generateBatch(model, reqs, { maxBatch: 5 });
    // The steering matters (so a leak would show), and every request gets exactly its own.
    const plain = base.map((r) => generate(model, r.prompt, r));
    expect(alone[0]).not.toEqual(plain[0]);
    expect(alone[2]).not.toEqual(plain[2]);
    expect(batched).toEqual(alone);
    // A hook sees its sequence's rows as alone: the prompt in one pass, then one row per step at its position.
    expect(seen[1]).toEqual(aloneSeen);
    expect(seen[1][0].shape).toEqual([1, base[2].prompt.length, dim]);
    expect(seen[1][1]).toEqual({ positions: [base[2].prompt.length], shape: [1, 1, dim] });
  });

  it('names a request whose output is not finite, and refuses bad options', () => {
    const model = randomModel(caseConfig('llama3', VOCAB), 5);
    const reqs = requests(31).slice(0, 3);
    // A hook that breaks its own sequence's activations (the others' rows stay finite).
    const broken = new HookSet().add(
      'final_norm',
      (x) => new Tensor(new Float32Array(x.size).fill(NaN), x.shape),
    );
    expect(() => generateBatch(model, [reqs[0], { ...reqs[1], hooks: broken }, reqs[2]])).toThrow(
      NonFiniteLogitsError,
    );
    expect(() => generateBatch(model, [reqs[0], { ...reqs[1], hooks: broken }])).toThrow(/request 1/);
    expect(() => generateBatch(model, reqs, { maxBatch: 0 })).toThrow(/maxBatch/);
    expect(() => generateBatch(model, [reqs[0], { ...reqs[1], prompt: [] }])).toThrow(
      /request 1: the prompt is empty/,
    );
    expect(() => generateBatch(model, [{ ...reqs[0], maxNewTokens: 1.5 }])).toThrow(/maxNewTokens/);
    const done: number[] = [];
    const out = generateBatch(model, reqs, {
      maxBatch: 2,
      onDone: (i, tokens) => done.push(i, tokens.length),
    });
    expect([...done].filter((_, k) => k % 2 === 0).sort()).toEqual([0, 1, 2]);
    expect(out.map((o) => o.length)).toEqual(reqs.map((r) => r.maxNewTokens));
  });
});
