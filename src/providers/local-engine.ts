/**
 * The local inference engine behind `psm serve` and the local provider: a model folder, its tokenizer, and
 * an asynchronous decode loop (decode-scheduler.ts). The model code is synchronous CPU work, so the loop runs
 * one step at a time and yields to the event loop between steps (HTTP I/O, new requests and client
 * disconnects are handled while a generation runs). The generations in flight are decoded together: one
 * forward per step for all of them, each on its own cache with its own interventions; a request arriving
 * meanwhile joins at the next step. A semaphore bounds how many generations are in flight and how many wait;
 * beyond that a request is refused rather than queued without bound.
 *
 * Sampling is exactly that of src/model/generate.ts (same seeded generator, same nucleus rule), so a seed
 * reproduces `psm generate`. Log-probabilities are those of the model's own distribution (before temperature).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { noGrad } from '../autograd/tensor.ts';
import { ChatTemplate, encodeTemplateText, formatChat, PSM_SEPARATOR } from '../interop/chat-template.ts';
import { chatTemplateForFolder } from '../interop/chat-template-source.ts';
import { loadModelTokenizer } from '../interop/hf-tokenizer.ts';
import { checkLogits, NonFiniteLogitsError, sampleFromLogits } from '../model/generate.ts';
import type { HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import { scoreContinuations, type ScoreRequest } from '../model/score.ts';
import { loadModelFolder } from '../model/weights.ts';
import { DecodeScheduler } from './decode-scheduler.ts';
import { Semaphore, yieldToEventLoop } from './limit.ts';
import type { ChatMessage } from './types.ts';
import { configureBackend } from '../tensor/backend.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import { Rng } from '../tensor/random.ts';
import type { TextTokenizer } from '../tokenizer/types.ts';
import { loadVectorLibrary, type VectorLibrary } from './interventions.ts';

export const DEFAULT_BOS = PSM_SEPARATOR;

/** Generations decoded together when EngineOptions.maxConcurrency is not given. */
export const DEFAULT_MAX_CONCURRENCY = 8;

export interface TopToken {
  id: number;
  text: string;
  bytes: number[];
  logprob: number;
}

export interface TokenInfo extends TopToken {
  /** null for a first prompt token that has no context to be predicted from. */
  logprob: number;
  top?: TopToken[];
  /** Character offset of the token's text in the generated (or prompt) text. */
  offset: number;
}

export interface EngineOptions {
  /** Model id reported by /v1/models (default: the folder's name). */
  id?: string;
  /**
   * Generations in flight at once, decoded together in one batch (default 8): one forward per step for all of
   * them, each on its own KV cache with its own interventions and sampling.
   */
  maxConcurrency?: number;
  /**
   * Each reply the same to the bit whatever is decoded beside it (DecodeBatchOptions.batchInvariant): for callers
   * that cache sampled replies (the persona-vector recipe). Costs an extra row when one generation runs alone.
   */
  batchInvariant?: boolean;
  /** Requests allowed to wait for a slot (default 64); more are refused with QueueFullError. */
  maxQueue?: number;
  /** Largest max_tokens a request may ask for (default 512). */
  maxTokens?: number;
  /** Text that ends a chat reply besides end-of-turn tokens (default: the chat format's; ["\n"] for PSM's). */
  chatStop?: string[];
  /** The model's chat format (default: PSM Lab's; LocalEngine.load reads the folder's). */
  chatTemplate?: ChatTemplate;
  /** LocalEngine.load only: "psm" or a template file instead of the folder's own template. */
  chatTemplateFile?: string;
  /** Named vectors requests may refer to in PSM extras. */
  vectors?: VectorLibrary;
  /** LocalEngine.load only: read named vectors from this file (JSON or safetensors; see interventions.ts). */
  vectorsFile?: string;
  /**
   * Separator/BOS token put before every raw prompt and PSM-format chat (default "<|endoftext|>", as in training
   * shards; none for a model with its own chat template, whose rendered chat carries its BOS).
   */
  bosToken?: string;
}

export interface GenerateParams {
  /** Prompt ids, BOS included (see encodeChat / encodeText). */
  promptIds: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  /** Stop strings; the returned text ends before the first one. */
  stop: string[];
  /** null: no log-probabilities; 0: the chosen token's only; k: also the top k alternatives. */
  topLogprobs: number | null;
  hooks?: HookSet;
  /** Chat replies start with a space after "Assistant:"; drop it from the returned text. */
  stripLeadingSpace?: boolean;
  signal?: AbortSignal;
  /** Streaming: called with each new piece of text that is certain not to be part of a stop string. */
  onDelta?: (text: string, tokens: TokenInfo[]) => void;
}

export interface GenerateOutput {
  text: string;
  /** The generated tokens with log-probabilities (empty unless topLogprobs !== null). */
  tokens: TokenInfo[];
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
}

export class ContextLengthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContextLengthError';
  }
}

export class LocalEngine {
  readonly id: string;
  readonly maxTokens: number;
  readonly chatStop: string[];
  readonly vectors: VectorLibrary;
  readonly bosId: number | undefined;
  readonly eotId: number | undefined;
  /** Tokens that end a generation: end-of-text and the chat format's end-of-turn tokens. */
  readonly endIds: ReadonlySet<number>;
  readonly chat: ChatTemplate;
  readonly slots: Semaphore;
  /** Replies do not depend on what is decoded beside them (EngineOptions.batchInvariant). */
  readonly batchInvariant: boolean;
  /** Every generation holding a slot is decoded in this one continuous batch. */
  private readonly scheduler: DecodeScheduler;
  readonly created = Math.floor(Date.now() / 1000);

  constructor(
    readonly model: LlamaModel,
    readonly tokenizer: TextTokenizer,
    opts: EngineOptions = {},
  ) {
    this.id = opts.id ?? 'psm-model';
    this.maxTokens = opts.maxTokens ?? 512;
    this.chat = opts.chatTemplate ?? ChatTemplate.psm();
    this.chatStop = opts.chatStop ?? this.chat.stopStrings;
    this.vectors = opts.vectors ?? new Map();
    const bos = opts.bosToken ?? (this.chat.kind === 'psm' ? DEFAULT_BOS : '');
    this.bosId = bos === '' ? undefined : tokenizer.tokenToId(bos);
    this.eotId = tokenizer.tokenToId(DEFAULT_BOS);
    const ends = this.chat.endOfTurnTokens(tokenizer.specialTokens).map((t) => tokenizer.tokenToId(t));
    this.endIds = new Set([this.eotId, ...ends].filter((id): id is number => id !== undefined));
    const batch = opts.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    this.slots = new Semaphore(batch, opts.maxQueue ?? 64);
    this.batchInvariant = opts.batchInvariant ?? false;
    this.scheduler = new DecodeScheduler(model, batch, { batchInvariant: this.batchInvariant });
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new Error(
        `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${model.config.vocabSize}`,
      );
    }
  }

  /**
   * Loads a model folder (config.json, model.safetensors, tokenizer.json) and configures the matmul backend. The
   * tokenizer is PSM Lab's byte-level BPE where it reads tokenizer.json exactly, else @huggingface/tokenizers
   * (an imported model's: see src/interop/hf-tokenizer.ts).
   */
  static load(dir: string, opts: EngineOptions = {}): LocalEngine {
    configureBackend();
    const tokPath = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(tokPath))
      throw new Error(`${tokPath}: not found (a PSM Lab model folder holds its tokenizer)`);
    const model = loadModelFolder(dir);
    const tokenizer = loadModelTokenizer(dir, model.config.vocabSize);
    const vectors = opts.vectorsFile ? loadVectorLibrary(opts.vectorsFile, model.config.dim) : opts.vectors;
    return new LocalEngine(model, tokenizer, {
      ...opts,
      id: opts.id ?? path.basename(path.resolve(dir)),
      vectors,
      chatTemplate: opts.chatTemplate ?? chatTemplateForFolder(dir, opts.chatTemplateFile),
    });
  }

  get contextLength(): number {
    return this.model.config.maxSeqLen;
  }

  private withBos(ids: number[]): number[] {
    return this.bosId === undefined ? ids : [this.bosId, ...ids];
  }

  /**
   * A chat in the model's format (src/interop/chat-template.ts), ending with the generation prompt: the PSM format
   * after the separator, or the model's own template's text; message text is never read as special tokens.
   */
  encodeChat(messages: readonly ChatMessage[]): number[] {
    if (this.chat.kind === 'psm')
      return this.withBos(this.tokenizer.encodeOrdinary(formatChat(messages, { bosToken: '' })));
    return this.encodeRendered(this.chat.render(messages), messages);
  }

  /** Text the model's template rendered for `messages`, as ids (chat-template.ts encodeTemplateText). */
  encodeRendered(text: string, messages: readonly ChatMessage[]): number[] {
    return encodeTemplateText(this.chat, this.tokenizer, text, messages);
  }

  /**
   * Sum of token log-probabilities of each reply after a chat's generation prompt (the battery's two-way choices
   * asked of a chat model). A reply written for the PSM format starts with a space; a template's replies do not.
   */
  async scoreChat(
    messages: readonly ChatMessage[],
    replies: string[],
    hooks?: HookSet,
    signal?: AbortSignal,
  ): Promise<number[]> {
    const lead = this.chat.replyLeadingSpace;
    return this.scoreIds(
      this.encodeChat(messages),
      replies.map((r) => (lead || !r.startsWith(' ') ? r : r.slice(1))),
      hooks,
      signal,
    );
  }

  /** A raw prompt; special-token strings in it (e.g. "<|endoftext|>") become their ids. */
  encodeText(prompt: string): number[] {
    return this.withBos(this.tokenizer.encode(prompt));
  }

  /** Number of BOS tokens encodeChat/encodeText put in front. */
  get bosCount(): number {
    return this.bosId === undefined ? 0 : 1;
  }

  checkPromptLength(promptIds: number[]): void {
    if (promptIds.length >= this.contextLength) {
      throw new ContextLengthError(
        `the prompt has ${promptIds.length} tokens; this model's context is ${this.contextLength} tokens and must leave room for at least one new token`,
      );
    }
  }

  private tokenInfo(
    id: number,
    logprob: number,
    offset: number,
    logp: Float32Array | null,
    k: number,
  ): TokenInfo {
    const info: TokenInfo = {
      id,
      text: this.tokenizer.decodeToken(id),
      bytes: Array.from(this.tokenizer.tokenBytes(id)),
      logprob,
      offset,
    };
    if (logp && k > 0)
      info.top = topK(logp, k, this.tokenizer.vocabSize).map((j) => ({
        id: j,
        text: this.tokenizer.decodeToken(j),
        bytes: Array.from(this.tokenizer.tokenBytes(j)),
        logprob: logp[j],
      }));
    return info;
  }

  /** Generates one continuation; waits for a slot first (QueueFullError when too many wait). */
  async generate(p: GenerateParams): Promise<GenerateOutput> {
    this.checkPromptLength(p.promptIds);
    const release = await this.slots.acquire(p.signal);
    try {
      return await this.generateHeld(p);
    } finally {
      release();
    }
  }

  private async generateHeld(p: GenerateParams): Promise<GenerateOutput> {
    const model = this.model;
    const tok = this.tokenizer;
    const prompt = p.promptIds;
    const budget = Math.min(p.maxTokens, this.contextLength - prompt.length);
    const vocab = model.config.vocabSize;
    const rng = new Rng(p.seed);
    const stops = p.stop.filter((s) => s.length > 0);
    const wantLogprobs = p.topLogprobs !== null;
    const k = p.topLogprobs ?? 0;
    const ids: number[] = [];
    const infos: TokenInfo[] = [];
    let pending: TokenInfo[] = [];
    let text = '';
    let cut = -1;
    let finishReason: 'stop' | 'length' = 'length';
    const stream = new ReplyStream(stops, p.stripLeadingSpace ?? false);
    if (budget <= 0)
      return {
        text: '',
        tokens: [],
        finishReason: 'length',
        promptTokens: prompt.length,
        completionTokens: 0,
      };

    const logp = new Float32Array(vocab);
    // One token per call, with this request's own generator and stops; the scheduler decodes it with the others.
    const next = (logits: Float32Array): number | null => {
      // A model vocabulary padded beyond the tokenizer's: those ids are not text, never sample them.
      if (tok.vocabSize < vocab) logits.fill(-Infinity, tok.vocabSize);
      const id = sampleFromLogits(logits, p.temperature, p.topP, rng);
      if (this.endIds.has(id)) {
        finishReason = 'stop';
        return null;
      }
      const before = text.length;
      ids.push(id);
      text = tok.decode(ids);
      if (wantLogprobs) {
        logSoftmaxRow(logits, 0, vocab, logp);
        const info = this.tokenInfo(id, logp[id], before, logp, k);
        infos.push(info);
        pending.push(info);
      }
      cut = earliestStop(text, before, stops, cut);
      if (cut >= 0) {
        finishReason = 'stop';
        return null;
      }
      if (p.onDelta) {
        const piece = stream.piece(text);
        if (piece) {
          p.onDelta(piece, pending);
          pending = [];
        }
      }
      return ids.length < budget ? id : null;
    };
    await this.scheduler.run({
      prompt,
      capacity: prompt.length + budget,
      hooks: p.hooks,
      signal: p.signal,
      next,
    });
    const end = cut >= 0 ? cut : text.length;
    const lead = stream.lead(text);
    const kept = cut >= 0 ? infos.filter((t) => t.offset < cut) : infos;
    if (p.onDelta) {
      const rest = stream.rest(text, end);
      const restTokens = cut >= 0 ? pending.filter((t) => t.offset < cut) : pending;
      if (rest || restTokens.length) p.onDelta(rest, restTokens);
    }
    for (const t of kept) t.offset = Math.max(0, t.offset - lead);
    return {
      text: text.slice(Math.min(lead, end), end),
      tokens: kept,
      finishReason,
      promptTokens: prompt.length,
      completionTokens: ids.length,
    };
  }

  /**
   * Log-probabilities of the prompt's own tokens (for `echo`): entry i is token promptIds[i + skip] given
   * everything before it, where skip = number of leading BOS tokens (their logprob is undefined).
   */
  async promptLogprobs(
    promptIds: number[],
    topLogprobs: number,
    skip: number,
    hooks?: HookSet,
    signal?: AbortSignal,
  ): Promise<TokenInfo[]> {
    if (promptIds.length > this.contextLength)
      throw new ContextLengthError(
        `the prompt has ${promptIds.length} tokens; this model's context is ${this.contextLength}`,
      );
    const release = await this.slots.acquire(signal);
    try {
      const model = this.model;
      const vocab = model.config.vocabSize;
      const out: TokenInfo[] = [];
      const logits = noGrad(() => model.forward(Int32Array.from(promptIds), 1, { hooks })).data;
      const logp = new Float32Array(vocab);
      for (let i = skip; i < promptIds.length; i++) {
        const offset = this.tokenizer.decode(promptIds.slice(skip, i)).length;
        const id = promptIds[i];
        let info: TokenInfo;
        if (i === 0) info = { ...this.tokenInfo(id, NaN, offset, null, 0), logprob: NaN };
        else {
          checkLogits(logits.subarray((i - 1) * vocab, i * vocab));
          logSoftmaxRow(logits, (i - 1) * vocab, vocab, logp);
          info = this.tokenInfo(id, logp[id], offset, logp, topLogprobs);
        }
        out.push(info);
      }
      await yieldToEventLoop();
      return out;
    } finally {
      release();
    }
  }

  /**
   * Sum of token log-probabilities of each continuation after the prompt (BOS in front of the prompt; prompt
   * and continuations encoded separately, the convention of src/measurement/choice.ts).
   */
  async score(
    prompt: string,
    continuations: string[],
    hooks?: HookSet,
    signal?: AbortSignal,
  ): Promise<number[]> {
    return this.scoreIds(this.encodeText(prompt), continuations, hooks, signal);
  }

  private async scoreIds(
    promptIds: number[],
    continuations: string[],
    hooks?: HookSet,
    signal?: AbortSignal,
  ): Promise<number[]> {
    const requests: ScoreRequest[] = continuations.map((c, i) => {
      const continuation = this.tokenizer.encode(c);
      if (continuation.length === 0) throw new Error(`score: continuation ${i} is empty`);
      return { prompt: promptIds, continuation };
    });
    const out: number[] = [];
    const chunk = 32;
    for (let i = 0; i < requests.length; i += chunk) {
      const release = await this.slots.acquire(signal);
      try {
        for (const r of scoreContinuations(this.model, requests.slice(i, i + chunk), { hooks })) {
          if (!Number.isFinite(r.logprob))
            throw new NonFiniteLogitsError(
              `the log-probability of continuation ${out.length} is ${r.logprob}: the model's output is not finite`,
            );
          out.push(r.logprob);
        }
      } finally {
        release();
      }
      await yieldToEventLoop();
    }
    return out;
  }
}

/**
 * Where the earliest stop string found in `text` starts, looking only at occurrences that end after `before`
 * (the text generated before this step was already searched); `cut` is the earliest found so far (-1: none).
 */
export function earliestStop(text: string, before: number, stops: readonly string[], cut: number): number {
  for (const s of stops) {
    const idx = text.indexOf(s, Math.max(0, before - s.length + 1));
    if (idx >= 0 && (cut < 0 || idx < cut)) cut = idx;
  }
  return cut;
}

/**
 * A growing reply handed on in pieces: only text no stop string can still claim (see holdBack), and never the reply's
 * leading space when the chat format strips it. The local engine and the GGUF provider stream through it.
 */
export class ReplyStream {
  private emitted = 0;
  constructor(
    private readonly stops: readonly string[],
    private readonly stripLeadingSpace: boolean,
  ) {}

  /** How many leading characters of `text` the reply drops (its leading space, where stripped). */
  lead(text: string): number {
    return this.stripLeadingSpace && text.startsWith(' ') ? 1 : 0;
  }

  /** The part of `text` that is safe to hand on now and was not handed on before ('' when none). */
  piece(text: string): string {
    const start = Math.max(this.emitted, this.lead(text));
    const safe = text.length - holdBack(text, this.stops);
    if (safe <= start) return '';
    this.emitted = safe;
    return text.slice(start, safe);
  }

  /** What is left of the reply once it has ended at `end` (its length, or where a stop string starts). */
  rest(text: string, end: number): string {
    const start = Math.max(this.emitted, this.lead(text));
    this.emitted = Math.max(this.emitted, end);
    return end > start ? text.slice(start, end) : '';
  }
}

/** Characters at the end of `text` that could still grow into a stop string (or are an incomplete UTF-8 character). */
export function holdBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  let replacement = 0;
  while (replacement < text.length && text[text.length - 1 - replacement] === '\uFFFD') replacement++;
  return Math.max(hold, replacement);
}

/** Indices of the k largest values (descending; ties by lower index). */
export function topK(values: Float32Array, k: number, limit = values.length): number[] {
  const n = Math.min(limit, values.length);
  const best: number[] = [];
  for (let j = 0; j < n; j++) {
    const v = values[j];
    if (best.length === k && v <= values[best[k - 1]]) continue;
    let pos = best.length;
    while (pos > 0 && values[best[pos - 1]] < v) pos--;
    best.splice(pos, 0, j);
    if (best.length > k) best.pop();
  }
  return best;
}
