/**
 * The provider interface: one narrow way to ask any model for text and, where the backend gives them, for
 * log-probabilities. Every backend (the local engine, a GGUF file through llama.cpp, an OpenAI-compatible
 * endpoint) answers with the same normalised response, so measurement code never sees backend details.
 */

import type { ChatMessage } from '../interop/chat-template.ts';

/** A chat turn, as the chat template (interop, the lowest layer that needs it) defines and formats it. */
export type { ChatMessage };

/** One steering, capping or ablation intervention (PSM extras; only PSM Lab backends apply them). */
export interface PsmIntervention {
  /** Hook point, e.g. "blocks.2.hook_resid_post"; optional when a named vector carries its own hook. */
  hook?: string;
  /** The direction: numbers (length = model dim) or the name of a vector the server/engine knows. */
  vector: number[] | string;
  /** Steering strength (steer only). */
  alpha?: number;
  /** Capping bounds on the projection (cap only). */
  min?: number;
  max?: number;
  /** Which positions: every position (default), the prompt only, or the generated tokens only. */
  positions?: 'all' | 'prompt' | 'generated';
}

export interface PsmExtras {
  steer?: PsmIntervention[];
  cap?: PsmIntervention[];
  ablate?: PsmIntervention[];
}

export interface GenerateRequest {
  /** A chat (formatted by the backend's chat format) ... */
  messages?: ChatMessage[];
  /** ... or a raw text prompt to continue. Exactly one of the two. */
  prompt?: string;
  maxTokens: number;
  /** 0 is greedy; default 1. */
  temperature?: number;
  topP?: number;
  /** Seed for sampling; backends that support seeds reproduce a sample from it. */
  seed?: number;
  stop?: string[];
  /** Ask for the chosen tokens' log-probabilities. */
  logprobs?: boolean;
  /** Also the k most likely alternatives at each step (0-20); implies logprobs. */
  topLogprobs?: number;
  psm?: PsmExtras;
}

export interface TopLogprob {
  token: string;
  logprob: number;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  top?: TopLogprob[];
}

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'other';

/** The normalised response of every provider. */
export interface GenerateResponse {
  text: string;
  finishReason: FinishReason;
  /** Per generated token, when logprobs were asked for and the backend gives them. */
  tokens?: TokenLogprob[];
  usage?: { promptTokens: number; completionTokens: number };
  /** Model name as the backend reports it. */
  model: string;
  /** True when this answer came from the on-disk cache. */
  cached?: boolean;
}

export interface ProviderCapabilities {
  chat: boolean;
  /** Raw text completion (no chat formatting). */
  completion: boolean;
  /** Per-token log-probabilities (and top alternatives) on generated tokens. */
  logprobs: boolean;
  /** `score()`: log-probabilities of given continuations. */
  score: boolean;
}

/**
 * What identifies a provider's answers for caching: never a secret. Two providers with the same identity
 * give interchangeable answers to the same request.
 */
export interface ProviderIdentity {
  kind: 'local' | 'gguf' | 'openai';
  /** Base URL for HTTP endpoints, the resolved file or folder path for local ones. */
  location: string;
  model: string;
  /** Anything else that changes answers (e.g. the chat format). Never an API key. */
  variant?: Record<string, string | number | boolean>;
}

export interface CallOptions {
  signal?: AbortSignal;
  /**
   * Streams the reply of `generate`: called with each piece of text as the backend produces it, in order and
   * never with an empty string, so the pieces joined are the answer's text. The returned GenerateResponse is
   * still the whole answer, exactly what the same call without onText gives. Providers that cannot stream
   * ignore it (the caller then gets the whole text only when the call returns); a cached answer delivers its
   * text in one call. A failure after the first piece is an error, never a silent restart.
   */
  onText?: (delta: string) => void;
}

export interface Provider {
  /** Short human-readable label, e.g. "local:models/base" or "openai:gpt-4o-mini". */
  readonly id: string;
  readonly capabilities: ProviderCapabilities;
  identity(): ProviderIdentity;
  generate(req: GenerateRequest, opts?: CallOptions): Promise<GenerateResponse>;
  /**
   * Natural-log probability of each continuation after the prompt (sum over its tokens). Present only where
   * the backend gives log-probabilities of given text.
   */
  score?(prompt: string, continuations: string[], opts?: CallOptions): Promise<number[]>;
  /**
   * Natural-log probability of each reply after a chat's generation prompt, in the model's own chat format (a reply
   * written for the PSM format, " <text>", loses its leading space under a model's template). Present where the
   * backend formats chats itself and gives log-probabilities of given text.
   */
  scoreChat?(messages: ChatMessage[], replies: string[], opts?: CallOptions): Promise<number[]>;
  /** Frees native resources or sockets; safe to call twice. */
  close?(): Promise<void>;
}

/** Raised by providers with a message that names the backend and what went wrong. */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly options: { status?: number; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'ProviderError';
  }
}

/** Checks that a request names exactly one of messages/prompt and has sane numbers; throws ProviderError. */
export function checkGenerateRequest(req: GenerateRequest, who: string): void {
  const hasChat = req.messages !== undefined;
  const hasPrompt = req.prompt !== undefined;
  if (hasChat === hasPrompt)
    throw new ProviderError(`${who}: a request needs exactly one of messages or prompt`);
  if (hasChat && req.messages!.length === 0) throw new ProviderError(`${who}: messages is empty`);
  if (!Number.isInteger(req.maxTokens) || req.maxTokens < 0)
    throw new ProviderError(`${who}: maxTokens must be a non-negative integer, got ${req.maxTokens}`);
  if (req.temperature !== undefined && !(req.temperature >= 0))
    throw new ProviderError(`${who}: temperature must be >= 0, got ${req.temperature}`);
  if (req.topP !== undefined && !(req.topP > 0 && req.topP <= 1))
    throw new ProviderError(`${who}: topP must be in (0, 1], got ${req.topP}`);
  if (
    req.topLogprobs !== undefined &&
    !(Number.isInteger(req.topLogprobs) && req.topLogprobs >= 0 && req.topLogprobs <= 20)
  ) {
    throw new ProviderError(`${who}: topLogprobs must be an integer in [0, 20], got ${req.topLogprobs}`);
  }
}
