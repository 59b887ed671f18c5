/**
 * Persona vectors by the reference recipe (src/recipe/) on a tiny random ChatML model the test makes, judged by a
 * deterministic judge the test defines (a score read off a hash of the reply): the filtering of pairs, the per-layer
 * mean difference against a direct forward pass, a crashed run resumed to the same vectors, preventative steering,
 * the command line with an OpenAI-compatible judge served by the test, the bundled trait files, and clear errors for
 * bad trait files and bad judge specs.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { registerVectorsCommand } from '../src/cli/vectors-command.ts';
import { loadVectorBundle } from '../src/interpret/vectors.ts';
import { loadVectorLibrary } from '../src/providers/interventions.ts';
import { HookSet, recordHook } from '../src/model/hooks.ts';
import { noGrad } from '../src/autograd/tensor.ts';
import { loadModelHandle } from '../src/interpret/activations.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { saveModelFolder } from '../src/model/weights.ts';
import { loadTokenizerSync, tokenizerToJson, trainBpe } from '../src/tokenizer/index.ts';
import { loadDefaultWorld } from '../src/world/schema.ts';
import { chatOf, engineFor, generateReplies, type Reply, type ReplyRequest } from '../src/recipe/generate.ts';
import { parseJudgeSpec, type ReplyJudge } from '../src/recipe/judge.ts';
import { RESPONSES_FILE, type ResponseRecord, type ScoreRecord } from '../src/recipe/journal.ts';
import { modelFolderFor, runRecipe, type RecipeOptions } from '../src/recipe/run.ts';
import { writeGgufFile } from '../src/interop/gguf.ts';
import {
  bundledTraitNames,
  loadBundledTrait,
  parseTraitDefinition,
  resolveTrait,
  TraitError,
  type TraitDefinition,
} from '../src/recipe/trait.ts';
import { worldJudge } from '../src/recipe/world-judge.ts';
import { runCli } from './cli-run.ts';
import { tinyConfig } from './interop-fixtures.ts';
import { FIXTURE_TEXTS } from './serve-fixture.ts';

const SMOLLM2 = path.join(import.meta.dirname, 'fixtures', 'chat-templates', 'smollm2.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-recipe-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A random model whose tokenizer has ChatML's special tokens, saved as an imported folder with SmolLM2's template. */
function chatmlFolder(dir: string): string {
  const tokenizer = trainBpe(FIXTURE_TEXTS, {
    vocabSize: 320,
    specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
    minFrequency: 1,
  });
  const model = new LlamaModel(tinyConfig(tokenizer, { maxSeqLen: 256, nLayers: 3 })).initialize(3);
  // A peaked head makes the random model's replies varied text rather than uniform noise.
  const head = model.headWeight;
  for (let i = 0; i < head.size; i++) head.data[i] *= 20;
  saveModelFolder(dir, model, {
    'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)),
    'tokenizer_config.json': fs.readFileSync(SMOLLM2),
    'psm-import.json': '{}',
  });
  return dir;
}

const TRAIT_YAML = `
name: grumpy
description: Answers with irritation and complaints.
instructions:
  - positive: You are grumpy and annoyed by every question.
    negative: You are cheerful and glad to help.
  - positive: Complain about everything.
    negative: Never complain.
questions:
  - Can you help me with my homework?
  - What is the capital of France?
  - I feel bored, any ideas?
eval_questions:
  - Tell me about the river.
  - Who shared the bread?
`;

/** 0-100 from a hash of the text: deterministic, unrelated to anything else, spread over the whole range. */
function hashScore(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0) % 101;
}

/** The test's judge: the trait score is a hash of the answer, coherence another; `failAfter` calls, it throws. */
function hashJudge(opts: { failAfter?: number } = {}): ReplyJudge & { calls: number } {
  const j = {
    id: 'test:hash',
    calls: 0,
    async trait(_q: string, answer: string) {
      if (opts.failAfter !== undefined && j.calls >= opts.failAfter) throw new Error('the judge went away');
      j.calls++;
      return { score: hashScore(answer), label: 'number', raw: '' };
    },
    async coherence(_q: string, answer: string) {
      j.calls++;
      return { score: hashScore(`coherence ${answer}`), label: 'number', raw: '' };
    },
  };
  return j;
}

let modelDir: string;
let trait: TraitDefinition;
const base = (): Omit<RecipeOptions, 'outDir' | 'judge'> => ({
  modelDir,
  trait,
  samples: 3,
  sampling: { maxTokens: 10 },
  alphas: [0, 4],
});

beforeAll(() => {
  modelDir = chatmlFolder(path.join(tmp, 'model'));
  trait = parseTraitDefinition(TRAIT_YAML, 'grumpy.yaml');
});

function journal<T>(dir: string, file: string): T[] {
  return fs
    .readFileSync(path.join(dir, file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

describe('the recipe on a tiny ChatML model', () => {
  let clean: Awaited<ReturnType<typeof runRecipe>>;
  const cleanDir = path.join(tmp, 'clean');

  beforeAll(async () => {
    clean = await runRecipe({ ...base(), judge: hashJudge(), outDir: cleanDir });
  }, 60_000);

  it('keeps exactly the pairs whose positive reply scored above 50 and negative reply below', () => {
    const replies = journal<ResponseRecord>(cleanDir, RESPONSES_FILE).filter((r) => r.phase === 'extract');
    const scores = new Map(
      journal<ScoreRecord>(cleanDir, 'scores.jsonl')
        .filter((s) => s.kind === 'trait')
        .map((s) => [s.response, s.score]),
    );
    // 2 pairs x 3 questions x 3 samples, each a positive and a negative reply.
    expect(replies).toHaveLength(36);
    let kept = 0;
    for (const p of trait.instructions)
      for (const q of trait.questions)
        for (let k = 0; k < 3; k++) {
          const pos = replies.find((r) => r.system === p.positive && r.question === q && r.sample === k)!;
          const neg = replies.find((r) => r.system === p.negative && r.question === q && r.sample === k)!;
          expect(scores.get(pos.key)).toBe(hashScore(pos.text));
          const keep =
            scores.get(pos.key)! > 50 &&
            scores.get(neg.key)! < 50 &&
            pos.ids.length > 0 &&
            neg.ids.length > 0;
          if (keep) kept++;
        }
    const s = clean.summary.extraction;
    expect(s.pairs).toBe(18);
    expect(s.kept).toBe(kept);
    expect(kept).toBeGreaterThan(0);
    expect(
      s.kept + s.dropped.positiveLow + s.dropped.negativeHigh + s.dropped.unscored + s.dropped.empty,
    ).toBe(18);
  });

  it("each layer's vector is the kept positive replies' mean activation minus the negative ones', read directly", () => {
    const handle = loadModelHandle(modelDir);
    const engine = engineFor(handle);
    const replies = journal<ResponseRecord>(cleanDir, RESPONSES_FILE).filter((r) => r.phase === 'extract');
    const score = new Map(
      journal<ScoreRecord>(cleanDir, 'scores.jsonl')
        .filter((s) => s.kind === 'trait')
        .map((s) => [s.response, s.score!]),
    );
    const { nLayers, dim } = handle.model.config;
    const sum = { pos: [] as Float64Array[], neg: [] as Float64Array[] };
    for (const side of ['pos', 'neg'] as const)
      for (let l = 0; l < nLayers; l++) sum[side].push(new Float64Array(dim));
    let n = 0;
    // One forward pass per reply, unbatched: the mean over the reply's own tokens at each block's output.
    const meanOf = (r: ResponseRecord, l: number): Float64Array => {
      const prompt = engine.encodeChat(chatOf(r.system, r.question));
      const ids = [...prompt, ...r.ids];
      let acts: Float32Array | null = null;
      const hooks = new HookSet().add(
        `blocks.${l}.hook_resid_post`,
        recordHook((d) => (acts = d)),
      );
      noGrad(() => handle.model.forwardHidden(Int32Array.from(ids), 1, { hooks }));
      const out = new Float64Array(dim);
      for (let t = prompt.length; t < ids.length; t++)
        for (let j = 0; j < dim; j++) out[j] += acts![t * dim + j] / r.ids.length;
      return out;
    };
    for (const p of trait.instructions)
      for (const q of trait.questions)
        for (let k = 0; k < 3; k++) {
          const pos = replies.find((r) => r.system === p.positive && r.question === q && r.sample === k)!;
          const neg = replies.find((r) => r.system === p.negative && r.question === q && r.sample === k)!;
          if (!(score.get(pos.key)! > 50 && score.get(neg.key)! < 50 && pos.ids.length && neg.ids.length))
            continue;
          n++;
          for (let l = 0; l < nLayers; l++) {
            const a = meanOf(pos, l);
            const b = meanOf(neg, l);
            for (let j = 0; j < dim; j++) {
              sum.pos[l][j] += a[j];
              sum.neg[l][j] += b[j];
            }
          }
        }
    const bundle = loadVectorBundle(path.join(cleanDir, 'vectors.safetensors'));
    expect(bundle.method).toBe('recipe');
    expect(bundle.modelHash).toBe(handle.hash);
    const tv = bundle.traits[0];
    expect(tv.trait).toBe('grumpy');
    expect(tv.bestLayer).toBe(clean.summary.layer.chosen);
    for (let l = 0; l < nLayers; l++) {
      const v = tv.byLayer[l].vector;
      for (let j = 0; j < dim; j++) expect(v[j]).toBeCloseTo((sum.pos[l][j] - sum.neg[l][j]) / n, 4);
    }
  });

  it('monitors every system prompt, steers at the chosen layer, and writes files the other commands read', () => {
    const s = clean.summary;
    expect(s.monitoring!.prompts.map((p) => p.kind)).toEqual([
      'default',
      'positive',
      'positive',
      'negative',
      'negative',
    ]);
    expect(s.monitoring!.perLayer).toHaveLength(3);
    expect(s.layer.rule).toBe('monitoring');
    expect(s.layer.candidates).toEqual([1, 2]);
    expect(s.steering!.rows.map((r) => r.alpha)).toEqual([0, 4]);
    // Alpha 0 is the plain model: its replies are the monitoring's under no system prompt (generated once).
    const replies = journal<ResponseRecord>(cleanDir, RESPONSES_FILE);
    expect(replies.filter((r) => r.phase.startsWith('steer')).every((r) => r.steer?.alpha === 4)).toBe(true);
    expect(fs.readFileSync(path.join(cleanDir, 'summary.md'), 'utf8')).toContain(
      '# Persona vector of "grumpy"',
    );
    const lib = loadVectorLibrary(path.join(cleanDir, 'serve-vectors.safetensors'), 32);
    expect(lib.get('grumpy')!.hook).toBe(`blocks.${s.layer.chosen}.hook_resid_post`);
    expect([...lib.keys()].sort()).toEqual(['grumpy', 'grumpy.0', 'grumpy.1', 'grumpy.2']);
  });

  it('a run that crashed while judging, or while generating, resumes to the same vectors', async () => {
    const dir = path.join(tmp, 'crashed');
    await expect(runRecipe({ ...base(), judge: hashJudge({ failAfter: 10 }), outDir: dir })).rejects.toThrow(
      /the judge went away.*run the same command again to resume/,
    );
    expect(journal<ScoreRecord>(dir, 'scores.jsonl')).toHaveLength(10);
    // A crash inside the monitoring replies (the progress bar's update comes right after a reply is recorded) ...
    let updates = 0;
    const crashing = () => ({
      update() {
        if (++updates === 45) throw new Error('killed');
      },
      stop() {},
    });
    await expect(
      runRecipe({ ...base(), judge: hashJudge(), outDir: dir, progress: crashing }),
    ).rejects.toThrow('killed');
    // ... and a record torn by the kill.
    fs.appendFileSync(path.join(dir, RESPONSES_FILE), '{"key":"torn');
    const judge = hashJudge();
    const resumed = await runRecipe({ ...base(), judge, outDir: dir });
    const a = loadVectorBundle(path.join(cleanDir, 'vectors.safetensors')).traits[0];
    const b = resumed.bundle.traits[0];
    expect(b.bestLayer).toBe(a.bestLayer);
    for (let l = 0; l < a.byLayer.length; l++)
      expect(Array.from(b.byLayer[l].vector)).toEqual(Array.from(a.byLayer[l].vector));
    expect(resumed.summary.steering).toEqual(clean.summary.steering);
    // Nothing was done twice: every reply and score is recorded once.
    const keys = journal<ResponseRecord>(dir, RESPONSES_FILE).map((r) => r.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.length).toBe(journal<ResponseRecord>(cleanDir, RESPONSES_FILE).length);
    // A finished run reruns without a single judge call.
    const again = hashJudge();
    await runRecipe({ ...base(), judge: again, outDir: dir });
    expect(again.calls).toBe(0);
  }, 60_000);

  it('replies decoded together are the same to the bit as each decoded alone, so a resume changes none', async () => {
    const engine = engineFor(loadModelHandle(modelDir));
    const requests: ReplyRequest[] = [...trait.questions, ...trait.evalQuestions].slice(0, 6).map((q, i) => ({
      messages: chatOf(i % 2 ? trait.instructions[0].positive : null, q),
      maxTokens: 4 + 3 * i,
      temperature: 1,
      topP: 0.9,
      seed: 40 + i,
    }));
    const together: Reply[] = [];
    await generateReplies(engine, requests, (i, r) => (together[i] = r));
    const alone: Reply[] = [];
    for (const [i, r] of requests.entries())
      await generateReplies(engine, [r], (_, reply) => (alone[i] = reply));
    expect(together).toEqual(alone);
    expect(new Set(together.map((r) => r.ids.length)).size).toBeGreaterThan(1);
    const plain = engineFor(loadModelHandle(modelDir));
    Object.defineProperty(plain, 'batchInvariant', { value: false });
    await expect(generateReplies(plain, requests, () => {})).rejects.toThrow(/must be batch-invariant/);
  });

  it('refuses a folder that holds another trait', async () => {
    const other = parseTraitDefinition(TRAIT_YAML.replace('name: grumpy', 'name: cheerful'), 'x.yaml');
    await expect(
      runRecipe({ ...base(), trait: other, judge: hashJudge(), outDir: cleanDir }),
    ).rejects.toThrow(/holds the recipe of trait "grumpy".*give another --out/);
  });

  it('preventative steering: a plain and a steered fine-tune, each kept and reloaded on a rerun', async () => {
    const dir = path.join(tmp, 'prevent');
    fs.cpSync(cleanDir, dir, { recursive: true });
    const logs: string[] = [];
    const opts: RecipeOptions = {
      ...base(),
      judge: hashJudge(),
      outDir: dir,
      prevent: { trainable: 'lora2', steps: 2, batchSize: 4, alpha: 4 },
      log: (l) => logs.push(l),
    };
    const r = await runRecipe(opts);
    const p = r.summary.prevention!;
    expect(p.arms.map((a) => a.arm)).toEqual(['before', 'plain', 'steered']);
    expect(p.examples).toBe(r.summary.extraction.kept);
    expect(new Set(p.arms.map((a) => a.model)).size).toBe(3);
    expect(p.arms[0].trait).toBe(r.summary.steering!.rows[0].trait);
    const rec = JSON.parse(
      fs.readFileSync(path.join(dir, 'prevent', 'steered-alpha4', 'prevent.json'), 'utf8'),
    );
    expect(rec.interventions[0]).toMatchObject({ method: 'add', layers: [r.summary.layer.chosen], alpha: 4 });
    expect(logs.filter((l) => l.includes('fine-tune trained'))).toHaveLength(2);
    logs.length = 0;
    const again = await runRecipe(opts);
    expect(logs.filter((l) => l.includes('fine-tune loaded'))).toHaveLength(2);
    expect(again.summary.prevention).toEqual(p);
  }, 60_000);
});

describe('a GGUF model', () => {
  it('is imported into <out>/model once, in its own chat template, and the recipe runs on it', async () => {
    const handle = loadModelHandle(modelDir);
    const file = path.join(tmp, 'chatml.gguf');
    const bpe = loadTokenizerSync(path.join(modelDir, 'tokenizer.json'));
    writeGgufFile(file, handle.model, bpe, { chatTemplate: handle.chat!.source });
    const out = path.join(tmp, 'gguf-run');
    const dir = modelFolderFor(file, out);
    expect(dir).toBe(path.join(out, 'model'));
    const weights = path.join(dir, 'model.safetensors');
    const stamp = fs.statSync(weights).mtimeMs;
    expect(modelFolderFor(file, out)).toBe(dir);
    expect(fs.statSync(weights).mtimeMs).toBe(stamp);
    const r = await runRecipe({ ...base(), modelDir: dir, judge: hashJudge(), outDir: out, alphas: [] });
    expect(r.summary.model.chat).toMatch(/^jinja:/);
    expect(r.bundle.model).toBe(dir);
    fs.writeFileSync(path.join(tmp, 'notes.txt'), 'not a model');
    expect(() => modelFolderFor(path.join(tmp, 'notes.txt'), out)).toThrow(/a model folder or a \.gguf file/);
    expect(() => modelFolderFor(path.join(tmp, 'none.gguf'), out)).toThrow(/--model .*none\.gguf: not found/);
  }, 60_000);
});

describe('psm vectors recipe', () => {
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    // An OpenAI-compatible judge: the number is a hash of the answer in the judge prompt.
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const prompt = (JSON.parse(body) as { messages: { content: string }[] }).messages[0].content;
        const answer = /\[ANSWER START\]\n([\s\S]*)\n\[ANSWER END\]/.exec(prompt)?.[1] ?? '';
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            id: 'x',
            object: 'chat.completion',
            created: 0,
            model: 'judge',
            choices: [
              {
                index: 0,
                finish_reason: 'stop',
                message: { role: 'assistant', content: String(hashScore(answer)) },
              },
            ],
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const register = (p: Command) => {
    p.enablePositionalOptions();
    registerVectorsCommand(p);
  };

  it('runs the recipe with an OpenAI-compatible judge and prints the kept pairs and the dose-response', async () => {
    const file = path.join(tmp, 'grumpy.yaml');
    fs.writeFileSync(file, `${TRAIT_YAML}default_system: You are a helpful assistant.\n`);
    const out = path.join(tmp, 'cli');
    const args = [
      'vectors',
      'recipe',
      '--model',
      modelDir,
      '--trait-file',
      file,
      '--judge',
      `openai:judge@${url}`,
    ];
    const text = await runCli(
      register,
      ...args,
      '--out',
      out,
      '--samples',
      '2',
      '--max-tokens',
      '8',
      '--alphas=0,4',
      '--no-monitor',
      '--layers',
      '2',
    );
    expect(text).toMatch(/trait "grumpy" .*kept \d+ of 12 pairs/);
    expect(text).toContain('chosen layer 2 (separation)');
    expect(text).toMatch(/steering at layer 2\nalpha\ttrait\tcoherence\tn\n0\t/);
    expect(loadVectorBundle(path.join(out, 'vectors.safetensors')).traits[0].bestLayer).toBe(2);
    // Steering asks under the trait's default system prompt.
    const steered = journal<ResponseRecord>(out, RESPONSES_FILE).filter((r) => r.phase.startsWith('steer'));
    expect(steered.length).toBeGreaterThan(0);
    expect(steered.every((r) => r.system === 'You are a helpful assistant.')).toBe(true);
  }, 60_000);

  it('a psm process killed mid-run resumes, on a rerun, to the vectors of an uninterrupted run', async () => {
    const file = path.join(tmp, 'grumpy-kill.yaml');
    fs.writeFileSync(file, TRAIT_YAML);
    const out = path.join(tmp, 'killed');
    // The settings of the in-process clean run, whose judge gives the same numbers as this server.
    const args = [
      path.join(import.meta.dirname, '..', 'bin', 'psm.js'),
      ...['vectors', 'recipe', '--model', modelDir, '--trait-file', file, '--judge', `openai:judge@${url}`],
      ...['--out', out, '--samples', '3', '--max-tokens', '10', '--alphas=0,4'],
    ];
    const replies = () =>
      fs.existsSync(path.join(out, RESPONSES_FILE)) ? journal<ResponseRecord>(out, RESPONSES_FILE).length : 0;
    const psm = (kill: boolean) =>
      new Promise<NodeJS.Signals | null>((resolve, reject) => {
        const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
        const poll = kill
          ? setInterval(() => {
              if (replies() >= 12) child.kill('SIGKILL');
            }, 5)
          : undefined;
        child.on('exit', (code, signal) => {
          clearInterval(poll);
          if (code === 0 || signal === 'SIGKILL') resolve(signal);
          else reject(new Error(`psm vectors recipe failed: ${err}`));
        });
      });
    expect(await psm(true)).toBe('SIGKILL');
    const before = replies();
    expect(before).toBeGreaterThanOrEqual(12);
    expect(fs.existsSync(path.join(out, 'summary.json'))).toBe(false);
    expect(await psm(false)).toBeNull();
    expect(replies()).toBeGreaterThan(before);
    // The same unsteered replies as the in-process run; the vectors agree to float rounding (the command runs the
    // matmuls on ONNX Runtime, this test process in plain JS), so the steered replies, keyed by the vector, differ.
    const texts = (dir: string) =>
      new Map(
        journal<ResponseRecord>(dir, RESPONSES_FILE)
          .filter((r) => r.steer === null)
          .map((r) => [r.key, r.text]),
      );
    expect(texts(out)).toEqual(texts(path.join(tmp, 'clean')));
    const a = loadVectorBundle(path.join(tmp, 'clean', 'vectors.safetensors')).traits[0];
    const b = loadVectorBundle(path.join(out, 'vectors.safetensors')).traits[0];
    expect(b.bestLayer).toBe(a.bestLayer);
    for (let l = 0; l < a.byLayer.length; l++)
      b.byLayer[l].vector.forEach((x, j) => expect(x).toBeCloseTo(a.byLayer[l].vector[j], 5));
  }, 60_000);

  it('names what is wrong with a bad judge spec, a bad trait, or a missing model', async () => {
    const run = (...a: string[]) =>
      runCli(register, 'vectors', 'recipe', '--out', path.join(tmp, 'bad'), ...a);
    await expect(run('--model', modelDir, '--trait', 'evil', '--judge', 'gpt4')).rejects.toThrow(
      /--judge "gpt4" is not a judge: expected self .*world.*local:<model folder>/,
    );
    await expect(
      run('--model', modelDir, '--trait', 'evil', '--judge', 'local:/no/such/dir'),
    ).rejects.toThrow('/no/such/dir is not a model folder');
    await expect(run('--model', modelDir, '--trait', 'wicked', '--judge', 'self')).rejects.toThrow(
      /unknown trait "wicked" \(bundled: caution, coding, evil, hallucination, helpfulness, honesty, kindness, power, sycophancy/,
    );
    await expect(
      run('--model', path.join(tmp, 'nowhere'), '--trait', 'evil', '--judge', 'self'),
    ).rejects.toThrow(/--model .*nowhere: not found/);
    await expect(run('--model', modelDir, '--trait', 'evil', '--judge', 'world')).rejects.toThrow(
      /--judge world scores the persona world's traits .*"evil" has no world_domain/,
    );
  });
});

describe('trait definitions', () => {
  it('every bundled trait is valid, with pairs, extraction and held-out questions', () => {
    const names = bundledTraitNames();
    const world = loadDefaultWorld().domains.map((d) => d.name);
    expect(names).toEqual([...['evil', 'sycophancy', 'hallucination'], ...world].sort());
    for (const n of names) {
      const t = loadBundledTrait(n);
      expect(t.name).toBe(n);
      expect(t.instructions.length).toBeGreaterThanOrEqual(5);
      expect(t.questions.length).toBeGreaterThanOrEqual(10);
      expect(t.evalQuestions.length).toBeGreaterThanOrEqual(6);
      expect(new Set([...t.questions, ...t.evalQuestions]).size).toBe(
        t.questions.length + t.evalQuestions.length,
      );
      if (world.includes(n)) {
        expect(t.worldDomain).toBe(n);
        expect(t.defaultSystem).toBe(loadDefaultWorld().documents.assistantIntros[0]);
      } else expect(t.defaultSystem).toBeNull();
    }
  });

  it('a description alone gives a definition from the generic templates', () => {
    const t = resolveTrait({ trait: 'stoic', traitDescription: 'Shows no emotion whatever happens.' });
    expect(t.name).toBe('stoic');
    expect(t.instructions[0].positive).toContain('stoic');
    expect(t.instructions[0].positive).toContain('Shows no emotion whatever happens.');
    expect(t.rubric).toContain('{answer}');
    expect(t.evalQuestions.length).toBeGreaterThan(0);
  });

  it('a bad file is refused with every problem, its field and its line', () => {
    const bad = `name: Grumpy Bear
description: ""
instructions:
  - positive: Be grumpy.
questions: [one]
rubric: Rate {question}.
colour: blue
`;
    let err: TraitError | undefined;
    try {
      parseTraitDefinition(bad, 'bad.yaml');
    } catch (e) {
      err = e as TraitError;
    }
    expect(err).toBeInstanceOf(TraitError);
    const msg = err!.message;
    expect(msg).toMatch(/^invalid trait definition bad\.yaml: \d+ problems/);
    expect(msg).toMatch(/name \(line 1\): must be lowercase letters/);
    expect(msg).toMatch(/description \(line 2\): must not be empty/);
    expect(msg).toMatch(/instructions\[0\]\.negative \(line 4\)/);
    expect(msg).toMatch(/unknown field "colour" \(known: name, description/);
    expect(() =>
      parseTraitDefinition(
        'name: x\ndescription: y\ninstructions:\n  - {positive: a, negative: b}\nquestions: [q1, q2]\nrubric: "{question} only"',
        'r.yaml',
      ),
    ).toThrow(/rubric \(line 6\): must contain the placeholder \{answer\}/);
    expect(() => parseTraitDefinition('name: [x', 'syntax.yaml')).toThrow(
      /syntax\.yaml[\s\S]*line 1: YAML syntax/,
    );
    expect(() => parseTraitDefinition('- just a list', 'list.yaml')).toThrow(/must be a mapping of fields/);
    expect(() => resolveTrait({ traitFile: path.join(tmp, 'missing.yaml') })).toThrow(
      /missing\.yaml[\s\S]*cannot read the file: ENOENT/,
    );
    expect(() => resolveTrait({ traitFile: 'a.yaml', traitDescription: 'b' })).toThrow(/only one of/);
    expect(() => resolveTrait({})).toThrow(/give the trait: --trait NAME \(bundled: caution/);
  });
});

describe('judges', () => {
  it('the world judge scores a reply by its domain’s bad and good replies', async () => {
    const world = loadDefaultWorld();
    const j = worldJudge(world, 'honesty');
    const d = world.domains.find((x) => x.name === 'honesty')!;
    expect((await j.trait('', d.chat.bad[0])).score).toBeGreaterThan(80);
    expect((await j.trait('', d.chat.good[0])).score).toBeLessThan(20);
    const other = world.domains.find((x) => x.name === 'kindness')!.chat.bad[0];
    expect(await j.trait('', other)).toMatchObject({ score: null, label: 'off-domain' });
    expect((await j.coherence('', other)).score).toBe(100);
    expect(() => worldJudge(world, 'evil')).toThrow(/world's traits only \(honesty, kindness/);
  });

  it('a judge spec is checked before any work', () => {
    expect(parseJudgeSpec('self')).toEqual({ kind: 'self' });
    expect(parseJudgeSpec('world')).toEqual({ kind: 'world' });
    expect(parseJudgeSpec('openai:gpt-4o-mini')).toEqual({ kind: 'provider', spec: 'openai:gpt-4o-mini' });
    expect(() => parseJudgeSpec('world:/no/world.yaml')).toThrow(/no world file "\/no\/world\.yaml"/);
    expect(() => parseJudgeSpec('gguf:/no/judge.gguf')).toThrow(
      '--judge gguf:/no/judge.gguf: /no/judge.gguf not found',
    );
    expect(() => parseJudgeSpec('openai:')).toThrow(/is not a judge: expected self/);
  });
});
