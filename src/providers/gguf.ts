/**
 * A GGUF model file run by llama.cpp through node-llama-cpp, as a provider. The package is imported on
 * first use (never at module load), so everything else works where it is not installed.
 *
 * The token loop is driven here, one `controlledEvaluate` per token with the full next-token distribution
 * (llama.cpp's greedy sampler keeps every candidate, so these are the model's raw probabilities), and
 * sampling uses PSM Lab's own seeded nucleus sampler: a seed gives the same text as the local engine would
 * from the same distribution, and log-probabilities mean the same thing in both providers.
 *
 * Chat uses the file's own chat template (tokenizer.chat_template; PSM Lab's exported files carry the PSM chat
 * format), rendered by src/interop/chat-template.ts, or a --chat-template override.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type {
  ControlledEvaluateInputItem,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel as NlModel,
  Token,
} from 'node-llama-cpp';
import {
  encodeRenderedChat,
  formatChat,
  type ChatMessage,
  type ChatTemplate,
} from '../interop/chat-template.ts';
import { chatTemplateForGguf } from '../interop/chat-template-source.ts';
import { checkGgufModelFile, GgufValueType, readGgufHeader } from '../interop/gguf.ts';
import { sampleFromLogits } from '../model/generate.ts';
import { Rng } from '../tensor/random.ts';
import { AbortError, Semaphore, yieldToEventLoop } from './limit.ts';
import { earliestStop, ReplyStream } from './local-engine.ts';
import {
  checkGenerateRequest,
  ProviderError,
  type CallOptions,
  type GenerateRequest,
  type GenerateResponse,
  type Provider,
  type ProviderCapabilities,
  type ProviderIdentity,
  type TokenLogprob,
} from './types.ts';

export interface GgufOptions {
  modelPath: string;
  /** Context size in tokens (default: the model's training context, at most 4096). */
  contextSize?: number;
  /** CPU threads for llama.cpp (default 1; more helps only on an otherwise idle machine). */
  threads?: number;
  /** Put the BOS token in front of every prompt (default: what the GGUF file says). */
  addBos?: boolean;
  /** Chat replies end at these strings besides end-of-generation tokens (default: the chat format's, ["\n"] for PSM's). */
  chatStop?: string[];
  /** "psm" or a template file instead of the file's own tokenizer.chat_template. */
  chatTemplate?: string;
}

interface Loaded {
  llama: Llama;
  model: NlModel;
  context: LlamaContext;
  sequence: LlamaContextSequence;
  chat: ChatTemplate;
  /** The file's control and user-defined tokens (what a template may write as special tokens). */
  specialTokens: string[];
}

/** Control (3) and user-defined (4) tokens of a GGUF header's vocabulary. */
function ggufSpecialTokens(header: ReturnType<typeof readGgufHeader>): string[] {
  const tokens = header.metadata.get('tokenizer.ggml.tokens');
  const types = header.metadata.get('tokenizer.ggml.token_type');
  if (tokens?.type !== GgufValueType.ARRAY || types?.type !== GgufValueType.ARRAY) return [];
  return tokens.value.filter(
    (t, i): t is string => typeof t === 'string' && (types.value[i] === 3 || types.value[i] === 4),
  );
}

/** True when node-llama-cpp can be imported here. */
export async function nodeLlamaCppAvailable(): Promise<boolean> {
  try {
    await import('node-llama-cpp');
    return true;
  } catch {
    return false;
  }
}

/** Files (by path, size and time) that passed checkGgufModel in this process: a multi-GB scan is done once. */
const checkedFiles = new Set<string>();

/**
 * Checks a GGUF model file with PSM Lab's own reader before llama.cpp sees it (header, lengths and offsets
 * against the file size, finite weights), so a corrupt file gets an error naming the file and the problem
 * rather than llama.cpp's. Throws a plain Error: a corrupt file is not worth retrying.
 */
export function checkGgufModel(
  file: string,
  onProgress?: (scannedBytes: number, totalBytes: number) => void,
): void {
  const abs = path.resolve(file);
  let stamp: string;
  try {
    const st = fs.statSync(abs);
    stamp = `${abs}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    throw new Error(`${abs}: cannot read GGUF file: ${(e as Error).message}`);
  }
  if (checkedFiles.has(stamp)) return;
  checkGgufModelFile(abs, onProgress);
  checkedFiles.add(stamp);
}

export class GgufProvider implements Provider {
  readonly id: string;
  readonly capabilities: ProviderCapabilities = { chat: true, completion: true, logprobs: true, score: true };
  private loading?: Promise<Loaded>;
  private readonly lock = new Semaphore(1);

  constructor(private readonly opts: GgufOptions) {
    this.id = `gguf:${path.basename(opts.modelPath)}`;
  }

  identity(): ProviderIdentity {
    const abs = path.resolve(this.opts.modelPath);
    let stamp = '';
    try {
      const st = fs.statSync(abs);
      stamp = `${st.size}:${Math.floor(st.mtimeMs)}`;
    } catch {
      // Missing file: generate() reports it.
    }
    return {
      kind: 'gguf',
      location: abs,
      model: path.basename(abs),
      variant: {
        stamp,
        chatStop: JSON.stringify(this.opts.chatStop ?? ['\n']),
        addBos: String(this.opts.addBos ?? 'file'),
        ...(this.opts.chatTemplate === undefined ? {} : { chatTemplate: this.opts.chatTemplate }),
      },
    };
  }

  private load(): Promise<Loaded> {
    this.loading ??= (async () => {
      const file = path.resolve(this.opts.modelPath);
      if (!fs.existsSync(file)) throw new ProviderError(`${this.id}: ${file} not found`);
      checkGgufModel(file);
      const header = readGgufHeader(file);
      const chat = chatTemplateForGguf(header, this.opts.chatTemplate);
      let mod: typeof import('node-llama-cpp');
      try {
        mod = await import('node-llama-cpp');
      } catch (e) {
        throw new ProviderError(
          `${this.id}: node-llama-cpp is not installed (npm install node-llama-cpp): ${(e as Error).message}`,
        );
      }
      const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error });
      const model = await llama.loadModel({ modelPath: file }).catch((e: unknown) => {
        throw new Error(`${this.id}: llama.cpp cannot load ${file}: ${(e as Error).message}`, { cause: e });
      });
      const contextSize = this.opts.contextSize ?? Math.min(model.trainContextSize, 4096);
      const context = await model.createContext({
        contextSize,
        batchSize: Math.min(contextSize, 512),
        sequences: 1,
        // llama.cpp's spinning thread barrier collapses on a small shared machine; one thread is the safe default.
        threads: this.opts.threads ?? 1,
        // F32 keys/values: log-probabilities comparable with the local engine's.
        experimentalKvCacheKeyType: 'F32',
        experimentalKvCacheValueType: 'F32',
      });
      return {
        llama,
        model,
        context,
        sequence: context.getSequence(),
        chat,
        specialTokens: ggufSpecialTokens(header),
      };
    })();
    this.loading.catch(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private encode(m: NlModel, text: string, specials: boolean): Token[] {
    const ids = m.tokenize(text, specials);
    const bos = m.tokens.bos;
    const addBos = this.opts.addBos ?? m.tokens.shouldPrependBosToken;
    return addBos && bos !== null ? [bos, ...ids] : ids;
  }

  /**
   * A chat in the file's format, ending with the generation prompt. The PSM format is plain text after the BOS
   * (separator) token; a model's template writes its own special tokens, and the messages' text is never read as one.
   */
  private encodeChat(L: Loaded, messages: readonly ChatMessage[]): Token[] {
    if (L.chat.kind === 'psm') {
      // The PSM format starts with the separator (the template's bos_token), whatever the file says about BOS on raw
      // prompts (PSM Lab's exports say no): as the local engine prompts the same model.
      const ids = L.model.tokenize(formatChat(messages, { bosToken: '' }), false);
      const bos = L.model.tokens.bos;
      return (this.opts.addBos ?? true) && bos !== null ? [bos, ...ids] : ids;
    }
    const text = L.chat.render(messages);
    return encodeRenderedChat(text, messages, L.specialTokens, {
      encodeOrdinary: (t) => L.model.tokenize(t, false),
      specialId: (t) => {
        const ids = L.model.tokenize(t, true);
        return ids.length === 1 ? ids[0] : undefined;
      },
    }) as Token[];
  }

  /** Full next-token distribution after `input` (fed into the sequence), as log-probabilities by token id. */
  private async next(seq: LlamaContextSequence, input: Token[]): Promise<Map<Token, number>> {
    const items: ControlledEvaluateInputItem[] = input.map((t, i) =>
      i === input.length - 1
        ? [t, { generateNext: { probabilities: true, options: { temperature: 0 } } }]
        : t,
    );
    const out = await seq.controlledEvaluate(items);
    const probs = out[input.length - 1]?.next.probabilities;
    if (!probs) throw new ProviderError(`${this.id}: llama.cpp returned no probabilities`);
    for (const p of probs.values()) if (!Number.isFinite(p)) throw this.nonFinite(p);
    return probs;
  }

  async generate(req: GenerateRequest, opts: CallOptions = {}): Promise<GenerateResponse> {
    checkGenerateRequest(req, this.id);
    const L = await this.load();
    return this.lock.run(async () => {
      const chat = req.messages !== undefined;
      const prompt = chat ? this.encodeChat(L, req.messages!) : this.encode(L.model, req.prompt!, true);
      const ctx = L.context.contextSize;
      if (prompt.length >= ctx)
        throw new ProviderError(`${this.id}: the prompt has ${prompt.length} tokens; the context is ${ctx}`);
      const budget = Math.min(req.maxTokens, ctx - prompt.length);
      const stops = [...(chat ? (this.opts.chatStop ?? L.chat.stopStrings) : []), ...(req.stop ?? [])].filter(
        (s) => s.length > 0,
      );
      const k = req.topLogprobs ?? 0;
      const wantLogprobs = req.logprobs || k > 0;
      const rng = new Rng(req.seed ?? 0);
      const temperature = req.temperature ?? 1;
      const topP = req.topP ?? 1;
      await L.sequence.clearHistory();
      const ids: Token[] = [];
      const tokens: (TokenLogprob & { offset: number })[] = [];
      let text = '';
      let cut = -1;
      let finishReason: 'stop' | 'length' = 'length';
      let input: Token[] = prompt;
      const stream = new ReplyStream(stops, chat && L.chat.replyLeadingSpace);
      for (let step = 0; step < budget; step++) {
        if (opts.signal?.aborted) throw new AbortError();
        const probs = await this.next(L.sequence, input);
        const id = this.sample(probs, temperature, topP, rng);
        if (L.model.isEogToken(id)) {
          finishReason = 'stop';
          break;
        }
        const before = text.length;
        ids.push(id);
        text = L.model.detokenize(ids, false);
        if (wantLogprobs) {
          const t: TokenLogprob & { offset: number } = {
            token: L.model.detokenize([id], false),
            logprob: Math.log(probs.get(id) ?? 0),
            offset: before,
          };
          if (k > 0) {
            t.top = [];
            for (const [tid, p] of probs) {
              if (t.top.length >= k) break;
              t.top.push({ token: L.model.detokenize([tid], false), logprob: Math.log(p) });
            }
          }
          tokens.push(t);
        }
        cut = earliestStop(text, before, stops, cut);
        if (cut >= 0) {
          finishReason = 'stop';
          break;
        }
        if (opts.onText) {
          const piece = stream.piece(text);
          if (piece) opts.onText(piece);
        }
        input = [id];
        await yieldToEventLoop();
      }
      const end = cut >= 0 ? cut : text.length;
      const lead = stream.lead(text);
      if (opts.onText) {
        const rest = stream.rest(text, end);
        if (rest) opts.onText(rest);
      }
      const res: GenerateResponse = {
        text: text.slice(Math.min(lead, end), end),
        finishReason,
        usage: { promptTokens: prompt.length, completionTokens: ids.length },
        model: path.basename(this.opts.modelPath),
      };
      if (wantLogprobs)
        res.tokens = tokens.filter((t) => cut < 0 || t.offset < cut).map(({ offset: _o, ...t }) => t);
      return res;
    }, opts.signal);
  }

  /** llama.cpp computed NaN: the weights are broken in a way the file checks could not see (e.g. quantized values). */
  private nonFinite(value: number): Error {
    return new Error(
      `${this.id}: llama.cpp returned a probability of ${value} for ${this.opts.modelPath}; the model's weights are likely corrupt`,
    );
  }

  /** PSM Lab's sampler over llama.cpp's probabilities (log-probabilities rebuilt as logits). */
  private sample(probs: Map<Token, number>, temperature: number, topP: number, rng: Rng): Token {
    if (temperature <= 0) return probs.keys().next().value as Token;
    let maxId = 0;
    for (const id of probs.keys()) if (id > maxId) maxId = id;
    const logits = new Float32Array(maxId + 1).fill(-Infinity);
    for (const [id, p] of probs) logits[id] = Math.log(p);
    return sampleFromLogits(logits, temperature, topP, rng) as Token;
  }

  score(prompt: string, continuations: string[], opts: CallOptions = {}): Promise<number[]> {
    return this.scoreAfter((L) => this.encode(L.model, prompt, true), continuations, opts);
  }

  /** Log-probabilities of replies after a chat's generation prompt (see Provider.scoreChat). */
  scoreChat(messages: ChatMessage[], replies: string[], opts: CallOptions = {}): Promise<number[]> {
    return this.scoreAfter((L) => this.encodeChat(L, messages), replies, opts, true);
  }

  private async scoreAfter(
    promptOf: (L: Loaded) => Token[],
    continuations: string[],
    opts: CallOptions,
    chatReplies = false,
  ): Promise<number[]> {
    const L = await this.load();
    return this.lock.run(async () => {
      const promptIds = promptOf(L);
      const out: number[] = [];
      for (const [i, raw] of continuations.entries()) {
        if (opts.signal?.aborted) throw new AbortError();
        const c = chatReplies && !L.chat.replyLeadingSpace && raw.startsWith(' ') ? raw.slice(1) : raw;
        const cont = L.model.tokenize(c, true);
        if (cont.length === 0) throw new ProviderError(`${this.id}: continuation ${i} is empty`);
        const seq = [...promptIds, ...cont];
        if (seq.length > L.context.contextSize)
          throw new ProviderError(
            `${this.id}: prompt + continuation ${i} need ${seq.length} tokens; the context is ${L.context.contextSize}`,
          );
        await L.sequence.clearHistory();
        const items: ControlledEvaluateInputItem[] = seq
          .slice(0, -1)
          .map((t, j) =>
            j >= promptIds.length - 1
              ? [t, { generateNext: { probabilities: true, options: { temperature: 0 } } }]
              : t,
          );
        const res = await L.sequence.controlledEvaluate(items);
        let sum = 0;
        for (let j = 0; j < cont.length; j++) {
          const probs = res[promptIds.length - 1 + j]?.next.probabilities;
          if (!probs) throw new ProviderError(`${this.id}: llama.cpp returned no probabilities`);
          sum += Math.log(probs.get(cont[j]) ?? 0);
        }
        if (Number.isNaN(sum)) throw this.nonFinite(sum);
        out.push(sum);
        await yieldToEventLoop();
      }
      return out;
    }, opts.signal);
  }

  async close(): Promise<void> {
    const loading = this.loading;
    this.loading = undefined;
    if (!loading) return;
    const L = await loading.catch(() => undefined);
    if (!L) return;
    await L.context.dispose();
    await L.model.dispose();
  }
}
