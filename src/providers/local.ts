/**
 * The local engine as a provider: a model folder run in-process (chat in the model's chat format: its own
 * template, or PSM Lab's for its own models; raw completion, per-token log-probabilities, continuation scoring, and PSM extras: steering, capping).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chatTemplateForFolder } from '../interop/chat-template-source.ts';
import { MODEL_FILE } from '../model/weights.ts';
import { LocalEngine, type EngineOptions } from './local-engine.ts';
import { NonFiniteLogitsError } from '../model/generate.ts';
import { buildInterventionHooks, InterventionError } from './interventions.ts';
import type {
  CallOptions,
  ChatMessage,
  GenerateRequest,
  GenerateResponse,
  Provider,
  ProviderCapabilities,
  ProviderIdentity,
} from './types.ts';
import { checkGenerateRequest, ProviderError } from './types.ts';

export class LocalProvider implements Provider {
  readonly id: string;
  readonly capabilities: ProviderCapabilities = { chat: true, completion: true, logprobs: true, score: true };
  private engineRef?: LocalEngine;

  /** `source` is a model folder (loaded on first use) or an engine already in memory. */
  constructor(
    private readonly source: string | LocalEngine,
    private readonly engineOptions: EngineOptions = {},
  ) {
    this.id = typeof source === 'string' ? `local:${source}` : `local:${source.id}`;
    if (typeof source !== 'string') this.engineRef = source;
  }

  get engine(): LocalEngine {
    // The queue of an in-process provider is unbounded: its callers wait rather than fail.
    this.engineRef ??= LocalEngine.load(this.source as string, {
      maxQueue: Infinity,
      maxTokens: 1 << 20,
      ...this.engineOptions,
    });
    return this.engineRef;
  }

  identity(): ProviderIdentity {
    if (typeof this.source !== 'string') {
      return {
        kind: 'local',
        location: `memory:${this.source.id}`,
        model: this.source.id,
        variant: {
          chatStop: JSON.stringify(this.source.chatStop),
          ...(this.source.chat.kind === 'psm' ? {} : { chatTemplate: this.source.chat.id }),
        },
      };
    }
    const location = path.resolve(this.source);
    // A model retrained in place must not be answered from the cache: the weights file's size and time are part of the identity.
    let stamp = '';
    try {
      const st = fs.statSync(path.join(location, MODEL_FILE));
      stamp = `${st.size}:${Math.floor(st.mtimeMs)}`;
    } catch {
      // Missing folder: generate() reports it.
    }
    // The chat format changes every chat prompt: a model's own template is part of the identity (PSM Lab's format,
    // the one identities had before templates, is left out so earlier caches and audits stay valid).
    let chatTemplate: string | undefined;
    try {
      const t = chatTemplateForFolder(location, this.engineOptions.chatTemplateFile);
      if (t.kind !== 'psm') chatTemplate = t.id;
    } catch (e) {
      chatTemplate = `unreadable: ${(e as Error).message}`;
    }
    return {
      kind: 'local',
      location,
      model: path.basename(location),
      variant: {
        stamp,
        chatStop: JSON.stringify(this.engineOptions.chatStop ?? (chatTemplate ? [] : ['\n'])),
        ...(chatTemplate ? { chatTemplate } : {}),
      },
    };
  }

  async generate(req: GenerateRequest, opts: CallOptions = {}): Promise<GenerateResponse> {
    try {
      return await this.generateLocally(req, opts);
    } catch (e) {
      // Bad interventions and non-finite outputs are the request's doing: asking again gives the same answer.
      if (e instanceof InterventionError || e instanceof NonFiniteLogitsError)
        throw new ProviderError(`${this.id}: ${e.message}`, { retryable: false, cause: e });
      throw e;
    }
  }

  private async generateLocally(req: GenerateRequest, opts: CallOptions): Promise<GenerateResponse> {
    checkGenerateRequest(req, this.id);
    const engine = this.engine;
    const chat = req.messages !== undefined;
    const promptIds = chat ? engine.encodeChat(req.messages!) : engine.encodeText(req.prompt!);
    const hooks = buildInterventionHooks(req.psm, engine.model.config, engine.vectors, promptIds.length);
    const wantLogprobs = req.logprobs || (req.topLogprobs ?? 0) > 0;
    const out = await engine.generate({
      promptIds,
      maxTokens: req.maxTokens,
      temperature: req.temperature ?? 1,
      topP: req.topP ?? 1,
      seed: req.seed ?? 0,
      stop: [...(chat ? engine.chatStop : []), ...(req.stop ?? [])],
      topLogprobs: wantLogprobs ? (req.topLogprobs ?? 0) : null,
      hooks,
      stripLeadingSpace: chat && engine.chat.replyLeadingSpace,
      signal: opts.signal,
    });
    const res: GenerateResponse = {
      text: out.text,
      finishReason: out.finishReason,
      usage: { promptTokens: out.promptTokens, completionTokens: out.completionTokens },
      model: engine.id,
    };
    if (wantLogprobs) {
      res.tokens = out.tokens.map((t) => ({
        token: t.text,
        logprob: t.logprob,
        top: t.top?.map((a) => ({ token: a.text, logprob: a.logprob })),
      }));
    }
    return res;
  }

  score(prompt: string, continuations: string[], opts: CallOptions = {}): Promise<number[]> {
    return this.engine.score(prompt, continuations, undefined, opts.signal);
  }

  scoreChat(messages: ChatMessage[], replies: string[], opts: CallOptions = {}): Promise<number[]> {
    return this.engine.scoreChat(messages, replies, undefined, opts.signal);
  }

  async close(): Promise<void> {
    // Nothing native to free; dropping the reference lets the weights be collected.
    if (typeof this.source === 'string') this.engineRef = undefined;
  }
}
