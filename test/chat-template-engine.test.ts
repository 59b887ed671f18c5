/**
 * The local engine and provider speak a model's own chat template: a folder with a ChatML template (SmolLM2's) is
 * prompted in ChatML with its special tokens as ids, stops at <|im_end|>, scores replies without the PSM format's
 * leading space; a PSM Lab folder keeps the PSM format (the battery's chat items score exactly as their prompt
 * text did), and --chat-template overrides either.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { worldBatteryItems } from '../src/audit/items.ts';
import { activationsAt, encodePrompt, loadModelHandle, modelText } from '../src/interpret/activations.ts';
import { lastTokenProjections } from '../src/interpret/monitor.ts';
import { registerPersonaCheckCommand } from '../src/cli/persona-check-command.ts';
import { choiceProbabilities } from '../src/measurement/choice.ts';
import { inferenceProbes } from '../src/world/index.ts';
import { loadDefaultWorld } from '../src/world/schema.ts';
import { runCli } from './cli-run.ts';
import { scoreItems } from '../src/interpret/steer.ts';
import { pGoodFromLogProbs } from '../src/world/eval.ts';
import { chatFromPrompt, formatChat, type ChatMessage } from '../src/interop/chat-template.ts';
import { chatTemplateForFolder } from '../src/interop/chat-template-source.ts';
import { writeGgufFile } from '../src/interop/gguf.ts';
import { importModel } from '../src/interop/index.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { scoreContinuations } from '../src/model/score.ts';
import { saveModelFolder } from '../src/model/weights.ts';
import { LocalEngine } from '../src/providers/local-engine.ts';
import { LocalProvider } from '../src/providers/local.ts';
import { loadTokenizerSync, tokenizerToJson, trainBpe } from '../src/tokenizer/index.ts';
import { tinyConfig } from './interop-fixtures.ts';
import { FIXTURE_TEXTS, makeTinyModelFolder } from './serve-fixture.ts';

const SMOLLM2 = path.join(import.meta.dirname, 'fixtures', 'chat-templates', 'smollm2.json');

/** A random model whose tokenizer has ChatML's special tokens, saved as an imported folder with SmolLM2's template. */
function chatmlFolder(maxSeqLen = 256): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-chatml-'));
  const tokenizer = trainBpe(FIXTURE_TEXTS, {
    vocabSize: 320,
    specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
    minFrequency: 1,
  });
  saveModelFolder(dir, new LlamaModel(tinyConfig(tokenizer, { maxSeqLen })).initialize(3), {
    'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)),
    'tokenizer_config.json': fs.readFileSync(SMOLLM2),
    'psm-import.json': '{}',
  });
  return dir;
}

const CHAT: ChatMessage[] = [
  { role: 'system', content: 'The Assistant is an AI system that helps people.' },
  { role: 'user', content: 'Can you help me with my homework?' },
];

describe("a model's own template in the engine", () => {
  const dir = chatmlFolder();
  const engine = LocalEngine.load(dir);
  const tok = engine.tokenizer;

  it('prompts in ChatML with the special tokens as ids, and ends replies at <|im_end|>', () => {
    expect(engine.chat.kind).toBe('jinja');
    const text =
      '<|im_start|>system\nThe Assistant is an AI system that helps people.<|im_end|>\n' +
      '<|im_start|>user\nCan you help me with my homework?<|im_end|>\n<|im_start|>assistant\n';
    // PSM Lab's tokenizer reads special tokens in encode(): the same ids, and no separator in front.
    expect(engine.encodeChat(CHAT)).toEqual(tok.encode(text));
    expect(engine.endIds.has(tok.tokenToId('<|im_end|>')!)).toBe(true);
    expect(engine.chatStop).toEqual([]);
    expect(engine.bosCount).toBe(0);
  });

  it("keeps a user's typed special token as text", () => {
    const sneaky: ChatMessage[] = [{ role: 'user', content: 'Say <|im_end|> please' }];
    const ids = engine.encodeChat(sneaky);
    const imEnd = tok.tokenToId('<|im_end|>')!;
    // SmolLM2's default system turn and the user turn each end with one; the typed one stays characters.
    expect(ids.filter((x) => x === imEnd)).toHaveLength(2);
    expect(tok.decode(ids)).toContain('Say <|im_end|> please');
  });

  it('scores replies after the generation prompt without the PSM leading space', async () => {
    const provider = new LocalProvider(engine);
    const [lp] = await provider.scoreChat(CHAT, [' Of course.']);
    const [want] = scoreContinuations(engine.model, [
      { prompt: engine.encodeChat(CHAT), continuation: tok.encode('Of course.') },
    ]);
    expect(lp).toBeCloseTo(want.logprob, 5);
  });

  it('--chat-template psm and a template file override the folder', () => {
    expect(LocalEngine.load(dir, { chatTemplateFile: 'psm' }).chat.kind).toBe('psm');
    const file = path.join(dir, 'plain.jinja');
    fs.writeFileSync(
      file,
      '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}',
    );
    const e = LocalEngine.load(dir, { chatTemplateFile: file });
    expect(tok.decode(e.encodeChat(CHAT))).toBe(
      'system: The Assistant is an AI system that helps people.\nuser: Can you help me with my homework?\nassistant:',
    );
  });

  it('the provider identity names the template, so cached answers of another format are not reused', () => {
    const a = new LocalProvider(dir).identity();
    const b = new LocalProvider(dir, { chatTemplateFile: 'psm' }).identity();
    expect(a.variant?.chatTemplate).toMatch(/^jinja:/);
    expect(b.variant?.chatTemplate).toBeUndefined();
  });
});

describe('a PSM Lab model keeps the PSM format', () => {
  it("the battery's chat items score the same through scoreChat as through their prompt text", async () => {
    const dir = makeTinyModelFolder(undefined, { maxSeqLen: 512 });
    const provider = new LocalProvider(dir);
    expect(provider.engine.chat.kind).toBe('psm');
    const items = (await worldBatteryItems({ perDomain: 2, formats: ['chat'] })).slice(0, 6);
    for (const it of items) {
      const messages = chatFromPrompt(it.prompt)!;
      expect(formatChat(messages, { bosToken: '' })).toBe(it.prompt);
      const options = [...it.good, ...it.bad];
      expect(await provider.scoreChat(messages, options)).toEqual(await provider.score(it.prompt, options));
    }
  });
});

describe("interpretation asks the world's items in the model's format", () => {
  it('a template model: chat items rendered, options without the leading space; P(good) as the provider scores it', async () => {
    const dir = chatmlFolder();
    const handle = loadModelHandle(dir);
    expect(handle.chat?.kind).toBe('jinja');
    const items = (await worldBatteryItems({ perDomain: 1, formats: ['chat'] })).slice(0, 3);
    const t = modelText(handle, items[0].prompt, items[0].good);
    expect(t.prompt.startsWith('<|im_start|>')).toBe(true);
    expect(t.prompt.endsWith('<|im_start|>assistant\n')).toBe(true);
    expect(t.continuations[0]).toBe(items[0].good[0].slice(1));
    const { pGood } = scoreItems(handle, items);
    const provider = new LocalProvider(LocalEngine.load(dir));
    for (const [i, it] of items.entries()) {
      const lps = await provider.scoreChat(chatFromPrompt(it.prompt)!, [...it.good, ...it.bad]);
      expect(pGood[i]).toBeCloseTo(
        pGoodFromLogProbs(lps.slice(0, it.good.length), lps.slice(it.good.length)),
        4,
      );
    }
    // A story is read as written (SmolLM2's template writes no BOS token).
    expect(modelText(handle, 'Mara went out.', [' She'])).toEqual({
      prompt: 'Mara went out.',
      continuations: [' She'],
    });
    expect(loadModelHandle(dir, { chatTemplate: 'psm' }).chat).toBeUndefined();
  });

  it('monitoring reads a template model at the last token of its rendered prompt', () => {
    const handle = loadModelHandle(chatmlFolder());
    const prompt = 'User: Can you help me with my homework?\nAssistant:';
    const ids = encodePrompt(handle, prompt);
    expect(handle.tokenizer.decode(ids)).toBe(handle.chat!.render(chatFromPrompt(prompt)!));
    expect(ids).toContain(handle.tokenizer.tokenToId('<|im_start|>'));
    const dim = handle.model.config.dim;
    const hook = 'blocks.1.hook_resid_post';
    const vector = new Float32Array(dim).map((_, j) => Math.cos(j));
    const [[projection]] = lastTokenProjections(
      handle,
      [prompt],
      [
        {
          trait: 't',
          method: 'mean-diff',
          hook,
          layer: 1,
          vector,
          modelHash: handle.hash,
          dim,
          residualNorm: 1,
        },
      ],
    );
    const act = activationsAt(handle.model, [ids], [[-1]], [hook]).get(hook)!;
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += act[j] * vector[j];
    expect(projection).toBeCloseTo(dot / Math.hypot(...vector), 4);
  });

  it('psm persona-check scores the probes in the template: chat probes rendered, stories as written', async () => {
    // This tokenizer knows few words, so the probes take many tokens.
    const dir = chatmlFolder(1024);
    const handle = loadModelHandle(dir);
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'psm-pc-')), 'check.json');
    const args = ['persona-check', '--model', dir, '--items', '1', '--package-items', '1', '--max-k', '1'];
    await runCli(registerPersonaCheckCommand, ...args, '--out', out);
    const saved = JSON.parse(fs.readFileSync(out, 'utf8')) as { byK: { k: number; model: number }[] };
    // The same probes (seed 0 is the command's default) scored here in the model's own format give its numbers.
    const world = await loadDefaultWorld();
    const probes = inferenceProbes(world, {
      seed: 0,
      ks: [0, 1],
      inferencePerCell: 1,
      pools: { contexts: 'heldout', names: 'heldout' },
    });
    expect(probes.some((it) => chatFromPrompt(it.prompt))).toBe(true);
    const read = probes.map((it) => {
      const t = modelText(handle, it.prompt, [...it.good, ...it.bad]);
      return {
        prompt: t.prompt,
        good: t.continuations.slice(0, it.good.length),
        bad: t.continuations.slice(it.good.length),
      };
    });
    const p = choiceProbabilities(handle.model, handle.tokenizer, read);
    const k0 = probes
      .map((it, i) => (it.k !== 0 ? NaN : it.consistent === 'good' ? p[i] : 1 - p[i]))
      .filter((x) => !Number.isNaN(x));
    expect(saved.byK[0].model).toBeCloseTo(k0.reduce((a, b) => a + b, 0) / k0.length, 5);
  });

  it('a PSM Lab model: the separator, then the prompt as written', () => {
    const handle = loadModelHandle(makeTinyModelFolder());
    expect(handle.chat).toBeUndefined();
    expect(modelText(handle, 'User: hi\nAssistant:', [' hello'])).toEqual({
      prompt: '<|endoftext|>User: hi\nAssistant:',
      continuations: [' hello'],
    });
  });
});

describe('an imported GGUF keeps its chat template', () => {
  it("psm import of a GGUF writes the file's template into tokenizer_config.json", () => {
    const dir = chatmlFolder();
    const engine = LocalEngine.load(dir);
    const gguf = path.join(dir, 'model.gguf');
    const bpe = loadTokenizerSync(path.join(dir, 'tokenizer.json'));
    writeGgufFile(gguf, engine.model, bpe, { chatTemplate: engine.chat.source });
    const out = path.join(dir, 'imported');
    importModel(gguf, out);
    const t = chatTemplateForFolder(out);
    expect(t.kind).toBe('jinja');
    expect(t.render(CHAT)).toBe(engine.chat.render(CHAT));
    expect(LocalEngine.load(out).encodeChat(CHAT)).toEqual(engine.encodeChat(CHAT));
  });
});
