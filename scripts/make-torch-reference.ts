/**
 * Correctness against a peer: builds small Llama-family models with the engine, exports them as Hugging Face
 * model folders, rebuilds each in PyTorch (scripts/torch_reference.py, run by Debian's system python3 with
 * python3-torch) and compares logits, the weighted mean cross-entropy and every parameter's gradient.
 *
 *   npx tsx scripts/make-torch-reference.ts --check   compare live against PyTorch (default; writes nothing)
 *   npx tsx scripts/make-torch-reference.ts --write   also (re)write test/fixtures/torch-reference/, the
 *                                                     committed references test/torch-agreement.test.ts uses
 * Options: --dtype float64|float32 (PyTorch's compute precision for --check; --write always uses float64),
 *          --backend js|ort (the engine's matmul backend; default as configureBackend chooses),
 *          --python PATH (default $PSM_PYTHON or /usr/bin/python3).
 *
 * Relative error of a tensor a (engine) against b (PyTorch): max_i |a_i - b_i| / max(max_i |b_i|, 1e-12),
 * i.e. the largest absolute difference scaled by the reference's largest magnitude. Agreement means < 1e-4
 * for the logits, the loss and each gradient tensor. Exit status 1 when any comparison fails.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLlamaConfig, type LlamaConfigInput } from '../src/model/config.ts';
import { LlamaModel } from '../src/model/llama.ts';
import { loadModelFolder, saveModelFolder } from '../src/model/weights.ts';
import { readSafetensorsSync, writeSafetensorsSync, type TensorData } from '../src/io/safetensors.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { Rng } from '../src/tensor/random.ts';
import { batchLoss } from '../src/training/trainer.ts';
import type { Batch } from '../src/training/data.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURE_DIR = path.join(ROOT, 'test', 'fixtures', 'torch-reference');
export const PY_SCRIPT = path.join(ROOT, 'scripts', 'torch_reference.py');
export const TOLERANCE = 1e-4;

interface Case {
  name: string;
  config: LlamaConfigInput;
  seed: number;
  batch: number;
  seqLen: number;
  /** 'mixed': masked tokens and non-unit weights (the weighted path of batchLoss); 'none': every token weighs 1. */
  weights: 'mixed' | 'none';
}

export const CASES: Case[] = [
  {
    // Llama with grouped-query attention (2 query heads per kv head) and tied embeddings.
    name: 'llama-gqa-tied',
    config: {
      vocabSize: 48,
      dim: 32,
      nLayers: 2,
      nHeads: 4,
      nKvHeads: 2,
      hiddenDim: 40,
      normEps: 1e-5,
      ropeTheta: 10000,
      tieEmbeddings: true,
      qkvBias: false,
      maxSeqLen: 32,
    },
    seed: 101,
    batch: 2,
    seqLen: 9,
    weights: 'mixed',
  },
  {
    // Qwen2-shaped: q/k/v biases, untied lm_head, one kv head (multi-query), Qwen's rope theta and epsilon.
    name: 'qwen2-bias-untied',
    config: {
      vocabSize: 40,
      dim: 32,
      nLayers: 2,
      nHeads: 4,
      nKvHeads: 1,
      hiddenDim: 48,
      normEps: 1e-6,
      ropeTheta: 1_000_000,
      tieEmbeddings: false,
      qkvBias: true,
      maxSeqLen: 32,
    },
    seed: 202,
    batch: 3,
    seqLen: 7,
    weights: 'none',
  },
];

export interface Inputs {
  batch: number;
  seq_len: number;
  ids: number[];
  targets: number[];
  weights: number[] | null;
}

/**
 * The case's model with weights far from the 0.02-std training initialisation, so attention is peaked,
 * logits spread over several units, norm gains and biases differ from 1 and 0: every term of the gradient
 * matters. Deterministic from the case's seed.
 */
export function buildModel(c: Case): LlamaModel {
  const model = new LlamaModel(parseLlamaConfig(c.config, c.name)).initialize(c.seed);
  const rng = new Rng(c.seed + 1);
  for (const [name, t] of model.params) {
    const fanIn = t.shape.length === 2 ? t.shape[1] : 1;
    for (let i = 0; i < t.size; i++) {
      const g = rng.gaussian();
      if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight')) t.data[i] = 1 + 0.3 * g;
      else if (name.endsWith('.bias')) t.data[i] = 0.3 * g;
      else if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') t.data[i] = 0.5 * g;
      else t.data[i] = g / Math.sqrt(fanIn);
    }
  }
  return model;
}

export function buildInputs(c: Case): Inputs {
  const rng = new Rng(c.seed + 2);
  const n = c.batch * c.seqLen;
  const v = c.config.vocabSize;
  const ids = Array.from({ length: n }, () => rng.scaledInt(v));
  const targets = Array.from({ length: n }, () => rng.scaledInt(v));
  let weights: number[] | null = null;
  if (c.weights === 'mixed') {
    // The first two positions of each row are masked (like a prompt); the rest weigh 0.5, 1 or 2.
    const choices = [0.5, 1, 2];
    weights = Array.from({ length: n }, (_, i) =>
      i % c.seqLen < 2 ? 0 : choices[rng.scaledInt(choices.length)],
    );
  }
  return { batch: c.batch, seq_len: c.seqLen, ids, targets, weights };
}

export function toBatch(inp: Inputs): Batch {
  return {
    batch: inp.batch,
    seqLen: inp.seq_len,
    inputs: Int32Array.from(inp.ids),
    targets: Int32Array.from(inp.targets),
    weights: inp.weights ? Float32Array.from(inp.weights) : null,
  };
}

/** max_i |a_i - b_i| / max(max_i |b_i|, 1e-12); a is the engine's tensor, b the reference. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relativeError: lengths ${a.length} and ${b.length} differ`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= diff)) diff = d; // NaN propagates as the largest error
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-12);
}

export interface EngineResult {
  logits: Float32Array;
  loss: number;
  grads: Map<string, Float32Array>;
}

/** Our forward (all positions), batchLoss and backward on a model folder's weights. */
export function runEngine(model: LlamaModel, inp: Inputs): EngineResult {
  const batch = toBatch(inp);
  const logits = model.forward(batch.inputs, batch.batch);
  for (const t of model.params.values()) t.grad = null;
  const { loss } = batchLoss(model, batch);
  loss.backward();
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of model.params)
    grads.set(name, t.grad ? Float32Array.from(t.grad) : new Float32Array(t.size));
  return { logits: Float32Array.from(logits.data), loss: loss.item(), grads };
}

export interface Comparison {
  logits: number;
  loss: number;
  grads: Map<string, number>;
  worstGrad: { name: string; error: number };
}

/** Compares an engine result against reference tensors (logits, loss, grad.<name>). */
export function compare(
  ours: EngineResult,
  ref: ReadonlyMap<string, TensorData>,
  source: string,
): Comparison {
  const get = (name: string): Float32Array => {
    const t = ref.get(name);
    if (!t) throw new Error(`${source}: reference tensor "${name}" is missing`);
    return t.data;
  };
  const grads = new Map<string, number>();
  let worstGrad = { name: '', error: -1 };
  for (const [name, g] of ours.grads) {
    const e = relativeError(g, get(`grad.${name}`));
    grads.set(name, e);
    if (!(e <= worstGrad.error)) worstGrad = { name, error: e };
  }
  for (const key of ref.keys()) {
    if (key.startsWith('grad.') && !ours.grads.has(key.slice(5)))
      throw new Error(`${source}: reference has "${key}", the engine has no such parameter`);
  }
  return {
    logits: relativeError(ours.logits, get('logits')),
    loss: relativeError([ours.loss], get('loss')),
    grads,
    worstGrad,
  };
}

export function passes(c: Comparison, tol = TOLERANCE): boolean {
  return c.logits < tol && c.loss < tol && c.worstGrad.error < tol;
}

export function pythonPath(): string {
  return process.env.PSM_PYTHON || '/usr/bin/python3';
}

/** True when the python interpreter exists and imports torch. */
export function torchAvailable(python = pythonPath()): boolean {
  if (!fs.existsSync(python)) return false;
  const r = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
  return r.status === 0;
}

/** Runs torch_reference.py on a model folder and inputs file; returns the reference tensors. */
export function runTorch(
  modelDir: string,
  inputsPath: string,
  outPath: string,
  dtype: 'float64' | 'float32' = 'float64',
  python = pythonPath(),
): Map<string, TensorData> {
  const r = spawnSync(
    python,
    [PY_SCRIPT, '--model', modelDir, '--inputs', inputsPath, '--out', outPath, '--dtype', dtype],
    { encoding: 'utf8', timeout: 300_000 },
  );
  if (r.error) throw new Error(`${python} ${PY_SCRIPT}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${python} ${PY_SCRIPT} failed (exit ${r.status}):\n${r.stderr}`);
  return readSafetensorsSync(outPath).tensors;
}

function fmt(e: number): string {
  return e.toExponential(2);
}

function report(label: string, c: Comparison): string {
  return `${label.padEnd(44)} logits ${fmt(c.logits)}  loss ${fmt(c.loss)}  grads ${fmt(c.worstGrad.error)} (${c.worstGrad.name})  ${passes(c) ? 'ok' : 'FAIL'}`;
}

function parseArgs(argv: string[]): {
  write: boolean;
  dtype: 'float64' | 'float32';
  backend?: 'js' | 'ort';
  python: string;
} {
  let write = false;
  let dtype: 'float64' | 'float32' = 'float64';
  let backend: 'js' | 'ort' | undefined;
  let python = pythonPath();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--write') write = true;
    else if (a === '--check') write = false;
    else if (a === '--dtype' && (argv[i + 1] === 'float64' || argv[i + 1] === 'float32'))
      dtype = argv[++i] as 'float64' | 'float32';
    else if (a === '--backend' && (argv[i + 1] === 'js' || argv[i + 1] === 'ort'))
      backend = argv[++i] as 'js' | 'ort';
    else if (a === '--python' && argv[i + 1]) python = argv[++i];
    else
      throw new Error(
        `unknown argument "${a}" (use --check | --write, --dtype float64|float32, --backend js|ort, --python PATH)`,
      );
  }
  if (write && dtype !== 'float64')
    throw new Error('--write stores float64 references; drop --dtype float32');
  return { write, dtype, backend, python };
}

function main(): number {
  const args = parseArgs(process.argv.slice(2));
  if (!torchAvailable(args.python)) {
    console.error(
      `${args.python} cannot import torch. Install Debian's package: apt-get install -y python3-torch libopenblas0-pthread`,
    );
    return 1;
  }
  const backend = configureBackend(args.backend ? { backend: args.backend } : {});
  console.log(
    `engine backend: ${backend.constructor.name}; PyTorch dtype: ${args.dtype}; tolerance ${TOLERANCE}`,
  );
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-torch-ref-'));
  let ok = true;
  try {
    for (const c of CASES) {
      const dir = args.write ? path.join(FIXTURE_DIR, c.name) : path.join(tmp, c.name);
      if (args.write) fs.rmSync(dir, { recursive: true, force: true });
      const model = buildModel(c);
      const inputs = buildInputs(c);
      saveModelFolder(dir, model);
      const inputsPath = path.join(dir, 'inputs.json');
      fs.writeFileSync(inputsPath, JSON.stringify(inputs) + '\n');
      const refPath = path.join(tmp, `${c.name}.ref.safetensors`);
      const ref = runTorch(dir, inputsPath, refPath, args.dtype, args.python);
      // The engine reads the exported folder back, so the comparison also covers the checkpoint round trip.
      const cmp = compare(runEngine(loadModelFolder(dir), inputs), ref, refPath);
      console.log(report(c.name, cmp));
      ok &&= passes(cmp);

      const committed = path.join(FIXTURE_DIR, c.name, 'expected.safetensors');
      if (args.write) {
        const meta = readSafetensorsSync(refPath).metadata;
        writeSafetensorsSync(committed, ref, {
          source: 'scripts/torch_reference.py via scripts/make-torch-reference.ts --write',
          torch_version: meta.torch_version ?? 'unknown',
          dtype: meta.dtype ?? args.dtype,
        });
        const summary = {
          case: c.name,
          torch_version: meta.torch_version,
          reference_dtype: meta.dtype,
          engine_backend: backend.constructor.name,
          relative_error: 'max|engine - torch| / max(max|torch|, 1e-12), per tensor',
          tolerance: TOLERANCE,
          logits: cmp.logits,
          loss: cmp.loss,
          worst_grad: cmp.worstGrad,
          grads: Object.fromEntries(cmp.grads),
        };
        fs.writeFileSync(path.join(dir, 'measured.json'), JSON.stringify(summary, null, 2) + '\n');
      } else if (fs.existsSync(committed)) {
        // The committed fixture must still match what PyTorch computes on the committed model folder.
        const fixtureDir = path.join(FIXTURE_DIR, c.name);
        const live = runTorch(
          fixtureDir,
          path.join(fixtureDir, 'inputs.json'),
          path.join(tmp, `${c.name}.committed.safetensors`),
          args.dtype,
          args.python,
        );
        const stored = readSafetensorsSync(committed).tensors;
        let drift = 0;
        for (const [name, t] of live) {
          const s = stored.get(name);
          drift = Math.max(drift, s ? relativeError(s.data, t.data) : Infinity);
        }
        const cmpFixture = compare(
          runEngine(
            loadModelFolder(fixtureDir),
            JSON.parse(fs.readFileSync(path.join(fixtureDir, 'inputs.json'), 'utf8')) as Inputs,
          ),
          live,
          fixtureDir,
        );
        console.log(report(`${c.name} (committed fixture)`, cmpFixture));
        console.log(
          `${`${c.name} committed vs live torch`.padEnd(44)} max ${fmt(drift)}  ${drift < TOLERANCE ? 'ok' : 'FAIL'}`,
        );
        ok &&= passes(cmpFixture) && drift < TOLERANCE;
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(ok ? 'torch agreement: ok' : 'torch agreement: FAILED');
  return ok ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main();
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
  }
}
