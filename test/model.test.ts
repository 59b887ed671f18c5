import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { noGrad, type Tensor } from '../src/autograd/tensor.ts';
import { parseLlamaConfig, fromHfConfig, toHfConfig } from '../src/model/config.ts';
import { generate } from '../src/model/generate.ts';
import {
  ablateDirectionHook,
  addVectorHook,
  capProjectionHook,
  checkHookName,
  HookSet,
  hookNames,
  recordHook,
} from '../src/model/hooks.ts';
import { KvCache, LlamaModel } from '../src/model/llama.ts';
import { scoreContinuations } from '../src/model/score.ts';
import { loadModelFolder, saveModelFolder } from '../src/model/weights.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { logSoftmaxRow } from '../src/tensor/kernels.ts';

configureBackend();

const tiny = parseLlamaConfig({
  vocabSize: 50,
  dim: 16,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  hiddenDim: 32,
  maxSeqLen: 32,
});

function tinyModel(overrides = {}) {
  return new LlamaModel(parseLlamaConfig({ ...tiny, ...overrides })).initialize(3);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('config', () => {
  it('rejects inconsistent shapes with the field named', () => {
    expect(() => parseLlamaConfig({ ...tiny, nKvHeads: 3 })).toThrow(/nKvHeads/);
    expect(() => parseLlamaConfig({ ...tiny, dim: 18 })).toThrow(/dim/);
    expect(() => parseLlamaConfig({ ...tiny, bogus: 1 })).toThrow(/bogus|Unrecognized/);
  });

  it('round-trips through a Hugging Face config.json', () => {
    expect(fromHfConfig(toHfConfig(tiny))).toEqual(tiny);
    const qwen = parseLlamaConfig({ ...tiny, qkvBias: true, tieEmbeddings: false });
    expect(toHfConfig(qwen).model_type).toBe('qwen2');
    expect(fromHfConfig(toHfConfig(qwen))).toEqual(qwen);
    expect(() => fromHfConfig({ model_type: 'gpt2' }, 'x/config.json')).toThrow(/x\/config.json/);
  });
});

describe('forward and generation', () => {
  it('KV-cached incremental decoding reproduces the full forward pass', () => {
    const model = tinyModel();
    const ids = Int32Array.from([1, 5, 9, 2, 7, 3, 11, 4]);
    noGrad(() => {
      const full = model.forward(ids, 1).data;
      const cache = new KvCache(model.config, 1, 16);
      const first = model.forward(ids.subarray(0, 5), 1, { cache }).data;
      const rest = model.forward(ids.subarray(5), 1, { cache }).data;
      const v = model.config.vocabSize;
      expect(maxAbsDiff(first, full.subarray(0, 5 * v))).toBeLessThan(1e-5);
      expect(maxAbsDiff(rest, full.subarray(5 * v))).toBeLessThan(1e-5);
    });
  });

  it('greedy generation is the argmax chain and sampling is reproducible by seed', () => {
    const model = tinyModel();
    const greedy = generate(model, [1, 2, 3], { maxNewTokens: 6, temperature: 0 });
    const seq = [1, 2, 3];
    noGrad(() => {
      for (let i = 0; i < 6; i++) {
        const logits = model.forward(Int32Array.from(seq), 1).data;
        const last = logits.subarray((seq.length - 1) * 50);
        seq.push(last.indexOf(Math.max(...last)));
      }
    });
    expect(greedy).toEqual(seq.slice(3));
    const a = generate(model, [1, 2, 3], { maxNewTokens: 8, temperature: 1, topP: 0.9, seed: 42 });
    const b = generate(model, [1, 2, 3], { maxNewTokens: 8, temperature: 1, topP: 0.9, seed: 42 });
    expect(a).toEqual(b);
    expect(() => generate(model, [], { maxNewTokens: 2 })).toThrow(/empty/);
  });

  it('batched scoring equals per-sequence log-probabilities from the full forward', () => {
    const model = tinyModel();
    const requests = [
      { prompt: [1, 2, 3], continuation: [4, 5] },
      { prompt: [7], continuation: [8, 9, 10, 11] },
      { prompt: [3, 3, 3, 3, 3], continuation: [1] },
    ];
    const scored = scoreContinuations(model, requests, { tokensPerBatch: 64 });
    noGrad(() => {
      requests.forEach((r, i) => {
        const seq = [...r.prompt, ...r.continuation];
        const logits = model.forward(Int32Array.from(seq), 1).data;
        const logp = new Float32Array(50);
        let total = 0;
        r.continuation.forEach((tok, j) => {
          logSoftmaxRow(logits, (r.prompt.length - 1 + j) * 50, 50, logp);
          total += logp[tok];
        });
        expect(scored[i].logprob).toBeCloseTo(total, 4);
      });
    });
  });

  it('shared-prompt scoring (left-padded prompt cache, repeated per option) equals the plain path', () => {
    const model = tinyModel({ nLayers: 2 });
    const prompts = [
      [1, 2, 3, 4, 5, 6, 7],
      [9, 8],
      [4, 4, 4, 4],
    ];
    const options = [[10], [11, 12, 13], [14, 15], [3, 2, 1, 0]];
    const requests = prompts.flatMap((prompt) => options.map((continuation) => ({ prompt, continuation })));
    const shared = scoreContinuations(model, requests, { tokensPerBatch: 12 });
    const plain = scoreContinuations(model, requests, { hooks: new HookSet() });
    shared.forEach((r, i) => {
      expect(r.tokenLogprobs.length).toBe(requests[i].continuation.length);
      expect(r.logprob).toBeCloseTo(plain[i].logprob, 4);
    });
  });

  it('rejects sequences beyond the context and bad token ids', () => {
    const model = tinyModel();
    expect(() => model.forward(new Int32Array(40), 1)).toThrow(/maxSeqLen/);
    expect(() => model.forward(Int32Array.from([1, 99]), 1)).toThrow(/outside the vocabulary/);
  });
});

describe('hooks', () => {
  it('exposes the documented names and rejects unknown ones clearly', () => {
    expect(hookNames(2)).toContain('blocks.1.hook_resid_post');
    expect(hookNames(2)).toContain('embed');
    expect(() => checkHookName('blocks.5.hook_resid_post', 2)).toThrow(/layer 5 does not exist/);
    expect(() => checkHookName('blocks.0.hook_nope', 2)).toThrow(/unknown hook/);
    const model = tinyModel();
    expect(() =>
      model.forward(Int32Array.from([1, 2]), 1, { hooks: new HookSet().add('bogus', () => undefined) }),
    ).toThrow(/unknown hook "bogus"/);
  });

  it('records activations: resid_post of a block equals resid_mid plus mlp_out', () => {
    const model = tinyModel();
    const seen = new Map<string, Float32Array>();
    const hooks = new HookSet();
    for (const name of ['blocks.0.hook_resid_mid', 'blocks.0.hook_mlp_out', 'blocks.0.hook_resid_post']) {
      hooks.add(
        name,
        recordHook((d) => seen.set(name, d)),
      );
    }
    noGrad(() => model.forward(Int32Array.from([1, 2, 3]), 1, { hooks }));
    const sum = seen.get('blocks.0.hook_resid_mid')!.map((v, i) => v + seen.get('blocks.0.hook_mlp_out')![i]);
    expect(maxAbsDiff(sum, seen.get('blocks.0.hook_resid_post')!)).toBeLessThan(1e-6);
  });

  it("extends one hook set with another, each name running the first set's hooks first", () => {
    const order: string[] = [];
    const mark = (tag: string) => () => void order.push(tag);
    const a = new HookSet().add('blocks.0.hook_resid_post', mark('a0'));
    const b = new HookSet()
      .add('blocks.0.hook_resid_post', mark('b0'))
      .add('blocks.1.hook_resid_post', mark('b1'));
    a.extend(b);
    expect(a.names()).toEqual(['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']);
    noGrad(() => tinyModel().forward(Int32Array.from([1, 2]), 1, { hooks: a }));
    expect(order).toEqual(['a0', 'b0', 'b1']);
  });

  it('steering at selected positions changes only those positions and later ones', () => {
    const model = tinyModel();
    const ids = Int32Array.from([1, 2, 3, 4, 5]);
    const vec = new Float32Array(16).map((_, i) => (i % 3) - 1);
    const base = noGrad(() => model.forward(ids, 1).data);
    const hooks = new HookSet().add('blocks.0.hook_resid_post', addVectorHook(vec, 4, { positions: [3] }));
    const steered = noGrad(() => model.forward(ids, 1, { hooks }).data);
    expect(maxAbsDiff(base.subarray(0, 3 * 50), steered.subarray(0, 3 * 50))).toBe(0);
    expect(maxAbsDiff(base.subarray(3 * 50), steered.subarray(3 * 50))).toBeGreaterThan(1e-3);
  });

  it('a pass resumed after a block, from its recorded stream, equals the full pass; early hooks are refused', () => {
    const model = tinyModel({ nLayers: 3 });
    const ids = Int32Array.from([1, 2, 3, 4, 5]);
    const vec = new Float32Array(16).map((_, i) => (i % 3) - 1);
    const recorded: Tensor[] = [];
    const rec = new HookSet();
    for (let l = 0; l < 3; l++) rec.add(`blocks.${l}.hook_resid_post`, (x) => void (recorded[l] = x));
    noGrad(() => model.forward(ids, 1, { hooks: rec }));
    for (const layer of [0, 1, 2]) {
      const hooks = new HookSet().add(`blocks.${layer}.hook_resid_post`, addVectorHook(vec, 3));
      const full = noGrad(() => model.forward(ids, 1, { hooks }).data);
      const resumed = noGrad(
        () => model.forward(ids, 1, { hooks, resume: { afterLayer: layer, hidden: recorded[layer] } }).data,
      );
      expect(Array.from(resumed)).toEqual(Array.from(full));
    }
    const resume = { afterLayer: 1, hidden: recorded[1] };
    const early = new HookSet().add('blocks.1.hook_resid_mid', () => undefined);
    expect(() => model.forward(ids, 1, { hooks: early, resume })).toThrow(
      /acts before the point the pass resumes/,
    );
    expect(() => model.forward(ids, 1, { resume: { afterLayer: 3, hidden: recorded[1] } })).toThrow(
      /cannot resume after block 3/,
    );
    expect(() => model.forward(ids.subarray(1), 1, { resume })).toThrow(/expected \[1,4,16\]/);
  });

  it('ablation removes the direction from the recorded stream; capping bounds it', () => {
    const model = tinyModel();
    const dir = new Float32Array(16).map((_, i) => Math.sin(i + 1));
    const norm = Math.hypot(...dir);
    const u = dir.map((v) => v / norm);
    for (const [hook, check] of [
      [ablateDirectionHook(dir), (c: number) => expect(Math.abs(c)).toBeLessThan(1e-5)],
      [capProjectionHook(dir, { max: 0.05 }), (c: number) => expect(c).toBeLessThanOrEqual(0.05 + 1e-5)],
    ] as const) {
      let recorded: Float32Array | null = null;
      const hooks = new HookSet().add('blocks.1.hook_resid_pre', hook).add(
        'blocks.1.hook_resid_pre',
        recordHook((d) => (recorded = d)),
      );
      noGrad(() => model.forward(Int32Array.from([4, 5, 6]), 1, { hooks }));
      for (let r = 0; r < 3; r++) {
        let c = 0;
        for (let i = 0; i < 16; i++) c += recorded![r * 16 + i] * u[i];
        check(c);
      }
    }
  });

  it('steering applies during generation too', () => {
    const model = tinyModel();
    const vec = new Float32Array(16).fill(0);
    vec[0] = 50;
    const plain = generate(model, [1, 2], { maxNewTokens: 5, temperature: 0 });
    const hooks = new HookSet().add('blocks.1.hook_resid_post', addVectorHook(vec, 1));
    const steered = generate(model, [1, 2], { maxNewTokens: 5, temperature: 0, hooks });
    expect(steered).not.toEqual(plain);
  });

  it('rejects NaN steering strengths', () => {
    expect(() => addVectorHook(new Float32Array(16), NaN)).toThrow(/not finite/);
  });
});

describe('weights on disk', () => {
  it('saves and loads a Hugging Face model folder exactly, for Llama and Qwen2 shapes', () => {
    for (const overrides of [{}, { qkvBias: true, tieEmbeddings: false }]) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-w-'));
      const model = tinyModel(overrides);
      saveModelFolder(dir, model);
      const loaded = loadModelFolder(dir);
      expect(loaded.config).toEqual(model.config);
      for (const [name, t] of model.params)
        expect(Array.from(loaded.param(name).data)).toEqual(Array.from(t.data));
    }
  });

  it('names the file and tensor when a checkpoint does not match its config', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-w-'));
    saveModelFolder(dir, tinyModel());
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    cfg.intermediate_size = 48;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    expect(() => loadModelFolder(dir)).toThrow(/gate_proj.weight" has shape \[32,16\]/);
    fs.writeFileSync(path.join(dir, 'config.json'), '{ nope');
    expect(() => loadModelFolder(dir)).toThrow(/config.json: not valid JSON/);
  });
});
