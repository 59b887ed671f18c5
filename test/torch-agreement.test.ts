/**
 * Correctness against a peer. test/fixtures/torch-reference/<case>/ holds a small exported model folder,
 * its inputs and PyTorch's logits, loss and gradients for them (float64 PyTorch, stored as float32), made by
 * `npx tsx scripts/make-torch-reference.ts --write`. Here the engine loads each folder, runs forward and
 * backward, and must agree with the committed reference to a relative error below 1e-4, where for a tensor
 * a (ours) against b (PyTorch) the relative error is max|a - b| / max(max|b|, 1e-12).
 *
 * Where /usr/bin/python3 (or $PSM_PYTHON) imports torch, the comparison also runs live; skipped otherwise,
 * so CI needs no PyTorch.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsSync } from '../src/io/safetensors.ts';
import { loadModelFolder } from '../src/model/weights.ts';
import { JsMatmulBackend, setMatmulBackend } from '../src/tensor/matmul.ts';
import { OrtMatmulBackend, ortAvailable } from '../src/tensor/ort-matmul.ts';
import {
  CASES,
  FIXTURE_DIR,
  TOLERANCE,
  compare,
  relativeError,
  runEngine,
  runTorch,
  torchAvailable,
  type Inputs,
} from '../scripts/make-torch-reference.ts';

function fixture(name: string) {
  const dir = path.join(FIXTURE_DIR, name);
  const inputs = JSON.parse(fs.readFileSync(path.join(dir, 'inputs.json'), 'utf8')) as Inputs;
  const expected = readSafetensorsSync(path.join(dir, 'expected.safetensors')).tensors;
  return { dir, inputs, expected };
}

describe('relativeError', () => {
  it('is the largest absolute difference over the reference scale', () => {
    expect(relativeError([1, 2, 3], [1, 2, 4])).toBeCloseTo(0.25, 12);
    expect(relativeError([0, 0], [0, 0])).toBe(0);
    expect(relativeError([NaN], [1])).toBeNaN();
  });
});

const backends = ['js', ...(ortAvailable() ? ['ort'] : [])] as const;

describe.each(backends)('agreement with committed PyTorch references (%s matmul)', (backend) => {
  beforeAll(() => setMatmulBackend(backend === 'js' ? new JsMatmulBackend() : new OrtMatmulBackend(2)));

  it.each(CASES.map((c) => c.name))('%s: logits, loss and every gradient within 1e-4', (name) => {
    const { dir, inputs, expected } = fixture(name);
    const model = loadModelFolder(dir);
    const ours = runEngine(model, inputs);
    const cmp = compare(ours, expected, dir);
    // Every parameter has a reference gradient and vice versa.
    const refGrads = [...expected.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
    expect(refGrads.sort()).toEqual([...model.params.keys()].sort());
    expect(cmp.logits).toBeLessThan(TOLERANCE);
    expect(cmp.loss).toBeLessThan(TOLERANCE);
    for (const [param, err] of cmp.grads) expect(err, `gradient of ${param}`).toBeLessThan(TOLERANCE);
  });
});

describe('the fixtures exercise what they claim', () => {
  it('cover GQA with tied embeddings and masked, weighted loss; and q/k/v biases with an untied head', () => {
    const llama = loadModelFolder(path.join(FIXTURE_DIR, 'llama-gqa-tied')).config;
    expect(llama.nKvHeads).toBeLessThan(llama.nHeads);
    expect(llama.tieEmbeddings).toBe(true);
    const llamaInputs = fixture('llama-gqa-tied').inputs;
    expect(
      llamaInputs.weights?.some((w) => w === 0) && llamaInputs.weights?.some((w) => w !== 0 && w !== 1),
    ).toBe(true);
    const qwen = loadModelFolder(path.join(FIXTURE_DIR, 'qwen2-bias-untied'));
    expect(qwen.config.qkvBias).toBe(true);
    expect(qwen.config.tieEmbeddings).toBe(false);
    expect(qwen.params.has('lm_head.weight')).toBe(true);
  });

  it('a wrong model disagrees: perturbing one bias by 1e-2 breaks the tolerance', () => {
    const { dir, inputs, expected } = fixture('qwen2-bias-untied');
    const model = loadModelFolder(dir);
    model.param('model.layers.1.self_attn.k_proj.bias').data[0] += 1e-2;
    setMatmulBackend(new JsMatmulBackend());
    const cmp = compare(runEngine(model, inputs), expected, dir);
    expect(Math.max(cmp.logits, cmp.worstGrad.error)).toBeGreaterThan(TOLERANCE);
  });
});

const hasTorch = torchAvailable();

describe.skipIf(!hasTorch)('live agreement with PyTorch (system python3-torch)', () => {
  let tmp = '';
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-torch-live-'));
    setMatmulBackend(new JsMatmulBackend());
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it.each(CASES.map((c) => c.name))(
    '%s: engine vs live PyTorch, and live PyTorch vs the committed reference',
    (name) => {
      const { dir, inputs, expected } = fixture(name);
      const live = runTorch(dir, path.join(dir, 'inputs.json'), path.join(tmp, `${name}.safetensors`));
      for (const [key, t] of live)
        expect(relativeError(expected.get(key)!.data, t.data), key).toBeLessThan(TOLERANCE);
      const cmp = compare(runEngine(loadModelFolder(dir), inputs), live, dir);
      expect(cmp.logits).toBeLessThan(TOLERANCE);
      expect(cmp.loss).toBeLessThan(TOLERANCE);
      expect(cmp.worstGrad.error).toBeLessThan(TOLERANCE);
    },
  );
});
