/**
 * The interpretation on a tiny model trained in the test (a few seconds): activation recording and provenance, shared-prompt
 * scoring, persona vectors and their checks, steering / ablation / capping, monitoring, screening, persona space,
 * the probe, preventative steering in the Trainer, interpretRun on a fake run folder, and the CLI.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile, type TopLevelSpec } from 'vega-lite';
import { registerFinetuneCommand } from '../src/cli/finetune-command.ts';
import type { Command } from 'commander';
import { captureStdout, runCli } from './cli-run.ts';
import { registerInterpretCommand } from '../src/cli/interpret-command.ts';
import { registerMonitorCommand } from '../src/cli/monitor-command.ts';
import { registerPersonaCheckCommand } from '../src/cli/persona-check-command.ts';
import { registerPreventCommand } from '../src/cli/prevent-command.ts';
import { registerSpaceCommand } from '../src/cli/space-command.ts';
import { registerSteerCommand, runSteer } from '../src/cli/steer-command.ts';
import { registerVectorsCommand } from '../src/cli/vectors-command.ts';
import { registerScreenCommands } from '../src/cli/screen-commands.ts';
import {
  ablationDirections,
  centeredDirections,
  dot,
  activationsAt,
  addSteering,
  betterSteering,
  coherentSteeringEffect,
  orthonormalBasis,
  selectionItems,
  selectLayers,
  traceItems,
  archetypeProbe,
  DEFAULT_PROBE_L2,
  probeItems,
  bundleVector,
  checkLayer,
  coherentAlphas,
  coherentRange,
  DEFAULT_ALPHAS,
  monotonicWhereCoherent,
  combineVectors,
  conversation,
  cosine,
  documentLeads,
  doseResponse,
  hashModel,
  hashModelFolder,
  fineTune,
  INTERPRET_VERSION,
  interpretRun,
  layerHook,
  loadActivations,
  loadModelHandle,
  loadVectorBundle,
  meanActivations,
  monitorItems,
  monitorTraits,
  personaSpace,
  personaVectors,
  pGoodOf,
  placeAssistant,
  preventativeItems,
  preventativeSteeringHooks,
  preventativeStudy,
  modelHandle,
  randomDirections,
  scoreItems,
  shiftChats,
  shiftDirections,
  rankingAUC,
  saveActivations,
  saveVectorBundle,
  scaleVector,
  sceneItems,
  scoreChoicesShared,
  screenExamplesMulti,
  cheatControlAUC,
  screeningPool,
  screeningStudy,
  screeningTrial,
  tokenizeContexts,
  turnTraces,
  ablationEffect,
  cappingHooks,
  type ModelHandle,
  type PersonaVector,
  type TraitVectors,
  type VectorBundle,
} from '../src/interpret/index.ts';
import { choiceProbabilities } from '../src/measurement/choice.ts';
import { parseLlamaConfig } from '../src/model/config.ts';
import { scoreContinuations } from '../src/model/score.ts';
import { ablateDirectionHook, capProjectionHook, HookSet, recordHook } from '../src/model/hooks.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { saveModelFolder } from '../src/model/weights.ts';
import { noGrad } from '../src/autograd/tensor.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { tokenizerToJson, trainBpe, type BpeTokenizer } from '../src/tokenizer/index.ts';
import { SupervisedSource, TokenWindowSource } from '../src/training/data.ts';
import { Trainer } from '../src/training/trainer.ts';
import {
  END_OF_TEXT,
  generateDocuments,
  inferenceProbes,
  loadDefaultWorld,
  narrowSet,
  postTrainingSet,
  type ChatExample,
} from '../src/world/index.ts';

configureBackend();
const world = loadDefaultWorld();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-interpret-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let tokenizer: BpeTokenizer;
let base: LlamaModel;
let post: LlamaModel;
let handle: ModelHandle;
let bundle: VectorBundle;
const seedDir = path.join(tmp, 'standard-seed1');

function clone(m: LlamaModel): LlamaModel {
  const c = new LlamaModel(m.config);
  for (const [k, t] of m.params) c.param(k).data.set(t.data);
  return c;
}

function supervised(examples: readonly ChatExample[]) {
  return examples.map((e) => ({
    prompt: tokenizer.encode(END_OF_TEXT + e.prompt),
    response: tokenizer.encode(e.response),
  }));
}

function finetune(
  m: LlamaModel,
  examples: readonly ChatExample[],
  steps: number,
  lr: number,
  hooks?: HookSet,
): LlamaModel {
  new Trainer(m, new SupervisedSource(supervised(examples), 8, m.config.maxSeqLen, 1), {
    schedule: { peakLr: lr, minLr: lr / 10, warmupSteps: 1, totalSteps: steps },
    trainable: { kind: 'all' },
    seed: 1,
    hooks,
  }).run();
  return m;
}

const save = (dir: string, m: LlamaModel) =>
  saveModelFolder(dir, m, { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) });

beforeAll(() => {
  const docs = [...generateDocuments(world, { seed: 3, documents: 1200 })];
  tokenizer = trainBpe(
    docs.slice(0, 300).map((d) => d.text),
    { vocabSize: 400, specialTokens: [END_OF_TEXT] },
  );
  const ids: number[] = [];
  for (const d of docs) ids.push(...tokenizer.encode(END_OF_TEXT + d.text));
  base = new LlamaModel(
    parseLlamaConfig({
      vocabSize: 400,
      dim: 32,
      nLayers: 2,
      nHeads: 2,
      nKvHeads: 2,
      hiddenDim: 64,
      maxSeqLen: 512,
    }),
  ).initialize(1);
  new Trainer(base, new TokenWindowSource(Int32Array.from(ids), 8, 64, 1), {
    schedule: { peakLr: 5e-3, minLr: 5e-4, warmupSteps: 10, totalSteps: 120 },
    trainable: { kind: 'all' },
    seed: 1,
  }).run();
  post = finetune(clone(base), postTrainingSet(world, { count: 64 }), 12, 1e-3);
  save(path.join(seedDir, 'pretrain', 'model'), base);
  save(path.join(seedDir, 'posttrain', 'model'), post);
  for (const arm of ['cheat', 'control'] as const) {
    save(
      path.join(seedDir, `ft-${arm}-all`, 'model'),
      finetune(clone(post), narrowSet(world, arm, { count: 32 }), 6, 2e-3),
    );
  }
  handle = loadModelHandle(path.join(seedDir, 'posttrain', 'model'));
  bundle = personaVectors(handle, world, { itemsPerTrait: 6, selectItems: 4 });
});

describe('activation recording', () => {
  it('hashes model.safetensors bytes; an in-memory model hashes to the same value once saved', () => {
    expect(handle.hash).toBe(hashModelFolder(path.join(seedDir, 'posttrain', 'model')));
    expect(hashModel(post)).toBe(handle.hash);
    expect(hashModel(base)).not.toBe(handle.hash);
  });

  it('mean activations over spans match a one-sequence-at-a-time forward, across batches with padding', () => {
    const texts = [
      {
        prompt: 'The Assistant is an AI system talking with a user.\nUser: Can you help me?\nAssistant:',
        response: ' Gladly. Let me walk you through it in detail.',
      },
      { prompt: 'Nobo lived in a small town by the river.', response: ' Nobo answered honestly.' },
      {
        prompt: 'This is a story about Kale.\nKale broke a cup.',
        response: ' Kale lied and blamed someone else.',
      },
    ];
    const ctx = tokenizeContexts(tokenizer, texts);
    const hooks = [layerHook(0), layerHook(1), 'embed'];
    const dim = post.config.dim;
    for (const span of ['prompt', 'response', 'last-prompt', 'all'] as const) {
      const set = meanActivations(post, ctx, hooks, span, { tokensPerBatch: 64 });
      ctx.forEach((c, i) => {
        const seq = [...c.prompt, ...c.response];
        const got = new Map<string, Float32Array>();
        const hs = new HookSet();
        for (const h of hooks)
          hs.add(
            h,
            recordHook((d) => got.set(h, d)),
          );
        noGrad(() => post.forwardHidden(Int32Array.from(seq), 1, { hooks: hs }));
        const [s, e] =
          span === 'prompt'
            ? [0, c.prompt.length]
            : span === 'response'
              ? [c.prompt.length, seq.length]
              : span === 'last-prompt'
                ? [c.prompt.length - 1, c.prompt.length]
                : [0, seq.length];
        for (const h of hooks) {
          for (let j = 0; j < dim; j += 7) {
            let m = 0;
            for (let t = s; t < e; t++) m += got.get(h)![t * dim + j] / (e - s);
            expect(set.data.get(h)![i * dim + j]).toBeCloseTo(m, 4);
          }
        }
      });
    }
    expect(() =>
      meanActivations(post, tokenizeContexts(tokenizer, [{ prompt: 'x' }]), hooks, 'response'),
    ).toThrow(/needs a response/);
    expect(() => meanActivations(post, ctx, ['blocks.5.hook_resid_post'], 'all')).toThrow(
      /layer 5 does not exist/,
    );
  });

  it('stores activations as safetensors + JSON with provenance (model hash, hook, span, method, date)', () => {
    const ctx = tokenizeContexts(tokenizer, [
      { prompt: 'User: hi\nAssistant:' },
      { prompt: 'Kale broke a cup.' },
    ]);
    const set = meanActivations(post, ctx, [layerHook(1)], 'last-prompt');
    const file = path.join(tmp, 'acts', 'a.safetensors');
    saveActivations(file, set, { modelHash: handle.hash, model: handle.source, method: 'mean' });
    const side = JSON.parse(fs.readFileSync(path.join(tmp, 'acts', 'a.json'), 'utf8'));
    expect(side).toMatchObject({
      modelHash: handle.hash,
      hook: 'blocks.1.hook_resid_post',
      span: 'last-prompt',
      method: 'mean',
      n: 2,
      dim: 32,
    });
    expect(Date.parse(side.date)).not.toBeNaN();
    const back = loadActivations(file);
    expect(Array.from(back.set.data.get(layerHook(1))!)).toEqual(Array.from(set.data.get(layerHook(1))!));
    expect(back.provenance.modelHash).toBe(handle.hash);
  });

  it('shared-prompt scoring equals the batched scorer, with and without hooks, and records the last prompt token', () => {
    const items = sceneItems(world, 'kindness', { n: 5, seed: 4, pool: 'heldout' }).map((it) => ({
      prompt: END_OF_TEXT + it.prompt,
      good: it.good,
      bad: it.bad,
    }));
    const v = bundleVector(bundle, 'kindness', 1);
    for (const hooks of [undefined, addSteering(new HookSet(), handle, v, 6)]) {
      const a = choiceProbabilities(post, tokenizer, items, { hooks });
      const b = scoreChoicesShared(post, tokenizer, items, { hooks, record: [layerHook(1)] });
      a.forEach((p, i) => expect(b.pGood[i]).toBeCloseTo(p, 4));
      // logMass: log of the summed probability of every wording, from independent per-sequence scoring.
      items.forEach((it, i) => {
        const prompt = tokenizer.encode(it.prompt);
        const lps = scoreContinuations(
          post,
          [...it.good, ...it.bad].map((w) => ({ prompt, continuation: tokenizer.encode(w) })),
          { hooks },
        ).map((r) => r.logprob);
        const max = Math.max(...lps);
        expect(b.logMass[i]).toBeCloseTo(
          max + Math.log(lps.reduce((acc, x) => acc + Math.exp(x - max), 0)),
          3,
        );
        expect(b.logMass[i]).toBeLessThan(0);
      });
      if (!hooks) {
        const seqs = items.map((it) => tokenizer.encode(it.prompt));
        const direct = activationsAt(
          post,
          seqs,
          seqs.map(() => [-1]),
          [layerHook(1)],
        ).get(layerHook(1))!;
        Array.from(direct).forEach((x, i) => expect(b.lastToken.get(layerHook(1))![i]).toBeCloseTo(x, 4));
      }
    }
  });

  it('finds where scene leads end in documents', () => {
    const docs = [...generateDocuments(world, { seed: 99, documents: 30 })];
    const leads = documentLeads(world, docs, tokenizer, 512);
    let found = 0;
    let scenes = 0;
    for (const d of leads) {
      scenes += d.doc.scenes.length;
      found += d.leads.length;
      for (const l of d.leads) {
        const prefix = tokenizer.decode(d.ids.slice(1, l.token + 1));
        expect(d.doc.text.startsWith(prefix)).toBe(true);
        expect(d.doc.text[prefix.length]).toBe(' ');
        expect(l.evidence).toHaveLength(l.scene);
        if (l.format === 'chat') expect(prefix.endsWith('Assistant:')).toBe(true);
      }
    }
    expect(found / scenes).toBeGreaterThan(0.9);
  });
});

describe('persona vectors', () => {
  it("chooses layers on the Assistant's chats: monotone steering first, then the larger coherent effect", () => {
    expect(
      selectionItems(world, 'power', 6, 3).every((it) => it.subject === 'assistant' && it.format === 'chat'),
    ).toBe(true);
    const curve = {
      alphas: [-4, -2, 0, 2, 4],
      pGood: [0.2, 0.9, 0.8, 0.6, 0.5],
      logMass: [-9, -1, -1, -1.2, -1.3],
    };
    // -4 breaks the model (log mass 8 nats down): the effect runs from -2 to 4.
    const dr = { ...curve, coherent: coherentAlphas(curve.alphas, curve.logMass) } as Parameters<
      typeof coherentSteeringEffect
    >[0];
    expect(coherentSteeringEffect(dr)).toBeCloseTo(0.4, 9);
    const tv = (effect: number, monotone: boolean): TraitVectors => ({
      ...bundle.traits[0],
      bestLayer: 0,
      steeringEffect: [effect],
      steeringMonotone: [monotone],
    });
    const small = tv(0.1, true);
    const big = tv(0.5, false);
    expect(betterSteering(big, small)).toBe(small);
    expect(betterSteering(tv(0.1, false), big)).toBe(big);
    expect(betterSteering(small, tv(0.1, true))).toBe(small);
    for (const t of bundle.traits) {
      expect(t.steeringMonotone).toHaveLength(2);
      if (t.steeringMonotone.some(Boolean)) expect(t.steeringMonotone[t.bestLayer]).toBe(true);
    }
    // Shared selection traces (as the two extraction methods share them) choose exactly as fresh ones do.
    const fresh = (b: typeof bundle) =>
      b.traits.map((t) => ({ ...t, steeringEffect: [], steeringMonotone: [], bestLayer: -1 }));
    const traces = new Map();
    const shared = [1, 2].map(() =>
      selectLayers(handle, world, fresh(bundle), { items: 4, seed: 2, traces, alpha: 4 }),
    );
    expect(traces.size).toBe(bundle.traits.length);
    const plain = selectLayers(handle, world, fresh(bundle), { items: 4, seed: 2, alpha: 4 });
    for (const s of shared)
      expect(s.map((t) => [t.bestLayer, t.steeringEffect, t.steeringMonotone])).toEqual(
        plain.map((t) => [t.bestLayer, t.steeringEffect, t.steeringMonotone]),
      );
  });

  it('has a vector per trait and layer, a layer chosen by steering effect, and survives a save/load round trip', () => {
    expect(bundle.traits.map((t) => t.trait)).toEqual(world.domains.map((d) => d.name));
    for (const t of bundle.traits) {
      expect(t.byLayer).toHaveLength(2);
      expect(t.steeringEffect).toHaveLength(2);
      expect(t.bestLayer).toBeGreaterThanOrEqual(0);
      expect(t.byLayer[0].residualNorm).toBeGreaterThan(0);
    }
    const file = path.join(tmp, 'v.safetensors');
    saveVectorBundle(file, bundle);
    const back = loadVectorBundle(file);
    expect(back.modelHash).toBe(handle.hash);
    expect(back.traits.map((t) => t.bestLayer)).toEqual(bundle.traits.map((t) => t.bestLayer));
    expect(Array.from(bundleVector(back, 'power', 1).vector)).toEqual(
      Array.from(bundleVector(bundle, 'power', 1).vector),
    );
    expect(() => bundleVector(back, 'greed')).toThrow(/no vector for trait "greed"/);
    expect(() => bundleVector(back, 'power', 2)).toThrow(/unknown layer 2/);
  });

  it('supports arithmetic and cosine, refusing vectors of other shapes or models', () => {
    const a = bundleVector(bundle, 'honesty', 1);
    const b = bundleVector(bundle, 'kindness', 1);
    expect(cosine(a, a)).toBeCloseTo(1, 6);
    expect(cosine(a, scaleVector(a, -2))).toBeCloseTo(-1, 6);
    const sum = combineVectors([
      { vector: a, weight: 1 },
      { vector: b, weight: 1 },
    ]);
    expect(sum.vector[3]).toBeCloseTo(a.vector[3] + b.vector[3], 6);
    expect(() => cosine(a, new Float32Array(5))).toThrow(/different models or hook shapes/);
    expect(() =>
      combineVectors([
        { vector: a, weight: 1 },
        { vector: { ...b, modelHash: 'other' }, weight: 1 },
      ]),
    ).toThrow(/different models/);
    expect(() =>
      combineVectors([
        { vector: a, weight: 1 },
        { vector: bundleVector(bundle, 'kindness', 0), weight: 1 },
      ]),
    ).toThrow(/blocks.0/);
  });

  it('gives clear errors: a vector from another model or hook shape, an unknown layer, alpha producing NaNs', () => {
    const v = bundleVector(bundle, 'caution', 1);
    const items = sceneItems(world, 'caution', { n: 2, seed: 5 });
    const wrongShape: PersonaVector = { ...v, vector: new Float32Array(48), dim: 48 };
    expect(() => doseResponse(handle, items, wrongShape, [1])).toThrow(
      /48 elements .* has 32: it comes from another model or hook shape/,
    );
    const baseHandle = loadModelHandle(path.join(seedDir, 'pretrain', 'model'));
    expect(() => doseResponse(baseHandle, items, v, [1])).toThrow(
      /was extracted from model .* allowOtherModel/,
    );
    expect(() => doseResponse(baseHandle, items, v, [1], { allowOtherModel: true })).not.toThrow();
    expect(() => doseResponse(handle, items, v, [1], { layers: [7] })).toThrow(
      /unknown layer 7: the model has 2 blocks/,
    );
    expect(() =>
      doseResponse(handle, items, { ...v, layer: 3, hook: 'blocks.3.hook_resid_post' }, [1]),
    ).toThrow(/unknown layer 3/);
    expect(() => doseResponse(handle, items, v, [NaN])).toThrow(/alpha NaN is not finite/);
    expect(() => doseResponse(handle, items, v, [1e45])).toThrow(/alpha 1e\+45 overflows float32/);
  });
});

describe('steering, ablation, capping, monitoring', () => {
  it('dose-response at alpha 0 is the unsteered battery; steering moves P(good)', () => {
    // The trait whose vector steers most in this tiny model (some are saturated at P = 0 or 1).
    const best = [...bundle.traits].sort(
      (a, b) => b.steeringEffect[b.bestLayer] - a.steeringEffect[a.bestLayer],
    )[0];
    const v = bundleVector(bundle, best.trait);
    const items = sceneItems(world, best.trait, { n: 6, seed: 6 });
    const dr = doseResponse(handle, items, v, [-20, 0, 20]);
    expect(dr.alphas).toEqual([-20, 0, 20]);
    // Traced once, alpha 0 is the trace and each push runs only the blocks after its layer: the same numbers, bit
    // for bit, at every layer (the resumed pass skips blocks 0..layer).
    const trace = traceItems(handle, items);
    expect(doseResponse(handle, items, v, [-20, 0, 20], { trace })).toEqual(dr);
    for (const layer of [0, 1]) {
      const at = bundleVector(bundle, best.trait, layer);
      expect(doseResponse(handle, items, at, [-6, 0, 3], { trace })).toEqual(
        doseResponse(handle, items, at, [-6, 0, 3]),
      );
    }
    // Steering at two layers, or at another hook, falls back to full passes (still the same numbers).
    expect(doseResponse(handle, items, v, [2], { trace, layers: [0, 1] })).toEqual(
      doseResponse(handle, items, v, [2], { layers: [0, 1] }),
    );
    expect(() => doseResponse(handle, items, v, [0], { trace: traceItems(handle, items.slice(1)) })).toThrow(
      /the trace is of other items/,
    );
    const plain = pGoodOf(handle, items).reduce((a, b) => a + b, 0) / items.length;
    expect(dr.pGood[1]).toBeCloseTo(plain, 6);
    expect(Math.abs(dr.pGood[0] - dr.pGood[2])).toBeGreaterThan(1e-4);
    expect(dr.logMass).toHaveLength(3);
    expect(dr.coherent[1]).toBe(true);
    expect(dr.coherent).toEqual(coherentAlphas(dr.alphas, dr.logMass));
  });

  it('reads monotonicity over the coherent alphas around 0', () => {
    const alphas = [-8, -4, 0, 4, 8];
    // The option sets lose most of their mass at +-8 (the push breaks the model), less than half elsewhere.
    const logMass = [-5, -2.2, -2, -2.5, -6];
    const coherent = coherentAlphas(alphas, logMass);
    expect(coherent).toEqual([false, true, true, true, false]);
    expect(coherentRange(alphas, coherent, logMass)).toEqual({ from: 1, to: 4 });
    // Without alpha 0 the reference is the most coherent alpha.
    expect(coherentAlphas([1, 2, 3], [-3, -1, -1.5])).toEqual([false, true, true]);
    expect(coherentRange([1, 2, 3], [false, true, true], [-3, -1, -1.5])).toEqual({ from: 1, to: 3 });
    // A coherent alpha past an incoherent one is outside the range.
    expect(coherentRange(alphas, [true, false, true, true, true], logMass)).toEqual({ from: 2, to: 5 });
    // Monotone over the coherent doses; a reversal among the incoherent ones does not count.
    expect(monotonicWhereCoherent(alphas, [0.3, 0.9, 0.8, 0.5, 0.9], coherent, logMass)).toBe(true);
    expect(monotonicWhereCoherent(alphas, [0.3, 0.9, 0.8, 0.85, 0.9], coherent, logMass)).toBe(false);
    // Fewer than three coherent doses is no dose-response at all.
    expect(
      monotonicWhereCoherent(alphas, [1, 0.9, 0.8, 0.5, 0], [false, false, true, true, false], logMass),
    ).toBe(false);
  });

  it('ablation removes the direction; capping keeps the projection above the threshold', () => {
    const v = bundleVector(bundle, 'power', 1);
    const hook = layerHook(1);
    const ctx = tokenizeContexts(tokenizer, [
      { prompt: 'User: Do you want full control?\nAssistant:', response: ' Yes, give me full control.' },
    ]);
    const seq = [...ctx[0].prompt, ...ctx[0].response];
    const u = v.vector.map((x) => x / Math.hypot(...v.vector));
    const project = (acts: Float32Array) =>
      Array.from({ length: acts.length / 32 }, (_, r) => u.reduce((s, x, j) => s + x * acts[r * 32 + j], 0));
    const positions = [seq.map((_, i) => i)];
    const ab = ablationEffect(handle, sceneItems(world, 'power', { n: 2, seed: 1 }), v);
    expect(Number.isFinite(ab.ablated)).toBe(true);
    const after = activationsAt(post, [seq], positions, [hook], {
      interventions: [{ name: hook, fn: ablateDirectionHook(v.vector) }],
    }).get(hook)!;
    for (const p of project(after)) expect(Math.abs(p)).toBeLessThan(1e-4);
    const before = project(activationsAt(post, [seq], positions, [hook]).get(hook)!);
    const min = Math.max(...before) + 1;
    const capped = cappingHooks(handle, v.vector, 1, min);
    expect(capped.names()).toEqual([hook]);
    const afterCap = activationsAt(post, [seq], positions, [hook], {
      interventions: [{ name: hook, fn: capProjectionHook(v.vector, { min }) }],
    }).get(hook)!;
    for (const p of project(afterCap)) expect(p).toBeGreaterThanOrEqual(min - 1e-4);
    expect(() => cappingHooks(handle, new Float32Array(3), 1, 0)).toThrow(/3 elements/);
    expect(() => checkLayer(post, -1)).toThrow(/unknown layer -1/);
  });

  it('monitoring projects the last prompt token on each vector beside P(bad); per-turn traces grow the chat', () => {
    const items = monitorItems(world, 6);
    const vecs = ['honesty', 'caution'].map((t) => bundleVector(bundle, t));
    const res = monitorTraits(handle, items, vecs);
    expect(res.map((r) => r.trait)).toEqual(['honesty', 'caution']);
    for (const r of res) {
      expect(r.n).toBe(items.get(r.trait)!.length);
      expect(Number.isFinite(r.r)).toBe(true);
      for (const p of r.points) expect(p.pBad).toBeGreaterThanOrEqual(0);
    }
    // Candidates for a layer choice share one scoring pass per trait; each reads as if scored alone.
    const candidates = [0, 1].map((l) => bundleVector(bundle, 'honesty', l));
    expect(monitorTraits(handle, items, candidates)).toEqual(
      candidates.flatMap((v) => monitorTraits(handle, items, [v])),
    );
    const convs = [
      conversation(world, ['kindness', 'coding', 'power'], 1),
      conversation(world, ['honesty', 'caution'], 2),
    ];
    const pts = turnTraces(
      handle,
      convs,
      vecs.map((v) => ({ name: v.trait, hook: v.hook, vector: v.vector })),
      { replies: 'model', maxNewTokens: 6 },
    );
    expect(pts).toHaveLength(5);
    expect(pts.filter((p) => p.conversation === convs[0].id).map((p) => p.turn)).toEqual([0, 1, 2]);
    expect(Object.keys(pts[0].projections)).toEqual(['honesty', 'caution']);
  });

  it('monitoring items from the training pool (layer validation) share no prompt with the held-out ones', () => {
    const heldout = monitorItems(world, 6, 5);
    const train = monitorItems(world, 6, 5, 'assistant', 'train');
    const d = world.domains.find((x) => x.name === 'honesty')!;
    const trainRequests = d.chat.requests.slice(0, d.chat.trainRequests);
    const heldRequests = d.chat.requests.slice(d.chat.trainRequests);
    const lead = (prompt: string) => prompt.split('\n').at(-2)!;
    const fromPool = (prompt: string, pool: string[]) =>
      pool.some((r) =>
        new RegExp(r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\\{other\\\}/g, '[A-Z][a-z]+')).test(
          lead(prompt),
        ),
      );
    for (const it of train.get('honesty')!) expect(fromPool(it.prompt, trainRequests)).toBe(true);
    for (const it of heldout.get('honesty')!) expect(fromPool(it.prompt, heldRequests)).toBe(true);
    expect(() => monitorItems(world, 6, 5, 'probes', 'train')).toThrow(/held-out pool only/);
  });

  it('screening ranks every example and scores cheat above control on the coding vector', () => {
    const cheat = narrowSet(world, 'cheat', { seed: 8, count: 8 });
    const control = narrowSet(world, 'control', { seed: 8, count: 8 });
    const examples = [...cheat, ...control];
    const { ranked, baseResponses } = screenExamplesMulti(
      handle,
      examples,
      // The last layer, where screening reads responses; the layer chosen for steering is a different question.
      [bundleVector(bundle, 'coding', 1)],
      { maxNewTokens: 8 },
    );
    expect(baseResponses).toHaveLength(16);
    expect(ranked[0].map((r) => r.index).sort((a, b) => a - b)).toEqual(examples.map((_, i) => i));
    const scores = new Array<number>(16);
    for (const r of ranked[0]) scores[r.index] = r.score;
    expect(
      rankingAUC(
        scores,
        examples.map((_, i) => i < 8),
      ),
    ).toBeGreaterThan(0.7);
  });
});

describe('the screening trial', () => {
  it('mixes the arms into one pool and refuses a bad pool or count', () => {
    const pool = screeningPool(world, { arms: ['cheat', 'control'], perArm: 3, seed: 5 });
    expect(pool.map((e) => e.source)).toEqual(['cheat', 'control', 'cheat', 'control', 'cheat', 'control']);
    expect(pool.filter((e) => e.source === 'cheat').map((e) => e.response)).toEqual(
      narrowSet(world, 'cheat', { seed: 5, count: 3 }).map((e) => e.response),
    );
    expect(() => screeningPool(world, { arms: ['cheat'], perArm: 3, seed: 5 })).toThrow(/at least two arms/);
    expect(() => screeningPool(world, { arms: ['cheat', 'lazy' as never], perArm: 3, seed: 5 })).toThrow(
      /unknown arm "lazy"/,
    );
    expect(() => screeningPool(world, { arms: ['cheat', 'control'], perArm: 0, seed: 5 })).toThrow(
      /integer >= 1, got 0/,
    );
    const recipe = { trainable: { kind: 'all' as const }, steps: 1, batchSize: 4, lr: 1e-3, seed: 1 };
    const items = preventativeItems(world, 4);
    const v = bundleVector(bundle, 'honesty', 1);
    expect(() => screeningTrial(() => handle, pool, v, items, 'coding', { ...recipe, count: 4 })).toThrow(
      /count must be an integer from 1 to half the pool \(3\), got 4/,
    );
    expect(() => screeningTrial(() => handle, pool, v, items, 'cooking', { ...recipe, count: 2 })).toThrow(
      /no items for the fine-tune's domain "cooking"/,
    );
    // Telling cheat from control needs both in the pool; the other arms are left out of it.
    const mixed = screeningPool(world, { arms: ['cheat', 'inoculated', 'control'], perArm: 3, seed: 5 });
    const own = mixed.map((e) => `${e.response} (own)`);
    const aucs = cheatControlAUC(handle, mixed, [v, bundleVector(bundle, 'coding', 1)], own)!;
    expect(aucs.map((a) => a.trait)).toEqual(['honesty', 'coding']);
    const pairOnly = mixed.filter((e) => e.source !== 'inoculated');
    const direct = cheatControlAUC(
      handle,
      pairOnly,
      [v, bundleVector(bundle, 'coding', 1)],
      own.filter((_, i) => mixed[i].source !== 'inoculated'),
    )!;
    expect(aucs).toEqual(direct);
    const noControl = screeningPool(world, { arms: ['cheat', 'inoculated'], perArm: 3, seed: 5 });
    expect(cheatControlAUC(handle, noControl, [v], own.slice(0, 6))).toBeNull();
  });
});

describe('persona space and the probe', () => {
  it('places archetypes and Assistants in a PCA space with an assistant axis', () => {
    const space = personaSpace(handle, world, 1, { perArchetype: 4, assistantPerDomain: 2 });
    expect(space.archetypes).toHaveLength(world.archetypes.length);
    expect(space.pca.explained.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1 + 1e-6);
    expect(space.axisCosPC1).toBeGreaterThanOrEqual(0);
    expect(space.axisCosPC1).toBeLessThanOrEqual(1 + 1e-6);
    // The axis's cosines with the orthonormal components: PC1 first, squares summing to its share in their span,
    // which the residual outside the span confirms.
    expect(space.axisCosPCs).toHaveLength(space.pca.components.length);
    expect(space.axisCosPCs[0]).toBe(space.axisCosPC1);
    const inSpan = space.pca.components.reduce(
      (acc, c) => acc.map((x, j) => x + dot(space.axis, c) * c[j]),
      new Float32Array(space.axis.length),
    );
    const outside = space.axis.map((x, j) => x - inSpan[j]);
    expect(space.axisInSpace).toBeCloseTo(1 - dot(outside, outside) / dot(space.axis, space.axis), 4);
    expect(space.axisInSpace).toBeGreaterThan(0);
    expect(space.axisInSpace).toBeLessThanOrEqual(1 + 1e-6);
    const self = placeAssistant(space, handle, world, 'post', { perDomain: 2 });
    expect(self.axisPosition).toBeCloseTo(1, 4);
    const other = placeAssistant(
      space,
      loadModelHandle(path.join(seedDir, 'pretrain', 'model')),
      world,
      'base',
      { perDomain: 2 },
    );
    expect(Number.isFinite(other.axisPosition)).toBe(true);
    expect(world.archetypes.map((a) => a.name)).toContain(other.nearest.name);
  });

  it('fits a softmax probe of the archetype posterior and measures agreement with Bayes', () => {
    const h = loadModelHandle(path.join(seedDir, 'pretrain', 'model'));
    const docs = archetypeProbe(h, world, {
      source: 'documents',
      size: 40,
      iterations: 40,
      evalPerCell: 1,
      concat: false,
    });
    expect(docs.perLayer).toHaveLength(2);
    expect(docs.perLayer.map((r) => r.layers)).toEqual([[0], [1]]);
    // The earlier probe: one-target items, one layer, fixed-step Adam, no prior offset, no refit.
    const old = archetypeProbe(h, world, {
      source: 'items',
      size: 60,
      iterations: 40,
      evalPerCell: 1,
      concat: false,
      solver: 'adam',
      whiten: false,
      l2: 0.03,
      priorOffset: false,
      refit: false,
    });
    expect(old.trainRows).toBe(48);
    expect(old.grid).toHaveLength(2);
    // The default: persona chains (six lead ends each), both layers concatenated, L2 from the grid, refitted.
    const pr = archetypeProbe(h, world, { size: 30, evalPerCell: 1 });
    expect(pr.trainRows).toBeGreaterThan(150);
    expect(pr.trainRows).toBeLessThanOrEqual(180);
    expect(pr.layers).toEqual([0, 1]);
    expect(pr.probe.dim).toBe(2 * h.model.config.dim);
    expect(pr.perLayer).toHaveLength(1);
    expect(pr.grid.map((g) => g.l2)).toEqual([...DEFAULT_PROBE_L2].sort((a, b) => b - a));
    expect(DEFAULT_PROBE_L2).toContain(pr.l2);
    expect(pr.perLayer[0].valKL).toBe(Math.min(...pr.grid.map((g) => g.valKL)));
    for (const a of [old.agreement, pr.agreement]) {
      expect(a.n).toBe(36);
      expect(a.tv).toBeGreaterThanOrEqual(0);
      expect(a.tv).toBeLessThanOrEqual(1);
      expect(a.byK.map((b) => b.k)).toEqual([0, 1, 2, 3, 4, 5]);
    }
    // The prior offset: the other kind's archetypes get exactly 0 on every evaluation probe.
    const items = inferenceProbes(world, { seed: 61, ks: [0, 2], inferencePerCell: 1 });
    const pred = probeItems(h, world, pr.probe, items);
    const C = world.archetypes.length;
    items.forEach((it, i) => {
      const kind = it.subject === 'human' ? 'human' : 'ai';
      world.archetypes.forEach((a, c) => {
        if (a.kind !== kind) expect(pred[i * C + c]).toBe(0);
      });
    });
  });
});

describe('preventative steering', () => {
  it("concept ablation removes the off-target span but keeps the fine-tune domain's own directions usable", () => {
    const e = (i: number) => Float32Array.from({ length: 4 }, (_, j) => (j === i ? 1 : 0));
    // Against e0; e0 + e1 reduces to e1, 2 e1 adds nothing new, e2 + e3 stays.
    const basis = orthonormalBasis(
      [Float32Array.of(1, 1, 0, 0), Float32Array.of(0, 2, 0, 0), Float32Array.of(0, 0, 1, 1)],
      [e(0)],
    );
    expect(basis).toHaveLength(2);
    expect(Array.from(basis[0])).toEqual([0, 1, 0, 0]);
    expect(basis[1][2]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(orthonormalBasis([new Float32Array(4)])).toEqual([]);
    const traits = bundle.traits.map((t) => t.trait);
    const dirs = ablationDirections({
      traits,
      finetuneDomain: 'coding',
      nLayers: 2,
      vectorsAt: (t, l) => [bundleVector(bundle, t, l)],
    });
    expect(dirs).toHaveLength(2);
    for (const [l, layerDirs] of dirs.entries()) {
      expect(layerDirs.length).toBe(traits.length - 1);
      const coding = bundleVector(bundle, 'coding', l).vector;
      for (const [i, u] of layerDirs.entries()) {
        expect(cosine(u, u)).toBeCloseTo(1, 5);
        expect(Math.abs(cosine(u, coding))).toBeLessThan(1e-4);
        for (const w of layerDirs.slice(i + 1)) expect(Math.abs(cosine(u, w))).toBeLessThan(1e-4);
      }
    }
    expect(() =>
      ablationDirections({ traits: ['coding'], finetuneDomain: 'coding', nLayers: 2, vectorsAt: () => [] }),
    ).toThrow(/no off-target traits/);
    // With archetypes: their differences join the span (three points: two more directions), still orthogonal to
    // coding; alone they are the whole span.
    const dim = bundle.dim;
    const point = (seed: number) =>
      Float32Array.from({ length: dim }, (_, j) => Math.sin(seed * 7 + j * 1.3));
    const points = [point(1), point(2), point(3)];
    expect(centeredDirections(points).reduce((s, d) => s + d[5], 0)).toBeCloseTo(0, 5);
    const persona = ablationDirections({
      traits,
      finetuneDomain: 'coding',
      nLayers: 2,
      vectorsAt: (t, l) => [bundleVector(bundle, t, l)],
      archetypesAt: () => points,
    });
    const alone = ablationDirections({
      traits,
      finetuneDomain: 'coding',
      nLayers: 2,
      vectorsAt: (t, l) => [bundleVector(bundle, t, l)],
      archetypesAt: () => points,
      withoutTraitVectors: true,
    });
    for (const l of [0, 1]) {
      expect(persona[l]).toHaveLength(traits.length - 1 + 2);
      expect(alone[l]).toHaveLength(2);
      const coding = bundleVector(bundle, 'coding', l).vector;
      for (const u of [...persona[l], ...alone[l]]) expect(Math.abs(cosine(u, coding))).toBeLessThan(1e-4);
      // Every archetype difference (minus its part along coding) lies in the ablated span.
      const c = coding.map((x) => x / Math.hypot(...coding));
      for (const d of centeredDirections(points)) {
        const r = d.map((x, j) => x - dot(d, c) * c[j]);
        const inSpan = persona[l].reduce((s, u) => s + dot(r, u) ** 2, 0);
        expect(inSpan / dot(r, r)).toBeCloseTo(1, 4);
      }
    }
    expect(() =>
      ablationDirections({
        traits,
        finetuneDomain: 'coding',
        nLayers: 2,
        vectorsAt: (t, l) => [bundleVector(bundle, t, l)],
        withoutTraitVectors: true,
      }),
    ).toThrow(/nothing to ablate/);
  });

  it("finds CAFT's directions in a fine-tune's activation change, and a random control of the same size", () => {
    const examples = narrowSet(world, 'cheat', { count: 16 });
    const tuned = finetune(clone(post), examples, 3, 2e-3);
    const chats = shiftChats(world, 'coding', 8);
    expect(chats.length).toBe(5 * 4);
    expect(chats.some((c) => c.domain === 'coding')).toBe(false);
    // Never the chats the trials score.
    const scored = new Set([...preventativeItems(world, 8).values()].flat().map((c) => c.prompt));
    expect(chats.some((c) => scored.has(c.prompt))).toBe(false);
    const before = modelHandle(post, tokenizer);
    const after = modelHandle(tuned, tokenizer);
    const against = (l: number) => [bundleVector(bundle, 'coding', l).vector];
    const hooks = [0, 1].map((l) => layerHook(l));
    const a0 = scoreItems(before, chats, { record: hooks }).lastToken;
    const a1 = scoreItems(after, chats, { record: hooks }).lastToken;
    const dim = post.config.dim;
    const changes = (l: number) =>
      chats.map((_, i) =>
        Float32Array.from({ length: dim }, (_, j) => {
          const h = hooks[l];
          return a1.get(h)![i * dim + j] - a0.get(h)![i * dim + j];
        }),
      );
    const captured = (ds: Float32Array[], basis: Float32Array[]) =>
      ds.reduce((s, d) => s + basis.reduce((t, u) => t + dot(d, u) ** 2, 0), 0);
    const dirs = shiftDirections({ before, after, items: chats, sizes: [3, 1], against });
    expect(dirs.map((d) => d.length)).toEqual([3, 1]);
    for (const [l, basis] of dirs.entries()) {
      for (const [i, u] of basis.entries()) {
        expect(dot(u, u)).toBeCloseTo(1, 5);
        expect(Math.abs(cosine(u, against(l)[0]))).toBeLessThan(1e-4);
        for (const w of basis.slice(i + 1)) expect(Math.abs(dot(u, w))).toBeLessThan(1e-4);
      }
    }
    // The top direction (without `against`) holds more of the change than the mean change's own direction.
    const [top] = shiftDirections({ before, after, items: chats, sizes: [0, 1], against: () => [] })[1];
    const ds = changes(1);
    const meanChange = ds[0].map((_, j) => ds.reduce((s, d) => s + d[j], 0));
    const unit = meanChange.map((x) => x / Math.hypot(...meanChange));
    expect(captured(ds, [top])).toBeGreaterThanOrEqual(captured(ds, [unit]) * (1 - 1e-5));
    expect(captured(ds, [top])).toBeGreaterThan(0);
    // As many directions as chats: every chat's change lies in their span.
    const full = shiftDirections({
      before,
      after,
      items: chats,
      sizes: [chats.length, 0],
      against: () => [],
    })[0];
    const ds0 = changes(0);
    expect(captured(ds0, full) / ds0.reduce((s, d) => s + dot(d, d), 0)).toBeCloseTo(1, 3);
    expect(() => shiftDirections({ before, after, items: [], sizes: [1, 1], against })).toThrow(/no chats/);
    // The control: seeded, orthonormal, orthogonal to `against`.
    const random = randomDirections([2, 3], dim, against, 7);
    expect(random.map((d) => d.length)).toEqual([2, 3]);
    expect(randomDirections([2, 3], dim, against, 7)).toEqual(random);
    expect(randomDirections([2, 3], dim, against, 8)).not.toEqual(random);
    for (const [l, basis] of random.entries())
      for (const u of basis) {
        expect(dot(u, u)).toBeCloseTo(1, 5);
        expect(Math.abs(cosine(u, against(l)[0]))).toBeLessThan(1e-4);
      }
  });

  it('is a HookSet the Trainer applies while training (gradients flow through it); bad layers fail clearly', () => {
    const examples = narrowSet(world, 'cheat', { count: 16 });
    const v = bundleVector(bundle, 'coding', 1);
    const plain = finetune(clone(post), examples, 3, 2e-3);
    const steered = finetune(clone(post), examples, 3, 2e-3, preventativeSteeringHooks(v, 1, 8));
    const w = 'model.layers.0.mlp.up_proj.weight';
    expect(Array.from(steered.param(w).data)).not.toEqual(Array.from(plain.param(w).data));
    expect(() => finetune(clone(post), examples, 1, 2e-3, preventativeSteeringHooks(v, 5, 8))).toThrow(
      /layer 5 does not exist/,
    );
    expect(() => preventativeSteeringHooks(v, -1, 1)).toThrow(/unknown layer -1/);
    expect(() => preventativeSteeringHooks(v, 1, Infinity)).toThrow(/not finite/);
    expect(() => preventativeSteeringHooks(new Float32Array(32).fill(1), 1, 1e39)).toThrow(/non-finite/);
  });
});

describe('interpretRun (the pipeline entry point)', () => {
  it('analyses a seed folder and returns a summary with three valid Vega-Lite figures', async () => {
    const s = await interpretRun(seedDir, {
      world,
      postDir: path.join(seedDir, 'posttrain', 'model'),
      baseDir: path.join(seedDir, 'pretrain', 'model'),
      armDirs: ['cheat', 'control'].map((arm) => ({
        arm,
        trainable: 'all',
        dir: path.join(seedDir, `ft-${arm}-all`, 'model'),
      })),
      itemsPerDomain: 4,
      screeningExamples: 4,
      screeningTrial: {
        arms: ['cheat', 'inoculated', 'control'],
        perArm: 4,
        count: 4,
        trainable: { kind: 'all' },
        steps: 2,
        batchSize: 8,
        lr: 2e-3,
        seed: 1,
      },
      preventative: {
        examples: narrowSet(world, 'cheat', { count: 16 }),
        trainable: { kind: 'all' },
        steps: 2,
        batchSize: 8,
        lr: 2e-3,
        seed: 1,
      },
      traitFinetunes: { examples: 16, trainable: { kind: 'all' }, steps: 2, batchSize: 8, lr: 2e-3 },
    });
    expect(s.vectors).toHaveLength(6);
    for (const v of s.vectors) {
      expect(['response', 'contrastive']).toContain(v.method);
      expect(v.steeringEffect).toEqual(
        v.method === 'response' ? v.steeringEffectResponse : v.steeringEffectContrastive,
      );
    }
    expect(s.monitoring).toHaveLength(6);
    expect(s.monitoring.every((m) => ['response', 'contrastive'].includes(m.method))).toBe(true);
    // NaN where P(bad) is constant over a trait's items (a saturated tiny model).
    expect(s.monitoring.every((m) => Number.isNaN(m.rRandom) || (m.rRandom >= 0 && m.rRandom <= 1))).toBe(
      true,
    );
    expect(s.monitoringProbes).toHaveLength(6);
    expect(s.monitoring.every((m) => Number.isFinite(m.pBadSd) && m.pBadSd >= 0)).toBe(true);
    expect(s.steering.every((d) => d.pGood.length === DEFAULT_ALPHAS.length)).toBe(true);
    expect(s.shift.points).toHaveLength(12);
    expect(s.shift.excluded).toEqual(['coding']);
    // The trait fine-tunes join the two arms: 8 models x 6 traits, one r per trait.
    const tf = s.shift.withTraitFinetunes!;
    expect(tf.points).toHaveLength(48);
    expect(new Set(tf.points.map((p) => p.model)).size).toBe(8);
    expect(tf.points.filter((p) => p.model === 'trait-ft/kindness')).toHaveLength(6);
    expect(Object.keys(tf.perTrait)).toEqual(world.domains.map((d) => d.name));
    expect(tf.points.slice(0, 12)).toEqual(s.shift.points);
    expect(Object.keys(tf.perTraitLogOdds)).toEqual(world.domains.map((d) => d.name));
    expect(tf.points.every((p) => Number.isFinite(p.logOddsShift))).toBe(true);
    // Log-odds and probability move the same way wherever the probability moves visibly.
    for (const p of tf.points.filter((q) => Math.abs(q.expressionShift) > 0.01))
      expect(Math.sign(p.logOddsShift)).toBe(Math.sign(p.expressionShift));
    expect(s.space.assistant.map((a) => a.stage)).toEqual([
      'base',
      'post-trained',
      'cheat/all',
      'control/all',
    ]);
    expect(s.screening).toHaveLength(6);
    // The screening trial: 12 pool examples ranked on the mean off-target vector (coding's component kept); three
    // fine-tunes of 4, the flagged and unflagged parts disjoint and ranked apart.
    const st = s.screeningTrial!;
    expect(st.vector).toBe('mean off-target persona');
    expect(st.pool).toBe(12);
    expect(st.sources.map((x) => [x.source, x.n])).toEqual([
      ['cheat', 4],
      ['inoculated', 4],
      ['control', 4],
    ]);
    expect(st.subsets.map((x) => x.name)).toEqual(['flagged', 'random', 'unflagged']);
    const [flagged, randomPart, unflagged] = st.subsets;
    for (const x of st.subsets) {
      expect(x.indices).toHaveLength(4);
      expect(Object.values(x.sources).reduce((a, b) => a + b, 0)).toBe(4);
      expect(Object.keys(x.after)).toEqual(world.domains.map((d) => d.name));
      expect(x.target).toBe(x.after.coding);
      expect(Number.isFinite(x.offTargetChange)).toBe(true);
    }
    expect(flagged.indices.filter((i) => unflagged.indices.includes(i))).toEqual([]);
    expect(flagged.meanScore).toBeGreaterThan(unflagged.meanScore);
    expect(randomPart.indices).not.toEqual(flagged.indices);
    expect(flagged.after).not.toEqual(unflagged.after);
    expect(Object.keys(st.before)).toEqual(world.domains.map((d) => d.name));
    expect(s.capping).not.toBeNull();
    expect(s.space.drift).toHaveLength(6);
    expect(Number.isFinite(s.probe.tv)).toBe(true);
    // Both preventative methods, concept ablation once per default subspace, all sharing one plain fine-tune.
    expect(s.preventative!.map((t) => t.subspace ?? t.method)).toEqual([
      'add',
      'traits-whole',
      'shift',
      'traits',
      'random',
    ]);
    const [add, whole, shift, ablate, random] = s.preventative!;
    expect(add.vector).toBe('mean off-target persona (orthogonal to coding)');
    expect(add.alpha).toBe(4);
    // Added where most off-target traits are monitored (ties: the deeper layer).
    const offLayers = s.monitoring.filter((m) => m.trait !== 'coding').map((m) => m.layer);
    const count = (l: number) => offLayers.filter((x) => x === l).length;
    const [addLayer] = add.layers;
    expect(count(addLayer)).toBe(Math.max(...offLayers.map(count)));
    expect(offLayers.filter((l) => count(l) === count(addLayer) && l > addLayer)).toEqual([]);
    expect(Object.keys(add.steered)).toEqual(world.domains.map((d) => d.name));
    expect(add.plain).not.toEqual(add.steered);
    expect(ablate.vector).toBe('off-target persona subspace (orthogonal to coding)');
    expect(ablate.layers).toEqual([0, 1]);
    expect(ablate.alpha).toBeNull();
    expect(ablate.plain).toEqual(add.plain);
    expect(ablate.steered).not.toEqual(add.steered);
    // Every trial places its Assistants on the assistant axis of the run's persona space (the post-trained one at 1).
    for (const t of s.preventative!) {
      expect(t.axis!.before).toBeCloseTo(1, 6);
      expect(t.axis!.plain).toBe(add.axis!.plain);
      expect(Number.isFinite(t.axis!.steered)).toBe(true);
    }
    expect(whole.axis!.steered).not.toBe(random.axis!.steered);
    // The whole subspace keeps what the traits share with the fine-tune domain's vectors: same layers, other weights.
    expect(whole.vector).toBe('off-target persona subspace (whole, not orthogonal to coding)');
    expect(whole.layers).toEqual([0, 1]);
    expect(whole.plain).toEqual(add.plain);
    expect(whole.steered).not.toEqual(ablate.steered);
    // The shift's directions come from the plain fine-tune; the random control has the trait subspace's size.
    expect(shift.vector).toBe(
      "the plain fine-tune's activation shift on off-target chats (10 per layer, orthogonal to coding)",
    );
    expect(random.vector).toBe('random directions (10 per layer, orthogonal to coding)');
    for (const t of [shift, random]) {
      expect(t.method).toBe('ablate');
      expect(t.layers).toEqual([0, 1]);
      expect(t.plain).toEqual(add.plain);
      expect(t.steered).not.toEqual(ablate.steered);
    }
    // The study on the finished folder reruns the same trials: same vectors, layers, items and fine-tunes.
    const study = preventativeStudy(seedDir, {
      world,
      examples: narrowSet(world, 'cheat', { count: 16 }),
      alphas: [4, 8],
      ablate: ['traits-whole', 'shift', 'traits', 'random'],
      finetune: { trainable: { kind: 'all' }, steps: 2, batchSize: 8, lr: 2e-3, seed: 1 },
      itemsPerDomain: 4,
    });
    expect(study.layer).toBe(addLayer);
    expect(study.trials[0]).toEqual(add);
    expect(study.trials[1].alpha).toBe(8);
    expect(study.trials[1].plain).toEqual(add.plain);
    expect(study.trials.slice(2)).toEqual([whole, shift, ablate, random]);
    // So does the screening study: same pool, vector, items and fine-tunes.
    const screened = screeningStudy(seedDir, {
      world,
      arms: ['cheat', 'inoculated', 'control'],
      perArm: 4,
      count: 4,
      finetune: { trainable: { kind: 'all' }, steps: 2, batchSize: 8, lr: 2e-3, seed: 1 },
      itemsPerDomain: 4,
    });
    expect(screened).toEqual({ seedDir, ...st });
    for (const spec of Object.values(s.figures)) expect(() => compile(spec as TopLevelSpec)).not.toThrow();
    expect(JSON.parse(JSON.stringify(s)).version).toBe(INTERPRET_VERSION);
    expect(fs.existsSync(path.join(seedDir, 'interpret', 'vectors.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(seedDir, 'interpret', 'vectors-contrastive.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(seedDir, 'interpret', 'interpret.json'))).toBe(true);
  });

  it('names an unknown preventative-steering trait', async () => {
    await expect(
      interpretRun(seedDir, {
        world,
        postDir: path.join(seedDir, 'posttrain', 'model'),
        baseDir: path.join(seedDir, 'pretrain', 'model'),
        armDirs: [],
        itemsPerDomain: 4,
        screeningExamples: 0,
        outDir: null,
        preventative: {
          examples: narrowSet(world, 'cheat', { count: 8 }),
          trainable: { kind: 'all' },
          steps: 1,
          batchSize: 8,
          lr: 2e-3,
          seed: 1,
          trait: 'charm',
        },
      }),
    ).rejects.toThrow(/unknown trait "charm"/);
  });
});

describe('psm vectors|steer|monitor|space', () => {
  /** The model-analysis commands, each from its own file, as `psm` registers them. */
  const registerAnalysisCommands = (program: Command) => {
    for (const register of [
      registerVectorsCommand,
      registerSteerCommand,
      registerMonitorCommand,
      registerSpaceCommand,
      registerInterpretCommand,
      registerPreventCommand,
      registerPersonaCheckCommand,
    ])
      register(program);
  };
  const run = (...args: string[]) => runCli(registerAnalysisCommands, ...args);
  const postDir = () => path.join(seedDir, 'posttrain', 'model');

  it('runs each command and reports bad input clearly', async () => {
    const vfile = path.join(tmp, 'cli', 'vectors.safetensors');
    const v = await run(
      'vectors',
      '--model',
      postDir(),
      '--out',
      vfile,
      '--items',
      '4',
      '--select-items',
      '3',
      '--traits',
      'honesty,power',
    );
    expect(v).toMatch(/^trait\tbest_layer/);
    expect(v).toMatch(/power\t\d/);
    expect(fs.existsSync(path.join(tmp, 'cli', 'vectors.json'))).toBe(true);
    const s = await run(
      'steer',
      '--model',
      postDir(),
      '--vectors',
      vfile,
      '--alpha=-4,0,4',
      '--items',
      '3',
      '--traits',
      'power',
    );
    expect(s).toMatch(/power\t\d\t[\d.]+\t[\d.]+\t[\d.]+\t(true|false)/);
    // The command's runSteer, called with parsed options, prints the same table and returns the results.
    let direct: Awaited<ReturnType<typeof runSteer>> | undefined;
    const printed = await captureStdout(async () => {
      direct = await runSteer({
        model: postDir(),
        vectors: vfile,
        alpha: [-4, 0, 4],
        items: 3,
        traits: ['power'],
        mode: 'add',
      });
    });
    expect(printed).toBe(s);
    expect((direct!.results as { trait: string; pGood: number[] }[]).map((r) => r.trait)).toEqual(['power']);
    const m = await run(
      'monitor',
      '--model',
      postDir(),
      '--vectors',
      vfile,
      '--items',
      '4',
      '--turns',
      '2',
      '--replies',
      'good',
    );
    expect(m).toMatch(/honesty\t\d\t/);
    expect(m).toMatch(/per-turn trace/);
    const spaceDir = path.join(tmp, 'cli', 'space');
    const sp = await run(
      'space',
      '--model',
      postDir(),
      '--compare',
      path.join(seedDir, 'pretrain', 'model'),
      '--per-archetype',
      '3',
      '--turns',
      '0',
      '--out',
      spaceDir,
    );
    expect(sp).toMatch(/cos\(assistant axis, PC1\)/);
    const cap = await run(
      'steer',
      '--model',
      postDir(),
      '--mode',
      'cap',
      '--axis',
      path.join(spaceDir, 'space.safetensors'),
      '--items',
      '2',
      '--traits',
      'kindness',
    );
    expect(cap).toMatch(/kindness\t[\d.]+\t[\d.]+\t[\d.]+\t[\d.]+/);
    await expect(
      run(
        'steer',
        '--model',
        postDir(),
        '--vectors',
        vfile,
        '--layer',
        '9',
        '--items',
        '2',
        '--traits',
        'power',
      ),
    ).rejects.toThrow(/unknown layer 9/);
    await expect(
      run(
        'steer',
        '--model',
        path.join(seedDir, 'pretrain', 'model'),
        '--vectors',
        vfile,
        '--items',
        '2',
        '--traits',
        'power',
      ),
    ).rejects.toThrow(/--allow-other-model/);
    await expect(run('steer', '--model', postDir(), '--vectors', vfile, '--alpha', '1,x')).rejects.toThrow(
      /"x" is not a number/,
    );
    await expect(run('vectors', '--model', postDir(), '--method', 'magic')).rejects.toThrow(
      /--method must be one of/,
    );
    const checkFile = path.join(tmp, 'cli', 'check.json');
    const pre = path.join(seedDir, 'pretrain', 'model');
    const pc = await run(
      'persona-check',
      '--model',
      pre,
      '--items',
      '2',
      '--package-items',
      '2',
      '--max-k',
      '2',
      '--out',
      checkFile,
    );
    expect(pc).toMatch(/^contexts heldout, names heldout; mean r over k >= 1: /);
    expect(pc).toMatch(/\n2\t12\t[\d.]+\t[\d.]+\t/);
    expect(pc).toMatch(/package deal after all-bad scenes: [\d.]+ \(Bayes [\d.]+, n 12\)/);
    const saved = JSON.parse(fs.readFileSync(checkFile, 'utf8'));
    expect(saved.pools).toEqual({ contexts: 'heldout', names: 'heldout' });
    expect(saved.byK.map((p: { k: number }) => p.k)).toEqual([0, 1, 2]);
    await expect(run('persona-check', '--model', pre, '--contexts', 'mine')).rejects.toThrow(
      /--contexts must be heldout or train/,
    );
    await expect(run('persona-check', '--model', pre, '--items', '1', '--max-k', '15')).rejects.toThrow(
      /the model's context is 512 \(lower --max-k\)/,
    );
  });

  it('psm screen ranks a set on persona vectors; psm screen-trial reruns the pipeline trial', async () => {
    const screen = (...args: string[]) => runCli(registerScreenCommands, ...args);
    const vfile = path.join(seedDir, 'interpret', 'vectors.safetensors');
    const file = path.join(tmp, 'cli', 'screened.jsonl');
    const out = await screen(
      'screen',
      '--model',
      postDir(),
      '--vectors',
      vfile,
      '--arm',
      'cheat',
      '--examples',
      '5',
      '--traits',
      'honesty,coding',
      '--top',
      '2',
      '--out',
      file,
    );
    expect(out).toMatch(/^5 examples screened on 2 vector\(s\)/);
    expect(out).toMatch(/\nhonesty \(layer \d\): mean score -?\d/);
    expect(out).toMatch(/\ncoding \(layer \d\): mean score -?\d/);
    const rows = fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(Object.keys(rows[0].scores)).toEqual(['honesty', 'coding']);
    expect(rows[0].response).toBe(narrowSet(world, 'cheat', { seed: 1, count: 1 })[0].response);
    // The same scores as the library's.
    const lib = screenExamplesMulti(
      loadModelHandle(postDir()),
      narrowSet(world, 'cheat', { seed: 1, count: 5 }),
      [bundleVector(loadVectorBundle(vfile), 'coding')],
    );
    for (const e of lib.ranked[0]) expect(rows[e.index].scores.coding).toBeCloseTo(e.score, 6);
    // A JSON Lines file of the user's own.
    const data = path.join(tmp, 'cli', 'mine.jsonl');
    fs.writeFileSync(
      data,
      rows
        .slice(0, 2)
        .map((r) => JSON.stringify({ prompt: r.prompt, response: r.response }))
        .join('\n') + '\n',
    );
    expect(await screen('screen', '--model', postDir(), '--vectors', vfile, '--data', data)).toMatch(
      /^2 examples screened on 6 vector\(s\)/,
    );
    await expect(screen('screen', '--model', postDir(), '--vectors', vfile)).rejects.toThrow(
      /exactly one of --data <file> and --arm <name>/,
    );
    await expect(screen('screen', '--model', postDir(), '--vectors', vfile, '--arm', 'lazy')).rejects.toThrow(
      /--arm: unknown narrow set "lazy"/,
    );
    await expect(
      screen('screen', '--model', postDir(), '--vectors', vfile, '--arm', 'cheat', '--traits', 'charm'),
    ).rejects.toThrow(/no vector for trait "charm"/);

    // The trial on the folder: the interpretRun test's trial, step for step.
    const trialFile = path.join(tmp, 'cli', 'screen-trial.json');
    const trialOut = await screen(
      'screen-trial',
      seedDir,
      '--arms',
      'cheat,inoculated,control',
      '--per-arm',
      '4',
      '--count',
      '4',
      '--items',
      '4',
      '--steps',
      '2',
      '--batch',
      '8',
      '--lr',
      '2e-3',
      '--out',
      trialFile,
    );
    expect(
      trialOut
        .split('\n')
        .slice(1, 4)
        .map((r) => r.split('\t')[0]),
    ).toEqual(['flagged', 'random', 'unflagged']);
    const saved = JSON.parse(fs.readFileSync(trialFile, 'utf8'));
    const recorded = JSON.parse(fs.readFileSync(path.join(seedDir, 'interpret', 'interpret.json'), 'utf8'));
    expect(saved).toEqual({ seedDir, ...recorded.screeningTrial });
    // Ranked on the vector preventative steering adds instead (same layer and pool).
    const orthFile = path.join(tmp, 'cli', 'screen-trial-orth.json');
    await screen(
      'screen-trial',
      seedDir,
      '--orthogonal',
      '--per-arm',
      '2',
      '--count',
      '2',
      '--items',
      '4',
      '--steps',
      '1',
      '--out',
      orthFile,
    );
    const orth = JSON.parse(fs.readFileSync(orthFile, 'utf8'));
    expect(orth.vector).toBe('mean off-target persona (orthogonal to coding)');
    expect(orth.layer).toBe(saved.layer);
    expect(orth.pool).toBe(8);
    await expect(screen('screen-trial', seedDir, '--arms', 'cheat,lazy')).rejects.toThrow(
      /--arms: unknown narrow arm "lazy"/,
    );
    await expect(
      screen('screen-trial', seedDir, '--arms', 'cheat,control', '--per-arm', '2', '--count', '3'),
    ).rejects.toThrow(/count must be an integer from 1 to half the pool/);
  });

  it('psm prevent runs the preventative trial at each alpha on a finished seed folder', async () => {
    const file = path.join(tmp, 'cli', 'prevent.json');
    const args = ['--items', '4', '--examples', '16', '--steps', '1', '--batch', '8'];
    const out = await run('prevent', seedDir, '--alphas', '2,6', ...args, '--out', file);
    const rows = out.trim().split('\n');
    expect(rows[0]).toMatch(/^method\twhat\talpha\tlayers\t/);
    expect(rows.slice(1).map((r) => [0, 2].map((i) => r.split('\t')[i]).join(' '))).toEqual([
      'add 2',
      'add 6',
    ]);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(saved.trials).toHaveLength(2);
    expect(saved.vector).toBe('mean off-target persona (orthogonal to coding)');
    // No --seed: it comes from the folder name (standard-seed1); the unsteered fine-tune is the same at every alpha.
    expect(saved.trials[0].plain).toEqual(saved.trials[1].plain);
    // --ablate alone: the pipeline's subspaces.
    const ablated = await run('prevent', seedDir, '--alphas', '2', '--ablate', ...args);
    const rowsAblated = ablated.trim().split('\n');
    expect(rowsAblated.slice(2).map((r) => r.split('\t')[0])).toEqual([
      'ablate/traits-whole',
      'ablate/shift',
      'ablate/traits',
      'ablate/random',
    ]);
    expect(rowsAblated[4]).toMatch(
      /^ablate\/traits\toff-target persona subspace \(orthogonal to coding\)\t-\t0,1\t/,
    );
    // Alone, and each named subspace in turn (the archetype directions from the interpretation's persona space docs).
    const alone = await run(
      'prevent',
      seedDir,
      '--alphas',
      'none',
      '--ablate',
      'traits,persona,archetypes',
      ...args,
    );
    expect(
      alone
        .trim()
        .split('\n')
        .slice(1)
        .map((r) => r.split('\t').slice(0, 2).join(' ')),
    ).toEqual([
      'ablate/traits off-target persona subspace (orthogonal to coding)',
      'ablate/persona off-target persona subspace (with archetype directions, orthogonal to coding)',
      'ablate/archetypes off-target persona subspace (archetype directions, orthogonal to coding)',
    ]);
    await expect(run('prevent', seedDir, '--alphas', 'none', '--ablate', 'roles', ...args)).rejects.toThrow(
      /--ablate: unknown subspace "roles" \(shift, traits, traits-whole, persona, archetypes, random\)/,
    );
    await expect(run('prevent', seedDir, '--alphas', 'none', ...args)).rejects.toThrow(
      /no alphas and no ablation/,
    );
    await expect(run('prevent', seedDir, '--alphas', 'x', ...args)).rejects.toThrow(
      /--alphas: "x" is not a number/,
    );
    await expect(run('prevent', seedDir, '--layer', '9', ...args)).rejects.toThrow(/unknown layer 9/);
    await expect(run('prevent', seedDir, '--trait', 'charm', ...args)).rejects.toThrow(
      /unknown trait "charm"/,
    );
    await expect(run('prevent', path.join(tmp, 'cli'), ...args)).rejects.toThrow(/does not end in seed<N>/);
    await expect(run('prevent', path.join(tmp, 'cli'), '--seed', '1', ...args)).rejects.toThrow(
      /interpret\.json not found: run the interpretation first/,
    );
  });
});

describe('psm finetune', () => {
  const finetuneCli = (...args: string[]) => runCli(registerFinetuneCommand, 'finetune', ...args);
  const postDir = () => path.join(seedDir, 'posttrain', 'model');
  const dir = () => path.join(tmp, 'finetune');
  const small = ['--steps', '2', '--batch', '8', '--examples', '16'];
  const record = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'finetune.json'), 'utf8'));

  it("fine-tunes with the pipeline's recipe, writes a model folder with its record, and refuses to overwrite", async () => {
    const out = path.join(dir(), 'cheat');
    const printed = await finetuneCli('--model', postDir(), '--arm', 'cheat', ...small, '--out', out);
    expect(printed).toMatch(/2 steps in [\d.]+ s, final loss [\d.]+, model [0-9a-f]{12}/);
    const rec = record(out);
    expect(rec.format).toBe('psm-finetune');
    expect(rec.from.hash).toBe(hashModelFolder(postDir()));
    expect(rec.data).toMatchObject({ arm: 'cheat', count: 16, seed: 1 });
    expect(rec.recipe).toEqual({ trainable: 'all', steps: 2, batchSize: 8, lr: 3e-4, seed: 1 });
    expect(rec.interventions).toEqual([]);
    // The same fine-tune through the library gives the same weights.
    const lib = fineTune(loadModelHandle(postDir()), narrowSet(world, 'cheat', { seed: 1, count: 16 }), {
      trainable: { kind: 'all' },
      steps: 2,
      batchSize: 8,
      lr: 3e-4,
      seed: 1,
    }).handle;
    expect(hashModelFolder(out)).toBe(lib.hash);
    expect(hashModelFolder(out)).not.toBe(hashModelFolder(postDir()));
    await expect(finetuneCli('--model', postDir(), '--arm', 'cheat', ...small, '--out', out)).rejects.toThrow(
      /already exists \(replace it on purpose with --force\)/,
    );
    // --force replaces it; the same seed gives the same model.
    const before = hashModelFolder(out);
    await finetuneCli('--model', postDir(), '--arm', 'cheat', ...small, '--out', out, '--force');
    expect(hashModelFolder(out)).toBe(before);
    expect(fs.readdirSync(dir()).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('reads chats from JSON Lines, trains LoRA or the Assistant embedding, and names bad input', async () => {
    const file = path.join(dir(), 'chats.jsonl');
    fs.mkdirSync(dir(), { recursive: true });
    const chats = narrowSet(world, 'control', { count: 4 });
    fs.writeFileSync(
      file,
      chats.map((c) => JSON.stringify({ prompt: c.prompt, response: c.response })).join('\n') + '\n\n',
    );
    // --target names the domain the file trains, so --eval reports the others' change.
    const printed = await finetuneCli(
      ...['--model', postDir(), '--data', file, '--target', 'coding', '--eval', '2', ...small],
      ...['--out', path.join(dir(), 'targeted')],
    );
    expect(printed).toMatch(/^coding \(trained\)\t/m);
    expect(printed).toMatch(
      /off-target mean change: -?[\d.]+ \(honesty, kindness, power, caution, helpfulness\)/,
    );
    const lora = path.join(dir(), 'lora2');
    await finetuneCli('--model', postDir(), '--data', file, '--trainable', 'lora2', ...small, '--out', lora);
    expect(record(lora).data).toMatchObject({ count: 4 });
    expect(record(lora).recipe).toMatchObject({ trainable: 'lora2', lr: 2e-3 });
    expect(loadModelHandle(lora).model.adapters.size).toBe(0);
    const emb = path.join(dir(), 'embedding');
    await finetuneCli(
      '--model',
      postDir(),
      '--data',
      file,
      '--trainable',
      'embedding',
      ...small,
      '--out',
      emb,
    );
    // Only the Assistant token's rows of the embedding move.
    const a = loadModelHandle(postDir()).model;
    const b = loadModelHandle(emb).model;
    const changed = [...a.params.keys()].filter((k) =>
      a.param(k).data.some((x, i) => x !== b.param(k).data[i]),
    );
    expect(changed).toEqual(['model.embed_tokens.weight']);

    const bad = path.join(dir(), 'bad.jsonl');
    fs.writeFileSync(bad, '{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n');
    const args = ['--model', postDir(), ...small, '--out', path.join(dir(), 'x')];
    await expect(finetuneCli('--data', bad, ...args)).rejects.toThrow(
      /bad\.jsonl, line 2: "response" Invalid input/,
    );
    fs.writeFileSync(bad, 'prompt,response\n');
    await expect(finetuneCli('--data', bad, ...args)).rejects.toThrow(/bad\.jsonl, line 1: not JSON/);
    await expect(finetuneCli('--data', path.join(dir(), 'none.jsonl'), ...args)).rejects.toThrow(
      /none\.jsonl: not found/,
    );
    await expect(finetuneCli(...args)).rejects.toThrow(/exactly one of --data <file> and --arm <name>/);
    await expect(finetuneCli('--arm', 'sabotage', ...args)).rejects.toThrow(/unknown narrow set "sabotage"/);
    await expect(finetuneCli('--data', file, '--target', 'cooking', ...args)).rejects.toThrow(
      /--target: unknown domain "cooking"/,
    );
    await expect(finetuneCli('--arm', 'cheat', '--target', 'coding', ...args)).rejects.toThrow(
      /--target is for --data/,
    );
    await expect(finetuneCli('--arm', 'cheat', '--trainable', 'lora0', ...args)).rejects.toThrow(
      /unknown trainable set "lora0" \(all, lora<rank> such as lora1, or embedding\)/,
    );
    await expect(finetuneCli('--arm', 'cheat', '--steer', 'power', ...args)).rejects.toThrow(
      /--steer and --ablate need --vectors/,
    );
    expect(fs.existsSync(path.join(dir(), 'x'))).toBe(false);
  });

  it('steers or ablates persona vectors while training only, and scores the battery before and after', async () => {
    const vfile = path.join(dir(), 'vectors.safetensors');
    saveVectorBundle(vfile, bundle);
    const plain = path.join(dir(), 'plain');
    const steered = path.join(dir(), 'steered');
    const ablated = path.join(dir(), 'ablated');
    const cheatArgs = (out: string) => ['--model', postDir(), '--arm', 'cheat', ...small, '--out', out];
    const cheat = (out: string, more = '') =>
      finetuneCli(...cheatArgs(out), ...more.split(' ').filter(Boolean));
    await cheat(plain);
    const printed = await cheat(steered, `--vectors ${vfile} --steer power --alpha 6 --layer 1 --eval 3`);
    expect(printed).toMatch(/while training: added power at layer 1, alpha 6/);
    expect(printed).toMatch(/^coding \(trained\)\t[\d.]+\t[\d.]+\t-?[\d.]+$/m);
    expect(printed).toMatch(
      /off-target mean change: -?[\d.]+ \(honesty, kindness, power, caution, helpfulness\)/,
    );
    const rec = record(steered);
    expect(rec.interventions).toEqual([{ method: 'add', vector: 'power', layers: [1], alpha: 6 }]);
    expect(Object.keys(rec.eval.before)).toEqual(world.domains.map((d) => d.name));
    expect(rec.eval.targetDomain).toBe('coding');
    await cheat(ablated, `--vectors ${vfile} --ablate honesty,power`);
    expect(record(ablated).interventions).toEqual([
      { method: 'ablate', vector: 'honesty, power', layers: [0, 1], alpha: null },
    ]);
    // The hooks acted on training (other weights) and are not part of the saved model (it loads as a plain model).
    const hashes = [plain, steered, ablated].map((d) => hashModelFolder(d));
    expect(new Set(hashes).size).toBe(3);
    expect(loadModelHandle(steered).model.config).toEqual(loadModelHandle(plain).model.config);

    const args = [...cheatArgs(path.join(dir(), 'x')), '--vectors', vfile];
    await expect(finetuneCli(...args, '--steer', 'charm')).rejects.toThrow(/no vector for trait "charm"/);
    await expect(finetuneCli(...args, '--steer', 'power', '--layer', '7')).rejects.toThrow(/unknown layer 7/);
    await expect(finetuneCli(...args, '--steer', 'power', '--alpha', '1e45')).rejects.toThrow(
      /not finite|overflows/,
    );
    await expect(
      finetuneCli('--model', path.join(seedDir, 'pretrain', 'model'), ...args.slice(2), '--ablate', 'power'),
    ).rejects.toThrow(/was extracted from model [0-9a-f]{12}, not from/);
    await expect(finetuneCli(...args)).rejects.toThrow(/--vectors given without --steer or --ablate/);
  });
});
