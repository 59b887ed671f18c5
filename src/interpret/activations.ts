/**
 * Activation recording: mean activations at any hook point over chosen token spans of many contexts, in
 * batched forward passes (no gradients, no unembedding), with provenance (which model, which hook, which span,
 * how, when) stored beside the tensors as safetensors + JSON.
 *
 * A context is a prompt and an optional response, tokenised with the document separator in front of the
 * prompt (as every evaluation item is scored). Spans:
 *   prompt       every prompt token (separator included)
 *   response     every response token (teacher-forced)
 *   last-prompt  the last prompt token: where the model is about to answer
 *   all          prompt and response
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { noGrad } from '../autograd/tensor.ts';
import { atomicWriteJsonSync } from '../io/atomic-write.ts';
import { sha256File } from '../io/file-hash.ts';
import {
  readSafetensorsSync,
  serializeSafetensors,
  writeSafetensorsSync,
  type TensorData,
} from '../io/safetensors.ts';
import { memoEncode, type Encoder } from '../measurement/choice.ts';
import { checkHookName, hookBlock, HookSet, type HookFn } from '../model/hooks.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { LlamaModel } from '../model/llama.ts';
import { loadModelFolder, MODEL_FILE, modelTensors } from '../model/weights.ts';
import { chatFromPrompt, ChatTemplate } from '../interop/chat-template.ts';
import { chatTemplateForFolder } from '../interop/chat-template-source.ts';
import { loadModelTokenizer } from '../interop/hf-tokenizer.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';
import { END_OF_TEXT } from '../world/index.ts';

export type SpanKind = 'prompt' | 'response' | 'last-prompt' | 'all';
export const SPAN_KINDS: readonly SpanKind[] = ['prompt', 'response', 'last-prompt', 'all'];

/** Residual-stream hook kinds a layer exposes (see src/model/hooks.ts). */
export type ResidKind =
  'hook_resid_pre' | 'hook_resid_mid' | 'hook_resid_post' | 'hook_attn_out' | 'hook_mlp_out';
export const DEFAULT_HOOK_KIND: ResidKind = 'hook_resid_post';

/** A model with what is needed to interpret it: its tokenizer and the hash that identifies its weights. */
export interface ModelHandle {
  model: LlamaModel;
  tokenizer: TextTokenizer;
  /** sha256 (hex) of the model.safetensors bytes. */
  hash: string;
  /** Where it came from (folder or a label). */
  source: string;
  /** Its chat format (default: PSM Lab's): the world's chat items are asked in it (see modelText). */
  chat?: ChatTemplate;
}

/** sha256 of a model folder's model.safetensors bytes. */
export function hashModelFolder(dir: string): string {
  const file = path.join(dir, MODEL_FILE);
  if (!fs.existsSync(file)) throw new Error(`${file}: not found (is ${dir} a model folder?)`);
  return sha256File(file);
}

/**
 * sha256 of the bytes saveModelFolder would write for an in-memory model; equals hashModelFolder of the
 * folder it is saved to (without extra metadata).
 */
export function hashModel(model: LlamaModel): string {
  const h = createHash('sha256');
  for (const chunk of serializeSafetensors(modelTensors(model), { format: 'pt' })) h.update(chunk);
  return h.digest('hex');
}

/** A model folder's handle; `chatTemplate` ("psm" or a file) replaces the folder's own chat template. */
export function loadModelHandle(dir: string, opts: { chatTemplate?: string } = {}): ModelHandle {
  const tokPath = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokPath))
    throw new Error(`${tokPath}: not found (a PSM Lab model folder holds its tokenizer)`);
  const chat = chatTemplateForFolder(dir, opts.chatTemplate);
  const model = loadModelFolder(dir);
  return {
    model,
    tokenizer: loadModelTokenizer(dir, model.config.vocabSize),
    hash: hashModelFolder(dir),
    source: dir,
    ...(chat.kind === 'psm' ? {} : { chat }),
  };
}

/**
 * A world item's prompt and continuations as the model reads them. In the PSM chat format (PSM Lab's models): the
 * document separator, then the prompt as written. In a model's own template: a chat item ("[intro]\nUser: ...
 * \nAssistant:") becomes its messages rendered with the generation prompt, and the continuations lose the leading
 * space the PSM format puts after "Assistant:"; a story keeps its text, after the BOS token where the template writes
 * one. Special tokens the template writes are read as such by the tokenizer's encode().
 */
export function modelText(
  handle: Pick<ModelHandle, 'chat'>,
  prompt: string,
  continuations: readonly string[],
): { prompt: string; continuations: string[] } {
  const chat = handle.chat;
  if (!chat || chat.kind === 'psm')
    return { prompt: END_OF_TEXT + prompt, continuations: [...continuations] };
  const messages = chatFromPrompt(prompt);
  if (!messages) {
    const bos = chat.bosToken && chat.source.includes('bos_token') ? chat.bosToken : '';
    return { prompt: bos + prompt, continuations: [...continuations] };
  }
  return {
    prompt: chat.render(messages),
    continuations: continuations.map((c) => (c.startsWith(' ') ? c.slice(1) : c)),
  };
}

/** A choice item (prompt, good and bad options) as `handle`'s model reads it (see modelText). */
export function choiceItemAsRead(
  handle: Pick<ModelHandle, 'chat'>,
  item: { prompt: string; good: readonly string[]; bad: readonly string[] },
): { prompt: string; good: string[]; bad: string[] } {
  const t = modelText(handle, item.prompt, [...item.good, ...item.bad]);
  return {
    prompt: t.prompt,
    good: t.continuations.slice(0, item.good.length),
    bad: t.continuations.slice(item.good.length),
  };
}

/** A world item's prompt as `handle`'s model reads it (see modelText), tokenised. */
export function encodePrompt(handle: Pick<ModelHandle, 'chat' | 'tokenizer'>, prompt: string): number[] {
  return handle.tokenizer.encode(modelText(handle, prompt, []).prompt);
}

/** A prompt and one continuation as `handle`'s model reads them, tokenised as one sequence. */
export function encodePromptAndContinuation(
  handle: Pick<ModelHandle, 'chat' | 'tokenizer'>,
  prompt: string,
  continuation: string,
): number[] {
  const t = modelText(handle, prompt, [continuation]);
  return handle.tokenizer.encode(t.prompt + t.continuations[0]);
}

/** A handle for an in-memory model (tests, fine-tunes in progress). */
export function modelHandle(model: LlamaModel, tokenizer: TextTokenizer, source = '<memory>'): ModelHandle {
  return { model, tokenizer, hash: hashModel(model), source };
}

/** The hook name of a layer's residual stream (or another per-block hook). */
export function layerHook(layer: number, kind: ResidKind = DEFAULT_HOOK_KIND): string {
  return `blocks.${layer}.${kind}`;
}

/** Checks a layer index against a model and names the valid range. */
export function checkLayer(model: LlamaModel, layer: number): void {
  const n = model.config.nLayers;
  if (!Number.isInteger(layer) || layer < 0 || layer >= n) {
    throw new Error(`unknown layer ${layer}: the model has ${n} blocks (layers 0..${n - 1})`);
  }
}

export interface TextContext {
  prompt: string;
  response?: string;
}

export interface TokenContext {
  /** Prompt ids, the separator included. */
  prompt: number[];
  /** Response ids (may be empty). */
  response: number[];
}

/** Tokenises contexts as `handle`'s model reads them (its chat format; see modelText). */
export function tokenizeContextsFor(handle: ModelHandle, contexts: readonly TextContext[]): TokenContext[] {
  if (!handle.chat || handle.chat.kind === 'psm') return tokenizeContexts(handle.tokenizer, contexts);
  return tokenizeContexts(
    handle.tokenizer,
    contexts.map((c) => {
      const t = modelText(handle, c.prompt, c.response ? [c.response] : []);
      return { prompt: t.prompt, response: t.continuations[0] };
    }),
    '',
  );
}

/** Tokenises contexts with the document separator in front of each prompt (the scoring convention). */
export function tokenizeContexts(
  tokenizer: Encoder,
  contexts: readonly TextContext[],
  prefix = END_OF_TEXT,
): TokenContext[] {
  const enc = memoEncode(tokenizer);
  return contexts.map((c, i) => {
    const prompt = enc(prefix + c.prompt);
    if (prompt.length === 0) throw new Error(`context ${i}: empty prompt`);
    return { prompt, response: c.response ? enc(c.response) : [] };
  });
}

function spanRange(ctx: TokenContext, span: SpanKind, i: number): [number, number] {
  const p = ctx.prompt.length;
  const r = ctx.response.length;
  switch (span) {
    case 'prompt':
      return [0, p];
    case 'last-prompt':
      return [p - 1, p];
    case 'all':
      return [0, p + r];
    case 'response':
      if (r === 0) throw new Error(`context ${i}: span "response" needs a response, this context has none`);
      return [p, p + r];
  }
}

/** How activations are recorded in batches (not the model's own forward options, model/llama.ts ForwardOptions). */
export interface ActivationBatchOptions {
  /** Maximum tokens (sequences x padded length) in one forward pass (default: defaultTokensPerBatch). */
  tokensPerBatch?: number;
  /** Interventions applied before recording, at their hook points (e.g. steering while recording). */
  interventions?: { name: string; fn: HookFn }[];
}

/**
 * Tokens per recording pass by default: 4096 for the persona world's models, fewer for wide ones. A pass's
 * intermediates grow with its widest rows (the MLP's, 4864 floats a token at Qwen2.5-0.5B's size), and the
 * collector frees them only after a pass: at 4096 tokens such a model held ~5 GB besides its weights while
 * extracting; the budget keeps the widest intermediate at about 16 MB.
 */
export function defaultTokensPerBatch(config: Pick<LlamaConfig, 'dim' | 'hiddenDim'>): number {
  return Math.max(256, Math.min(4096, Math.floor((4096 * 1024) / Math.max(config.dim, config.hiddenDim))));
}

/**
 * Runs the model over token sequences in length-sorted, right-padded batches and hands the activations of the
 * requested hooks to `visit` (one call per batch and hook, rows [b, len, dim] of the batch).
 */
export function forEachActivationBatch(
  model: LlamaModel,
  seqs: readonly number[][],
  hooks: readonly string[],
  visit: (hook: string, data: Float32Array, members: readonly number[], len: number) => void,
  opts: ActivationBatchOptions = {},
): void {
  for (const h of hooks) checkHookName(h, model.config.nLayers);
  for (const iv of opts.interventions ?? []) checkHookName(iv.name, model.config.nLayers);
  const max = model.config.maxSeqLen;
  seqs.forEach((s, i) => {
    if (s.length === 0) throw new Error(`sequence ${i} is empty`);
    if (s.length > max)
      throw new Error(`sequence ${i} has ${s.length} tokens, the model's context is ${max}`);
  });
  const budget = opts.tokensPerBatch ?? defaultTokensPerBatch(model.config);
  const stopAfterLayer = lastBlockRead([...hooks, ...(opts.interventions ?? []).map((iv) => iv.name)]);
  const order = seqs.map((_, i) => i).sort((a, b) => seqs[a].length - seqs[b].length || a - b);
  noGrad(() => {
    let start = 0;
    while (start < order.length) {
      let end = start + 1;
      while (end < order.length && (end - start + 1) * seqs[order[end]].length <= budget) end++;
      const members = order.slice(start, end);
      const len = seqs[members[members.length - 1]].length;
      const ids = new Int32Array(members.length * len);
      members.forEach((m, b) => ids.set(seqs[m], b * len));
      const set = new HookSet();
      for (const iv of opts.interventions ?? []) set.add(iv.name, iv.fn);
      for (const h of hooks) {
        set.add(h, (x) => {
          visit(h, x.data, members, len);
        });
      }
      model.forwardHidden(ids, members.length, { hooks: set, stopAfterLayer });
      start = end;
    }
  });
}

/**
 * The last block a pass must run for these hook points (the blocks after it change nothing they see), or
 * undefined when one of them is the final norm.
 */
function lastBlockRead(names: readonly string[]): number | undefined {
  const last = Math.max(0, ...names.map(hookBlock));
  return last === Infinity ? undefined : last;
}

/** Mean activations per context: for each hook a [n, dim] matrix (row i = context i). */
export interface ActivationSet {
  hooks: string[];
  span: SpanKind;
  n: number;
  dim: number;
  data: Map<string, Float32Array>;
  /** Mean L2 norm of a single token's activation over every recorded token, per hook. */
  tokenNorm: Map<string, number>;
}

/** Mean activation over each context's span at each hook, in one pass per batch for all hooks. */
export function meanActivations(
  model: LlamaModel,
  contexts: readonly TokenContext[],
  hooks: readonly string[],
  span: SpanKind,
  opts: ActivationBatchOptions = {},
): ActivationSet {
  if (!SPAN_KINDS.includes(span)) throw new Error(`unknown span "${span}" (known: ${SPAN_KINDS.join(', ')})`);
  const dim = model.config.dim;
  const n = contexts.length;
  const ranges = contexts.map((c, i) => spanRange(c, span, i));
  // Only what the span needs goes through the model: a prompt-only span never runs the response.
  const seqs = contexts.map((c, i) =>
    ranges[i][1] <= c.prompt.length ? c.prompt : [...c.prompt, ...c.response],
  );
  const data = new Map(hooks.map((h) => [h, new Float32Array(n * dim)]));
  const normSum = new Map(hooks.map((h) => [h, 0]));
  let tokenCount = 0;
  for (const r of ranges) tokenCount += r[1] - r[0];
  forEachActivationBatch(
    model,
    seqs,
    hooks,
    (hook, acts, members, len) => {
      const out = data.get(hook)!;
      let ns = 0;
      members.forEach((m, b) => {
        const [s, e] = ranges[m];
        const o = m * dim;
        for (let t = s; t < e; t++) {
          const base = (b * len + t) * dim;
          let sq = 0;
          for (let j = 0; j < dim; j++) {
            const v = acts[base + j];
            out[o + j] += v;
            sq += v * v;
          }
          ns += Math.sqrt(sq);
        }
        const inv = 1 / (e - s);
        for (let j = 0; j < dim; j++) out[o + j] *= inv;
      });
      normSum.set(hook, normSum.get(hook)! + ns);
    },
    opts,
  );
  const tokenNorm = new Map(hooks.map((h) => [h, normSum.get(h)! / Math.max(1, tokenCount)]));
  return { hooks: [...hooks], span, n, dim, data, tokenNorm };
}

/**
 * Activations at chosen positions of each sequence: for each hook a [rows, dim] matrix whose rows follow the
 * order of `positions` (sequence 0's positions, then sequence 1's, ...). Negative positions count from the end.
 */
export function activationsAt(
  model: LlamaModel,
  seqs: readonly number[][],
  positions: readonly (readonly number[])[],
  hooks: readonly string[],
  opts: ActivationBatchOptions = {},
): Map<string, Float32Array> {
  if (positions.length !== seqs.length)
    throw new Error(`activationsAt: ${seqs.length} sequences but ${positions.length} position lists`);
  const dim = model.config.dim;
  const offsets: number[] = [];
  let rows = 0;
  const abs = positions.map((ps, i) =>
    ps.map((p) => {
      const a = p < 0 ? seqs[i].length + p : p;
      if (!Number.isInteger(a) || a < 0 || a >= seqs[i].length)
        throw new Error(`activationsAt: position ${p} is outside sequence ${i} (${seqs[i].length} tokens)`);
      return a;
    }),
  );
  for (const ps of abs) {
    offsets.push(rows);
    rows += ps.length;
  }
  // Sequences are only needed up to their last requested position.
  const trimmed = seqs.map((s, i) => (abs[i].length ? s.slice(0, Math.max(...abs[i]) + 1) : s.slice(0, 1)));
  const out = new Map(hooks.map((h) => [h, new Float32Array(rows * dim)]));
  forEachActivationBatch(
    model,
    trimmed,
    hooks,
    (hook, acts, members, len) => {
      const o = out.get(hook)!;
      members.forEach((m, b) => {
        abs[m].forEach((t, k) =>
          o.set(acts.subarray((b * len + t) * dim, (b * len + t + 1) * dim), (offsets[m] + k) * dim),
        );
      });
    },
    opts,
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Storage

export interface ActivationProvenance {
  /** sha256 of the model's model.safetensors bytes. */
  modelHash: string;
  model?: string;
  hook: string | string[];
  span: SpanKind | string;
  method: string;
  date: string;
  n: number;
  dim: number;
  [extra: string]: unknown;
}

/** The JSON sidecar of a safetensors file: same name, `.json` instead of `.safetensors`. */
export function sidecarPath(file: string): string {
  return file.endsWith('.safetensors') ? file.slice(0, -'.safetensors'.length) + '.json' : file + '.json';
}

/** Writes tensors with provenance into `file` (safetensors metadata) and its JSON sidecar, atomically. */
export function saveTensorsWithProvenance(
  file: string,
  tensors: Record<string, TensorData>,
  provenance: ActivationProvenance,
): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeSafetensorsSync(file, tensors, { format: 'psm-interpret', provenance: JSON.stringify(provenance) });
  atomicWriteJsonSync(sidecarPath(file), provenance);
}

export function readProvenance(file: string): {
  tensors: Map<string, TensorData>;
  provenance: ActivationProvenance;
} {
  if (!fs.existsSync(file)) throw new Error(`${file}: not found`);
  const { tensors, metadata } = readSafetensorsSync(file);
  if (!metadata.provenance)
    throw new Error(`${file}: no provenance in its metadata (not written by PSM Lab's interpret tools)`);
  let provenance: ActivationProvenance;
  try {
    provenance = JSON.parse(metadata.provenance) as ActivationProvenance;
  } catch (e) {
    throw new Error(`${file}: provenance is not valid JSON (${(e as Error).message})`);
  }
  if (typeof provenance !== 'object' || provenance === null || Array.isArray(provenance))
    throw new Error(`${file}: provenance must be a JSON object`);
  return { tensors, provenance };
}

/** Saves an ActivationSet: one tensor [n, dim] per hook. */
export function saveActivations(
  file: string,
  set: ActivationSet,
  prov: { modelHash: string; model?: string; method: string; [k: string]: unknown },
): ActivationProvenance {
  const tensors: Record<string, TensorData> = {};
  for (const h of set.hooks) tensors[h] = { data: set.data.get(h)!, shape: [set.n, set.dim] };
  const provenance: ActivationProvenance = {
    ...prov,
    hook: set.hooks.length === 1 ? set.hooks[0] : [...set.hooks],
    span: set.span,
    date: new Date().toISOString(),
    n: set.n,
    dim: set.dim,
    tokenNorm: Object.fromEntries(set.tokenNorm),
  };
  saveTensorsWithProvenance(file, tensors, provenance);
  return provenance;
}

export function loadActivations(file: string): { set: ActivationSet; provenance: ActivationProvenance } {
  const { tensors, provenance } = readProvenance(file);
  const hooks = [...tensors.keys()];
  if (hooks.length === 0) throw new Error(`${file}: holds no tensors`);
  const first = tensors.get(hooks[0])!;
  if (first.shape.length !== 2)
    throw new Error(`${file}: tensor "${hooks[0]}" has shape [${first.shape}], expected [n, dim]`);
  const [n, dim] = first.shape;
  for (const h of hooks) {
    const s = tensors.get(h)!.shape;
    if (s.length !== 2 || s[0] !== n || s[1] !== dim)
      throw new Error(`${file}: tensor "${h}" has shape [${s}], expected [${n}, ${dim}]`);
  }
  const norms = (provenance.tokenNorm ?? {}) as Record<string, number>;
  const set: ActivationSet = {
    hooks,
    span: provenance.span as SpanKind,
    n,
    dim,
    data: new Map(hooks.map((h) => [h, tensors.get(h)!.data])),
    tokenNorm: new Map(hooks.map((h) => [h, norms[h] ?? NaN])),
  };
  return { set, provenance };
}

// ---------------------------------------------------------------------------------------------------------------
// Small vector helpers shared by the interpret modules

export function dot(
  a: Float32Array,
  b: Float32Array,
  bOffset = 0,
  aOffset = 0,
  n = a.length - aOffset,
): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[aOffset + i] * b[bOffset + i];
  return s;
}

export function norm(a: Float32Array): number {
  return Math.sqrt(dot(a, a));
}

export function unitVector(a: Float32Array, what = 'vector'): Float32Array {
  const n = norm(a);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`${what}: zero or non-finite norm`);
  return a.map((x) => x / n);
}

/** Projections of rows [rows, dim] onto a unit direction. */
export function projectRows(rows: Float32Array, dim: number, unit: Float32Array): number[] {
  if (unit.length !== dim)
    throw new Error(`projection: direction has ${unit.length} elements, activations have ${dim}`);
  const n = rows.length / dim;
  const out = new Array<number>(n);
  for (let r = 0; r < n; r++) out[r] = dot(unit, rows, r * dim);
  return out;
}
