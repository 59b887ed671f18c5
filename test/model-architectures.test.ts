/**
 * The newer architectures inside the engine: gradients (against finite differences), incremental decoding
 * past Gemma's sliding window, hooks and steering, LoRA training and merging, and Hugging Face folders written
 * the way transformers writes each family (their config.json fields, BF16 shards) read back as the same model.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { crossEntropy } from '../src/autograd/ops.ts';
import { noGrad, Tensor } from '../src/autograd/tensor.ts';
import { importHfFolder } from '../src/interop/hf-import.ts';
import { writeSafetensorsSync } from '../src/io/safetensors.ts';
import { fromHfConfig, toHfConfig, type LlamaConfig } from '../src/model/config.ts';
import { addVectorHook, HookSet, recordHook } from '../src/model/hooks.ts';
import { KvCache, LlamaModel } from '../src/model/llama.ts';
import { loadModelFolder, saveModelFolder } from '../src/model/weights.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { TokenWindowSource } from '../src/training/data.ts';
import { Trainer } from '../src/training/trainer.ts';
import { ARCHITECTURE_CASES, caseConfig, randomModel } from './architecture-fixtures.ts';
import { encodeSafetensors, maxAbsDiff } from './interop-fixtures.ts';

configureBackend();
const VOCAB = 40;
const NAMES = Object.keys(ARCHITECTURE_CASES);
const ids = Int32Array.from({ length: 14 }, (_, i) => (i * 7 + 3) % VOCAB);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-arch-'));

function model(name: string, seed = 5): LlamaModel {
  const m = randomModel(caseConfig(name, VOCAB), seed);
  for (const t of m.params.values()) t.requiresGrad = true;
  return m;
}

function loss(m: LlamaModel): number {
  return noGrad(() => lossTensor(m).data[0]);
}

function lossTensor(m: LlamaModel) {
  const logits = m.forward(ids.subarray(0, -1), 1);
  return crossEntropy(logits, ids.subarray(1));
}

describe.each(NAMES)('%s in the engine', (name) => {
  it('gradients agree with finite differences, the new parameters included', () => {
    const m = model(name);
    m.params.forEach((t) => (t.grad = null));
    lossTensor(m).backward();
    const probe = [...m.params.keys()].filter((n) =>
      /embed_tokens|layers\.0\.(input_layernorm|self_attn\.(q|k)_norm|self_attn\.q_proj\.(weight|bias)|post_feedforward_layernorm|mlp\.gate_proj)|layers\.5\.self_attn\.k_proj\.weight|model\.norm/.test(
        n,
      ),
    );
    expect(probe.length).toBeGreaterThanOrEqual(4);
    for (const n of probe) {
      const t = m.param(n);
      const i = (n.length * 7) % t.size;
      const analytic = t.grad![i];
      const h = 1e-2;
      const w = t.data[i];
      t.data[i] = w + h;
      const up = loss(m);
      t.data[i] = w - h;
      const down = loss(m);
      t.data[i] = w;
      const numeric = (up - down) / (2 * h);
      expect(Math.abs(analytic - numeric), `${n}[${i}]: ${analytic} vs ${numeric}`).toBeLessThan(
        2e-3 + 0.03 * Math.abs(numeric),
      );
    }
  });

  it('incremental decoding with a KV cache reproduces the full pass', () => {
    const m = model(name);
    noGrad(() => {
      const full = m.forward(ids, 1).data;
      const cache = new KvCache(m.config, 1, 32);
      const parts = [m.forward(ids.subarray(0, 6), 1, { cache }).data];
      for (let t = 6; t < ids.length; t++) parts.push(m.forward(ids.subarray(t, t + 1), 1, { cache }).data);
      const stepped = new Float32Array(full.length);
      let o = 0;
      for (const p of parts) {
        stepped.set(p, o);
        o += p.length;
      }
      expect(maxAbsDiff(stepped, full)).toBeLessThan(1e-4);
    });
  });

  it('hooks read and steer the residual stream; resuming from a layer gives the same numbers', () => {
    const m = model(name);
    noGrad(() => {
      const base = m.forward(ids, 1).data;
      let seen: Float32Array | null = null;
      const rec = new HookSet().add(
        'blocks.0.hook_resid_post',
        recordHook((d) => (seen = Float32Array.from(d))),
      );
      expect(maxAbsDiff(m.forward(ids, 1, { hooks: rec }).data, base)).toBe(0);
      expect(seen!.length).toBe(ids.length * m.config.dim);
      const direction = Float32Array.from({ length: m.config.dim }, (_, i) => Math.cos(i));
      const steered = m.forward(ids, 1, {
        hooks: new HookSet().add('blocks.0.hook_resid_post', addVectorHook(direction, 4)),
      }).data;
      expect(maxAbsDiff(steered, base)).toBeGreaterThan(1e-2);
      const hidden = new Tensor(seen!, [1, ids.length, m.config.dim]);
      const resumed = m.forward(ids, 1, { resume: { afterLayer: 0, hidden } }).data;
      expect(maxAbsDiff(resumed, base)).toBeLessThan(1e-5);
    });
  });

  it('LoRA trains only its adapters, lowers the loss, and merges into the same model', () => {
    const m = model(name, 9);
    const before = new Map([...m.params].map(([n, t]) => [n, Float32Array.from(t.data)]));
    const stream = Int32Array.from({ length: 400 }, (_, i) => (i * 3) % VOCAB);
    const start = noGrad(() => {
      const l = m.forward(stream.subarray(0, 16), 1);
      return crossEntropy(l, stream.subarray(1, 17)).data[0];
    });
    new Trainer(m, new TokenWindowSource(stream, 4, 16, 3), {
      schedule: { peakLr: 2e-2, minLr: 2e-2, warmupSteps: 0, totalSteps: 12 },
      trainable: { kind: 'lora', rank: 2, targets: ['q_proj', 'v_proj', 'up_proj', 'down_proj'] },
      seed: 3,
    }).run();
    for (const [n, t] of m.params) expect(maxAbsDiff(t.data, before.get(n)!), n).toBe(0);
    const adapted = noGrad(() => m.forward(stream.subarray(0, 16), 1));
    expect(crossEntropy(adapted, stream.subarray(1, 17)).data[0]).toBeLessThan(start);
    m.mergeLora();
    expect(
      maxAbsDiff(
        noGrad(() => m.forward(stream.subarray(0, 16), 1).data),
        adapted.data,
      ),
    ).toBeLessThan(1e-4);
  });

  it('a saved model folder loads back as the same model, its config.json the family of transformers', () => {
    const m = model(name);
    const dir = path.join(tmp, `saved-${name}`);
    saveModelFolder(dir, m);
    const back = loadModelFolder(dir);
    expect(back.config).toEqual(m.config);
    expect(
      maxAbsDiff(
        noGrad(() => back.forward(ids, 1).data),
        noGrad(() => m.forward(ids, 1).data),
      ),
    ).toBe(0);
    expect(fromHfConfig(toHfConfig(m.config))).toEqual(m.config);
  });
});

/** config.json as transformers writes it for each family's real small model (fields and values as published), resized. */
function realStyleConfig(name: string, c: LlamaConfig): Record<string, unknown> {
  const shape = {
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    intermediate_size: c.hiddenDim,
    max_position_embeddings: c.maxSeqLen,
    torch_dtype: 'bfloat16',
  };
  if (name === 'llama3')
    return {
      architectures: ['LlamaForCausalLM'],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 128000,
      eos_token_id: 128001,
      head_dim: c.dim / c.nHeads,
      hidden_act: 'silu',
      initializer_range: 0.02,
      mlp_bias: false,
      model_type: 'llama',
      pretraining_tp: 1,
      rms_norm_eps: 1e-5,
      rope_scaling: {
        factor: 32.0,
        high_freq_factor: 4.0,
        low_freq_factor: 1.0,
        original_max_position_embeddings: 8192,
        rope_type: 'llama3',
      },
      rope_theta: 500000.0,
      tie_word_embeddings: true,
      transformers_version: '4.45.0.dev0',
      use_cache: true,
      ...shape,
    };
  if (name === 'qwen3')
    return {
      architectures: ['Qwen3ForCausalLM'],
      attention_bias: false,
      attention_dropout: 0.0,
      bos_token_id: 151643,
      eos_token_id: 151645,
      head_dim: c.headDim,
      hidden_act: 'silu',
      initializer_range: 0.02,
      max_window_layers: 28,
      model_type: 'qwen3',
      rms_norm_eps: 1e-6,
      rope_scaling: null,
      rope_theta: 1000000,
      sliding_window: null,
      tie_word_embeddings: true,
      transformers_version: '4.51.0',
      use_cache: true,
      use_sliding_window: false,
      ...shape,
    };
  if (name === 'gemma3')
    return {
      architectures: ['Gemma3ForCausalLM'],
      attention_bias: false,
      attention_dropout: 0.0,
      attn_logit_softcapping: null,
      bos_token_id: 2,
      cache_implementation: 'hybrid',
      eos_token_id: [1, 106],
      final_logit_softcapping: null,
      head_dim: c.headDim,
      hidden_activation: 'gelu_pytorch_tanh',
      initializer_range: 0.02,
      model_type: 'gemma3_text',
      pad_token_id: 0,
      query_pre_attn_scalar: c.queryPreAttnScalar,
      rms_norm_eps: 1e-6,
      rope_local_base_freq: 10000,
      rope_scaling: null,
      rope_theta: 1000000,
      sliding_window: c.slidingWindow,
      sliding_window_pattern: 6,
      transformers_version: '4.50.0.dev0',
      use_cache: true,
      ...shape,
    };
  throw new Error(name);
}

describe('Hugging Face folders of the real families', () => {
  it.each(['llama3', 'qwen3', 'gemma3'])('%s: config.json and BF16 shards import as the model', (name) => {
    const m = model(name);
    const dir = path.join(tmp, `hf-${name}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(realStyleConfig(name, m.config)));
    const names = [...m.params.keys()];
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    [names.slice(0, half), names.slice(half)].forEach((part, s) => {
      const file = `model-0000${s + 1}-of-00002.safetensors`;
      const tensors = new Map(part.map((n) => [n, { data: m.param(n).data, shape: [...m.param(n).shape] }]));
      fs.writeFileSync(path.join(dir, file), encodeSafetensors(tensors, 'BF16').bytes);
      for (const n of part) weightMap[n] = file;
    });
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: weightMap }),
    );
    const r = importHfFolder(dir, { skipTokenizer: true });
    expect(r.config).toEqual(m.config);
    expect(r.dtypes).toEqual(['BF16']);
    // BF16 keeps 8 bits of mantissa: the imported weights are the originals rounded.
    for (const [n, t] of m.params) expect(maxAbsDiff(r.model.param(n).data, t.data), n).toBeLessThan(0.01);
  });

  it('a multimodal Gemma 3 folder imports its language model and skips the vision tower', () => {
    const m = model('gemma3');
    const dir = path.join(tmp, 'hf-gemma3-multimodal');
    fs.mkdirSync(dir, { recursive: true });
    const text = realStyleConfig('gemma3', m.config);
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        architectures: ['Gemma3ForConditionalGeneration'],
        model_type: 'gemma3',
        text_config: { ...text, architectures: undefined },
        vision_config: { model_type: 'siglip_vision_model', hidden_size: 8 },
      }),
    );
    const tensors = new Map(
      [...m.params].map(([n, t]) => [
        n.replace(/^model\./, 'language_model.model.'),
        { data: t.data, shape: [...t.shape] },
      ]),
    );
    tensors.set('vision_tower.vision_model.post_layernorm.weight', { data: new Float32Array(8), shape: [8] });
    writeSafetensorsSync(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const r = importHfFolder(dir, { skipTokenizer: true });
    expect(r.architecture).toBe('Gemma3ForConditionalGeneration');
    expect(r.config).toEqual(m.config);
    for (const [n, t] of m.params) expect(maxAbsDiff(r.model.param(n).data, t.data), n).toBe(0);
  });

  it('refuses, by name, what the engine does not run', () => {
    const c = caseConfig('gemma3', VOCAB);
    const gemma = realStyleConfig('gemma3', c);
    expect(() => fromHfConfig({ ...gemma, attn_logit_softcapping: 50 }, 'g/config.json')).toThrow(
      /g\/config\.json: attn_logit_softcapping 50 is not supported/,
    );
    expect(() => fromHfConfig({ ...gemma, hidden_activation: 'gelu' }, 'g/config.json')).toThrow(
      /hidden activation "gelu" is not supported for gemma3_text/,
    );
    const llama = realStyleConfig('llama3', caseConfig('llama3', VOCAB));
    expect(() =>
      fromHfConfig({ ...llama, rope_scaling: { rope_type: 'dynamic', factor: 2 } }, 'l/config.json'),
    ).toThrow(/rope_scaling .*dynamic.* is not supported/);
    const qwen = realStyleConfig('qwen3', caseConfig('qwen3', VOCAB));
    expect(() => fromHfConfig({ ...qwen, attention_bias: true }, 'q/config.json')).toThrow(
      /q\/config\.json: attention_bias true on a Qwen3/,
    );
  });
});
