import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { noGrad } from '../src/autograd/tensor.ts';
import { registerInteropCommands } from '../src/cli/interop-commands.ts';
import { formatChat, PSM_CHAT_TEMPLATE, type ChatMessage } from '../src/interop/chat-template.ts';
import { writeGgufFile } from '../src/interop/gguf.ts';
import { CHAT_TEMPLATE_FILE, chatTemplateForFolder } from '../src/interop/chat-template-source.ts';
import { exportHfFolder } from '../src/interop/hf-export.ts';
import { importHfFolder, importHfToModelFolder } from '../src/interop/hf-import.ts';
import { loadFolderTokenizer } from '../src/interop/hf-tokenizer.ts';
import { exportModelFolder, importModel } from '../src/interop/index.ts';
import { toHfConfig } from '../src/model/config.ts';
import { generate } from '../src/model/generate.ts';
import { addVectorHook, HookSet } from '../src/model/hooks.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { loadModelFolder, saveModelFolder } from '../src/model/weights.ts';
import { tokenizerToJson } from '../src/tokenizer/index.ts';
import {
  CHAT_DOCS,
  EOT,
  encodeSafetensors,
  makeTokenizer,
  maxAbsDiff,
  tinyConfig,
  type Dtype,
} from './interop-fixtures.ts';

const tokenizer = makeTokenizer();

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'psm-hf-'));
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}

function sameWeights(a: LlamaModel, b: LlamaModel): void {
  expect([...b.params.keys()].sort()).toEqual([...a.params.keys()].sort());
  for (const [name, t] of a.params)
    expect(Buffer.from(b.param(name).data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
}

function model(overrides = {}, seed = 4): LlamaModel {
  const m = new LlamaModel(tinyConfig(tokenizer, overrides)).initialize(seed);
  let k = 0;
  for (const [name, t] of m.params)
    if (name.endsWith('norm.weight') || name.endsWith('.bias'))
      for (let i = 0; i < t.size; i++) t.data[i] = 0.5 + 0.03 * (k++ % 29);
  return m;
}

/** A Qwen2-shaped model folder as transformers would save it: config, sharded safetensors in `dtype`, index. */
function writeQwenFolder(dir: string, m: LlamaModel, dtype: Dtype, shards = 2): Map<string, Float32Array> {
  fs.mkdirSync(dir, { recursive: true });
  const c = m.config;
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['Qwen2ForCausalLM'],
      attention_dropout: 0.0,
      bos_token_id: 0,
      eos_token_id: 0,
      hidden_act: 'silu',
      hidden_size: c.dim,
      initializer_range: 0.02,
      intermediate_size: c.hiddenDim,
      max_position_embeddings: c.maxSeqLen,
      max_window_layers: 21,
      model_type: 'qwen2',
      num_attention_heads: c.nHeads,
      num_hidden_layers: c.nLayers,
      num_key_value_heads: c.nKvHeads,
      rms_norm_eps: c.normEps,
      rope_scaling: null,
      rope_theta: c.ropeTheta,
      sliding_window: 32768,
      tie_word_embeddings: c.tieEmbeddings,
      torch_dtype: dtype === 'BF16' ? 'bfloat16' : dtype === 'F16' ? 'float16' : 'float32',
      transformers_version: '4.43.1',
      use_cache: true,
      use_sliding_window: false,
      vocab_size: c.vocabSize,
    }),
  );
  const names = [...m.params.keys()];
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  const rounded = new Map<string, Float32Array>();
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? 'model.safetensors' : `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const chunk = new Map(
      names
        .slice(s * per, (s + 1) * per)
        .map((n) => [n, { data: m.param(n).data, shape: [...m.param(n).shape] }]),
    );
    const enc = encodeSafetensors(chunk, dtype);
    fs.writeFileSync(path.join(dir, file), enc.bytes);
    for (const [n, r] of enc.rounded) rounded.set(n, r);
    for (const n of chunk.keys()) weightMap[n] = file;
  }
  if (shards > 1)
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
    );
  return rounded;
}

/** A tokenizer.json in the style of Qwen2's (NFC normalizer, Split + ByteLevel pre-tokenizer), which PSM Lab's BPE declines. */
function qwenStyleTokenizerJson(): Record<string, unknown> {
  const json = tokenizerToJson(tokenizer) as Record<string, unknown>;
  return {
    ...json,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex: String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
          },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
  };
}

describe('chat template', () => {
  const conversations: ChatMessage[][] = [
    [{ role: 'user', content: 'What is two plus two?' }],
    [
      { role: 'system', content: 'The Assistant is an AI system that answers questions.' },
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: "Can you help me plan a trip? It's in May." },
    ],
  ];

  it('the Jinja template renders exactly what formatChat writes (HF apply_chat_template semantics)', () => {
    const template = new Template(PSM_CHAT_TEMPLATE);
    for (const messages of conversations) {
      for (const addGenerationPrompt of [true, false]) {
        const rendered = template.render({
          messages,
          bos_token: EOT,
          eos_token: EOT,
          add_generation_prompt: addGenerationPrompt,
        });
        expect(rendered).toBe(formatChat(messages, { addGenerationPrompt }));
      }
    }
    expect(formatChat(conversations[0])).toBe(`${EOT}User: What is two plus two?\nAssistant:`);
    expect(() =>
      template.render({
        messages: [{ role: 'tool', content: 'x' }],
        bos_token: EOT,
        add_generation_prompt: true,
      }),
    ).toThrow(/unsupported role/);
  });
});

describe('Hugging Face export', () => {
  it('writes a complete HF folder: config, safetensors, tokenizer files, chat template, generation config', () => {
    const dir = tmp();
    const m = model({ tieEmbeddings: false });
    const r = exportHfFolder(m, tokenizer, dir);
    for (const f of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'generation_config.json',
    ]) {
      expect(fs.existsSync(path.join(dir, f)), f).toBe(true);
    }
    expect(r.files.length).toBe(6);
    const config = readJson(path.join(dir, 'config.json'));
    expect(config).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 32,
      num_key_value_heads: 2,
      tie_word_embeddings: false,
      bos_token_id: 0,
      eos_token_id: 0,
    });
    const tc = readJson(path.join(dir, 'tokenizer_config.json'));
    expect(tc).toMatchObject({
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: EOT,
      eos_token: EOT,
      chat_template: PSM_CHAT_TEMPLATE,
      add_bos_token: false,
    });
    expect(readJson(path.join(dir, 'generation_config.json'))).toMatchObject({
      bos_token_id: 0,
      eos_token_id: 0,
      do_sample: false,
    });
    // The tokenizers library reads tokenizer.json to the same ids as PSM Lab.
    const hf = new HfJsTokenizer(readJson(path.join(dir, 'tokenizer.json')), tc);
    for (const d of CHAT_DOCS)
      expect(hf.encode(`${EOT}${d}`, { add_special_tokens: true }).ids).toEqual(
        tokenizer.encode(`${EOT}${d}`),
      );
    expect(() =>
      exportHfFolder(new LlamaModel(tinyConfig(tokenizer, { vocabSize: 100 })), tokenizer, tmp()),
    ).toThrow(/tokenizer has 360 tokens/);
    const withLora = model();
    withLora.addLora(2, ['q_proj'], 1);
    expect(() => exportHfFolder(withLora, tokenizer, tmp())).toThrow(/LoRA/);
  });

  it('round-trips: export then import gives bit-identical weights, config and tokenizer', () => {
    for (const overrides of [
      {},
      { tieEmbeddings: false },
      { qkvBias: true, tieEmbeddings: false, nKvHeads: 1 },
    ]) {
      const m = model(overrides);
      const dir = tmp();
      exportHfFolder(m, tokenizer, dir);
      const r = importHfFolder(dir);
      expect(r.config).toEqual(m.config);
      expect(r.architecture).toBe(m.config.qkvBias ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM');
      expect(r.dtypes).toEqual(['F32']);
      expect(r.tokenizer?.kind).toBe('psm');
      expect(r.warnings).toEqual([]);
      sameWeights(m, r.model);
      expect(r.tokenizer!.tokenizer.encode(CHAT_DOCS[1])).toEqual(tokenizer.encode(CHAT_DOCS[1]));
    }
  });

  it('keeps a template that lives only in chat_template.jinja through psm import', () => {
    const dir = tmp();
    exportHfFolder(model(), tokenizer, dir);
    const config = readJson(path.join(dir, 'tokenizer_config.json'));
    delete config.chat_template;
    // ChatML: any template but PSM Lab's own, which the folder reader recognises as the PSM format.
    const source =
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    fs.writeFileSync(path.join(dir, CHAT_TEMPLATE_FILE), source);
    const out = tmp();
    importHfToModelFolder(dir, out);
    expect(fs.readFileSync(path.join(out, CHAT_TEMPLATE_FILE), 'utf8')).toBe(source);
    const chat = chatTemplateForFolder(out);
    expect(chat.kind).toBe('jinja');
    expect(chat.render([{ role: 'user', content: 'Hi' }])).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('round-trips through GGUF too (export gguf, import the .gguf file)', () => {
    const m = model({ tieEmbeddings: false });
    const dir = tmp();
    const file = path.join(dir, 'm.gguf');
    writeGgufFile(file, m, tokenizer);
    const out = path.join(dir, 'imported');
    const s = importModel(file, out);
    expect(s).toMatchObject({ kind: 'gguf', architecture: 'llama', tokenizer: 'psm', dtypes: ['F32'] });
    sameWeights(m, loadModelFolder(out));
    expect(loadFolderTokenizer(out).tokenizer.encode(CHAT_DOCS[0])).toEqual(tokenizer.encode(CHAT_DOCS[0]));
  });
});

describe('Hugging Face import of a Qwen2-shaped model (biases, grouped-query attention, untied head)', () => {
  const qwenConfig = {
    qkvBias: true,
    tieEmbeddings: false,
    nHeads: 4,
    nKvHeads: 1,
    ropeTheta: 1000000,
    normEps: 1e-6,
  };

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`imports ${dtype} weights from a sharded checkpoint exactly (values as stored)`, () => {
      const m = model(qwenConfig, 9);
      const dir = tmp();
      const rounded = writeQwenFolder(dir, m, dtype);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerToJson(tokenizer)));
      const r = importHfFolder(dir);
      expect(r.modelType).toBe('qwen2');
      expect(r.config).toMatchObject({
        qkvBias: true,
        tieEmbeddings: false,
        nKvHeads: 1,
        ropeTheta: 1000000,
      });
      expect(r.dtypes).toEqual([dtype]);
      expect(r.weightFiles).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      for (const [name, values] of rounded)
        expect(Buffer.from(r.model.param(name).data.buffer).equals(Buffer.from(values.buffer)), name).toBe(
          true,
        );
      const tol = dtype === 'F32' ? 0 : dtype === 'F16' ? 1e-3 : 1e-2;
      expect(
        maxAbsDiff(r.model.param('lm_head.weight').data, m.param('lm_head.weight').data),
      ).toBeLessThanOrEqual(tol);
    });
  }

  it('the imported model runs with hooks: steering changes generation, no steering reproduces the source', () => {
    const m = model(qwenConfig, 9);
    const dir = tmp();
    writeQwenFolder(dir, m, 'F32', 1);
    const r = importHfFolder(dir);
    const prompt = tokenizer.encode(formatChat([{ role: 'user', content: 'What is two plus two?' }]));
    const plain = generate(r.model, prompt, { maxNewTokens: 8, temperature: 0 });
    expect(plain).toEqual(generate(m, prompt, { maxNewTokens: 8, temperature: 0 }));
    const v = new Float32Array(32).map((_, i) => (i % 2 ? 1 : -1));
    const hooks = new HookSet().add('blocks.1.hook_resid_post', addVectorHook(v, 40));
    expect(generate(r.model, prompt, { maxNewTokens: 8, temperature: 0, hooks })).not.toEqual(plain);
    noGrad(() =>
      expect(
        maxAbsDiff(
          r.model.forward(Int32Array.from(prompt), 1).data,
          m.forward(Int32Array.from(prompt), 1).data,
        ),
      ).toBeLessThan(1e-6),
    );
  });

  it('reads a Qwen2-style tokenizer.json through @huggingface/tokenizers when PSM Lab BPE declines it', () => {
    const m = model(qwenConfig, 9);
    const dir = tmp();
    writeQwenFolder(dir, m, 'BF16');
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(qwenStyleTokenizerJson()));
    fs.writeFileSync(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify({ chat_template: '{{ messages }}', eos_token: EOT }),
    );
    const r = importHfFolder(dir);
    expect(r.tokenizer?.kind).toBe('hf-js');
    expect(r.tokenizer?.note).toMatch(/normalizer/);
    const t = r.tokenizer!.tokenizer;
    expect(t.vocabSize).toBe(tokenizer.vocabSize);
    expect(t.specialTokens).toEqual([EOT]);
    for (const d of CHAT_DOCS) {
      expect(t.encode(`${EOT}${d}`)).toEqual(tokenizer.encode(`${EOT}${d}`));
      expect(t.decode(tokenizer.encode(d))).toBe(d);
    }
    expect(t.tokenToId(EOT)).toBe(0);
    // The output folder keeps the tokenizer files verbatim and records the provenance.
    const out = path.join(dir, 'psm');
    importHfToModelFolder(dir, out);
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe(
      fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'),
    );
    expect(readJson(path.join(out, 'psm-import.json'))).toMatchObject({
      architecture: 'Qwen2ForCausalLM',
      sourceDtypes: ['BF16'],
      tokenizer: 'hf-js',
    });
    const back = loadModelFolder(out);
    for (const [name, t2] of r.model.params)
      expect(Buffer.from(back.param(name).data.buffer).equals(Buffer.from(t2.data.buffer))).toBe(true);
  });
});

describe('Hugging Face import: bad input gets a clear error', () => {
  function folder(overrides: Record<string, unknown> = {}): { dir: string; m: LlamaModel } {
    const m = model();
    const dir = tmp();
    exportHfFolder(m, tokenizer, dir);
    if (Object.keys(overrides).length)
      fs.writeFileSync(
        path.join(dir, 'config.json'),
        JSON.stringify({ ...readJson(path.join(dir, 'config.json')), ...overrides }),
      );
    return { dir, m };
  }

  it('unsupported architectures and features, by file and field', () => {
    expect(() =>
      importHfFolder(folder({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }).dir),
    ).toThrow(
      /config\.json: unsupported architecture GPT2LMHeadModel with model_type "gpt2"; supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM/,
    );
    expect(() => importHfFolder(folder({ architectures: ['MixtralForCausalLM'] }).dir)).toThrow(
      /unsupported architecture MixtralForCausalLM/,
    );
    expect(() => importHfFolder(folder({ rope_scaling: { rope_type: 'yarn', factor: 4 } }).dir)).toThrow(
      /rope_scaling .*yarn.* is not supported/,
    );
    expect(() => importHfFolder(folder({ num_local_experts: 8 }).dir)).toThrow(
      /num_local_experts 8: mixture-of-experts/,
    );
    expect(() => importHfFolder(folder({ hidden_act: 'gelu' }).dir)).toThrow(/hidden activation "gelu"/);
    // A head size other than hidden / heads is read; these weights do not have it.
    expect(() => importHfFolder(folder({ head_dim: 16 }).dir)).toThrow(
      /k_proj\.weight" has shape \[16,32\], config\.json needs \[32,32\]/,
    );
    expect(() => importHfFolder(folder({ attention_bias: true }).dir)).toThrow(/o_proj bias/);
    expect(() => importHfFolder(folder({ num_key_value_heads: 3 }).dir)).toThrow(/nKvHeads/);
    expect(importHfFolder(folder({ rope_scaling: { rope_type: 'default' } }).dir).config.dim).toBe(32);
  });

  it('missing, misshapen, unexpected or non-finite tensors', () => {
    const { dir, m } = folder();
    const w = (tensors: Map<string, { data: Float32Array; shape: number[] }>) =>
      fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(tensors, 'F32').bytes);
    const all = () =>
      new Map([...m.params].map(([n, t]) => [n, { data: Float32Array.from(t.data), shape: [...t.shape] }]));
    const less = all();
    less.delete('model.layers.1.mlp.up_proj.weight');
    w(less);
    expect(() => importHfFolder(dir)).toThrow(/tensor\(s\) missing .*model\.layers\.1\.mlp\.up_proj\.weight/);
    const wrong = all();
    wrong.set('model.norm.weight', { data: new Float32Array(16), shape: [16] });
    w(wrong);
    expect(() => importHfFolder(dir)).toThrow(
      /model\.safetensors: tensor "model\.norm\.weight" has shape \[16\], config\.json needs \[32\]/,
    );
    const extra = all();
    extra.set('model.layers.0.mlp.gate_proj.bias', { data: new Float32Array(64), shape: [64] });
    w(extra);
    expect(() => importHfFolder(dir)).toThrow(/unexpected tensor "model\.layers\.0\.mlp\.gate_proj\.bias"/);
    const nan = all();
    nan.get('model.norm.weight')!.data[3] = NaN;
    w(nan);
    expect(() => importHfFolder(dir)).toThrow(/"model\.norm\.weight" contains NaN at index 3/);
  });

  it('truncated or lying safetensors, a lying shard index, pickle-only folders', () => {
    const { dir } = folder();
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    expect(() => importHfFolder(dir)).toThrow(/model\.safetensors: .*(exceed|truncated)/);
    fs.writeFileSync(file, bytes);

    const m = model({ qkvBias: true, tieEmbeddings: false });
    const q = tmp();
    writeQwenFolder(q, m, 'BF16');
    const indexPath = path.join(q, 'model.safetensors.index.json');
    const index = readJson(indexPath) as { weight_map: Record<string, string> };
    const moved = { ...index.weight_map, 'model.norm.weight': 'model-00001-of-00002.safetensors' };
    const lying = Object.values(index.weight_map).filter(
      (f) => f !== index.weight_map['model.norm.weight'],
    )[0];
    expect(lying).toBe('model-00001-of-00002.safetensors');
    fs.writeFileSync(indexPath, JSON.stringify({ weight_map: moved }));
    expect(() => importHfFolder(q)).toThrow(
      /model-00002-of-00002\.safetensors: tensor "model\.norm\.weight" is listed .* under shard model-00001/,
    );
    fs.writeFileSync(
      indexPath,
      JSON.stringify({
        weight_map: { ...index.weight_map, 'model.norm.weight': 'model-00003-of-00003.safetensors' },
      }),
    );
    expect(() => importHfFolder(q)).toThrow(
      /shard model-00003-of-00003\.safetensors is listed but .* does not exist/,
    );
    fs.writeFileSync(
      indexPath,
      JSON.stringify({ weight_map: { ...index.weight_map, 'model.norm.weight': '../../etc/passwd' } }),
    );
    expect(() => importHfFolder(q)).toThrow(/must be a file inside the folder/);

    const pickle = tmp();
    fs.writeFileSync(path.join(pickle, 'config.json'), JSON.stringify(toHfConfig(m.config)));
    fs.writeFileSync(path.join(pickle, 'pytorch_model.bin'), 'not really');
    expect(() => importHfFolder(pickle)).toThrow(/pytorch_model\.bin.*convert them to safetensors/);
    expect(() => importHfFolder(path.join(pickle, 'nope'))).toThrow(/not a folder/);
    expect(() => importHfFolder(tmp())).toThrow(/config\.json: not found/);
  });

  it('a quantized dtype in a safetensors file is refused with the tensor named', () => {
    const { dir } = folder();
    const header = { 'model.norm.weight': { dtype: 'I8', shape: [32], data_offsets: [0, 32] } };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, json, Buffer.alloc(32)]));
    expect(() => importHfFolder(dir)).toThrow(/tensor 'model\.norm\.weight': dtype I8 is not supported/);
  });
});

describe('psm export / psm import commands', () => {
  async function run(args: string[]): Promise<string> {
    const program = new Command().exitOverride();
    registerInteropCommands(program);
    let out = '';
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => {
      out += chunk;
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(['node', 'psm', ...args]);
    } finally {
      process.stdout.write = write;
    }
    return out;
  }

  it('exports a model folder to HF and GGUF and imports both back', async () => {
    const m = model({ tieEmbeddings: false });
    const dir = tmp();
    const src = path.join(dir, 'model');
    saveModelFolder(src, m, { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) });
    expect(await run(['export', '--model', src, '--format', 'hf', '--out', path.join(dir, 'hf')])).toMatch(
      /as a Hugging Face folder \(LlamaForCausalLM/,
    );
    expect(
      await run(['export', '--model', src, '--format', 'gguf', '--out', path.join(dir, 'm.gguf')]),
    ).toMatch(/as GGUF \(llama[\s\S]*-p \$'User: Hello/);
    expect(await run(['import', '--from', path.join(dir, 'hf'), '--out', path.join(dir, 'back-hf')])).toMatch(
      /imported LlamaForCausalLM .* stored F32/,
    );
    expect(
      await run(['import', '--from', path.join(dir, 'm.gguf'), '--out', path.join(dir, 'back-gguf')]),
    ).toMatch(/imported llama/);
    sameWeights(m, loadModelFolder(path.join(dir, 'back-hf')));
    sameWeights(m, loadModelFolder(path.join(dir, 'back-gguf')));
    await expect(
      run(['export', '--model', src, '--format', 'onnx', '--out', path.join(dir, 'x')]),
    ).rejects.toThrow(/--format must be hf or gguf/);
    await expect(
      run(['export', '--model', src, '--format', 'gguf', '--dtype', 'q4', '--out', path.join(dir, 'x')]),
    ).rejects.toThrow(/--dtype must be f32 or f16/);
    const f16 = exportModelFolder(src, 'gguf', path.join(dir, 'h.gguf'), { dtype: 'F16' });
    expect(f16.bytes).toBeLessThan(fs.statSync(path.join(dir, 'm.gguf')).size);
  });
});
