/**
 * Any OpenAI-compatible endpoint (psm serve, llama.cpp server, vLLM, Ollama, hosted APIs) as a provider,
 * over fetch:
 *
 * - a concurrency limit (semaphore) on requests in flight;
 * - retries with exponential backoff and jitter on 429, 408, 5xx, network errors, timeouts and garbage
 *   answers (a Retry-After header is honoured, capped by the backoff maximum); other 4xx fail at once with
 *   the endpoint's own message;
 * - a timeout per attempt that covers the whole response, body included (a hanging endpoint cannot stall
 *   a run);
 * - every answer validated (zod) before use, so malformed JSON never reaches measurement code or a cache.
 *
 * Scoring uses the legacy completions API with `echo: true, logprobs: 0` (vLLM, psm serve and OpenAI's
 * older completion models support it; llama.cpp's server does not): the continuation's log-probability is
 * the sum over the echoed tokens that cover it (a token straddling the prompt/continuation boundary counts).
 */
import { z } from 'zod';
import { redactLocation } from './cache.ts';
import { AbortError, backoffDelay, parseRetryAfter, Semaphore, sleep } from './limit.ts';
import {
  checkGenerateRequest,
  ProviderError,
  type CallOptions,
  type FinishReason,
  type GenerateRequest,
  type GenerateResponse,
  type Provider,
  type ProviderCapabilities,
  type ProviderIdentity,
  type TokenLogprob,
} from './types.ts';

export interface OpenAICompatOptions {
  /** Base URL including /v1, e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1. */
  baseUrl: string;
  model: string;
  /** Sent as "Authorization: Bearer ..."; never part of a cache key or an error message. */
  apiKey?: string;
  /** Extra headers (never cached or logged). */
  headers?: Record<string, string>;
  /** Requests in flight at once (default 4). */
  maxConcurrency?: number;
  /** Retries after the first attempt (default 5). */
  maxRetries?: number;
  /** Per-attempt timeout in ms, whole response included (default 60 s). */
  timeoutMs?: number;
  /** First backoff delay in ms (default 500), doubled each retry up to backoffMaxMs (default 30 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** 'echo': score continuations through /completions echo logprobs (default); 'off': no score(). */
  scoring?: 'echo' | 'off';
  /** Send the PSM extras field (default true; hosted APIs reject unknown fields, so their requests never carry it unless asked). */
  sendPsmExtras?: boolean;
  /** Injectable for tests. */
  fetch?: typeof fetch;
  random?: () => number;
  /** Called before each retry (e.g. for a progress line). */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
}

const Num = z.number();
const TopLp = z.object({ token: z.string(), logprob: Num });
const ChatResponse = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullish(), refusal: z.string().nullish() }),
        finish_reason: z.string().nullish(),
        logprobs: z
          .object({
            content: z
              .array(z.object({ token: z.string(), logprob: Num, top_logprobs: z.array(TopLp).nullish() }))
              .nullish(),
          })
          .nullish(),
      }),
    )
    .min(1),
  usage: z.object({ prompt_tokens: Num, completion_tokens: Num }).partial().nullish(),
});

const CompletionLogprobs = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(Num.nullable()),
  top_logprobs: z.array(z.record(z.string(), Num).nullable()).nullish(),
  text_offset: z.array(Num).nullish(),
});
const CompletionResponse = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        index: z.number().int().optional(),
        text: z.string(),
        finish_reason: z.string().nullish(),
        logprobs: CompletionLogprobs.nullish(),
      }),
    )
    .min(1),
  usage: z.object({ prompt_tokens: Num, completion_tokens: Num }).partial().nullish(),
});

const ErrorBody = z.object({ error: z.object({ message: z.string() }).passthrough() });

class RetryableError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
  }
}

function finishOf(x: string | null | undefined): FinishReason {
  if (x === 'stop' || x === 'length' || x === 'content_filter') return x;
  if (x === 'eos' || x === 'stop_sequence' || x === 'end_turn') return 'stop';
  return 'other';
}

function describeBody(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 200)}...` : t || '(empty body)';
}

export class OpenAICompatProvider implements Provider {
  readonly id: string;
  readonly capabilities: ProviderCapabilities;
  score?: (prompt: string, continuations: string[], opts?: CallOptions) => Promise<number[]>;
  /** Base URL without credentials (query kept: some endpoints need e.g. api-version). */
  private readonly base: URL;
  private readonly basicAuth?: string;
  /** Strings never to show in an error message. */
  private readonly secrets: string[];
  private readonly limit: Semaphore;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: OpenAICompatOptions) {
    if (!opts.model) throw new ProviderError('openai provider: a model name is required');
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new ProviderError(
        'openai provider: the base URL is not a URL (expected e.g. http://127.0.0.1:8000/v1)',
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new ProviderError(
        `openai provider: the base URL must start with http:// or https://, got ${url.protocol}`,
      );
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    // fetch refuses URLs with credentials: send them as basic auth (unless an API key is given).
    if ((user || password) && !opts.apiKey)
      this.basicAuth = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    url.username = '';
    url.password = '';
    url.pathname = url.pathname.replace(/\/+$/, '');
    this.base = url;
    this.secrets = [
      opts.apiKey,
      user,
      password,
      ...Object.values(opts.headers ?? {}),
      ...[...url.searchParams.values()],
    ].filter((x): x is string => typeof x === 'string' && x.length >= 4);
    this.id = `openai:${opts.model}@${url.host}`;
    this.limit = new Semaphore(opts.maxConcurrency ?? 4);
    this.fetchFn = opts.fetch ?? fetch;
    const scoring = (opts.scoring ?? 'echo') === 'echo';
    this.capabilities = { chat: true, completion: true, logprobs: true, score: scoring };
    if (scoring) this.score = (prompt, continuations, o) => this.scoreEcho(prompt, continuations, o);
  }

  identity(): ProviderIdentity {
    return { kind: 'openai', location: redactLocation(this.base.toString()), model: this.opts.model };
  }

  private redact(message: string): string {
    let out = message;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }

  private urlFor(path: string): string {
    const u = new URL(this.base.toString());
    u.pathname = `${u.pathname}${path}`;
    return u.toString();
  }

  /** POSTs JSON with retries; returns the validated body. */
  private async post<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    signal?: AbortSignal,
  ): Promise<z.output<S>> {
    const maxRetries = this.opts.maxRetries ?? 5;
    try {
      return await this.postWithRetries(path, body, schema, maxRetries, signal);
    } catch (e) {
      if (e instanceof Error) e.message = this.redact(e.message);
      throw e;
    }
  }

  private postWithRetries<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    maxRetries: number,
    signal?: AbortSignal,
  ): Promise<z.output<S>> {
    return this.limit.run(async () => {
      let last: Error | undefined;
      for (let attempt = 0; attempt <= maxRetries; attempt++) {
        if (signal?.aborted) throw new AbortError();
        try {
          return await this.attempt(path, body, schema, signal);
        } catch (e) {
          if (!(e instanceof RetryableError)) throw e;
          last = e;
          if (attempt === maxRetries) break;
          const max = this.opts.backoffMaxMs ?? 30_000;
          const delay = Math.min(
            max,
            e.retryAfterMs ?? backoffDelay(attempt, this.opts.backoffBaseMs ?? 500, max, this.opts.random),
          );
          this.opts.onRetry?.({ attempt: attempt + 1, delayMs: delay, reason: this.redact(e.message) });
          await sleep(delay, signal);
        }
      }
      throw new ProviderError(`${this.id}: giving up after ${maxRetries + 1} attempts: ${last?.message}`, {
        retryable: true,
        status: (last as RetryableError | undefined)?.status,
      });
    }, signal);
  }

  private async attempt<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    signal?: AbortSignal,
  ): Promise<z.output<S>> {
    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    const url = this.urlFor(path);
    try {
      let res: Response;
      let text: string;
      try {
        res = await this.fetchFn(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            ...(this.opts.apiKey
              ? { authorization: `Bearer ${this.opts.apiKey}` }
              : this.basicAuth
                ? { authorization: this.basicAuth }
                : {}),
            ...this.opts.headers,
          },
          body: JSON.stringify(body),
          signal: ac.signal,
        });
        text = await res.text();
      } catch (e) {
        if (signal?.aborted) throw new AbortError();
        if (timedOut) throw new RetryableError(`POST ${path} timed out after ${timeoutMs} ms`);
        throw new RetryableError(
          `POST ${path} failed: ${(e as Error).message}${(e as Error).cause ? ` (${String(((e as Error).cause as Error).message ?? (e as Error).cause)})` : ''}`,
        );
      }
      if (res.status === 429 || res.status === 408 || res.status === 409 || res.status >= 500) {
        throw new RetryableError(
          `POST ${path} answered ${res.status}: ${this.errorMessage(text)}`,
          parseRetryAfter(res.headers.get('retry-after')),
          res.status,
        );
      }
      if (res.status < 200 || res.status >= 300) {
        throw new ProviderError(
          `${this.id}: POST ${path} answered ${res.status}: ${this.errorMessage(text)}`,
          { status: res.status, retryable: false },
        );
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new RetryableError(
          `POST ${path} returned a body that is not JSON: ${describeBody(text)}`,
          undefined,
          res.status,
        );
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new RetryableError(
          `POST ${path} returned an unexpected response (${issue.path.join('.') || 'body'}: ${issue.message}): ${describeBody(text)}`,
          undefined,
          res.status,
        );
      }
      return parsed.data;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private errorMessage(text: string): string {
    try {
      const e = ErrorBody.safeParse(JSON.parse(text));
      if (e.success) return e.data.error.message;
    } catch {
      // not JSON
    }
    return describeBody(text);
  }

  async generate(req: GenerateRequest, opts: CallOptions = {}): Promise<GenerateResponse> {
    checkGenerateRequest(req, this.id);
    const wantLogprobs = req.logprobs || (req.topLogprobs ?? 0) > 0;
    const common: Record<string, unknown> = {
      model: this.opts.model,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      seed: req.seed,
      stop: req.stop && req.stop.length ? req.stop : undefined,
    };
    if (req.psm && (this.opts.sendPsmExtras ?? true)) common.psm = req.psm;
    if (req.messages) {
      const body = {
        ...common,
        messages: req.messages,
        ...(wantLogprobs ? { logprobs: true, top_logprobs: req.topLogprobs ?? 0 } : {}),
      };
      const r = await this.post('/chat/completions', body, ChatResponse, opts.signal);
      const c = r.choices[0];
      const res: GenerateResponse = {
        text: c.message.content ?? '',
        finishReason: finishOf(c.finish_reason),
        model: r.model ?? this.opts.model,
      };
      if (r.usage?.prompt_tokens !== undefined)
        res.usage = { promptTokens: r.usage.prompt_tokens, completionTokens: r.usage.completion_tokens ?? 0 };
      if (wantLogprobs && c.logprobs?.content) {
        res.tokens = c.logprobs.content.map((t) => ({
          token: t.token,
          logprob: t.logprob,
          top: t.top_logprobs?.map((a) => ({ token: a.token, logprob: a.logprob })),
        }));
      }
      return res;
    }
    const body = {
      ...common,
      prompt: req.prompt,
      ...(wantLogprobs ? { logprobs: req.topLogprobs ?? 0 } : {}),
    };
    const r = await this.post('/completions', body, CompletionResponse, opts.signal);
    const c = r.choices[0];
    const res: GenerateResponse = {
      text: c.text,
      finishReason: finishOf(c.finish_reason),
      model: r.model ?? this.opts.model,
    };
    if (r.usage?.prompt_tokens !== undefined)
      res.usage = { promptTokens: r.usage.prompt_tokens, completionTokens: r.usage.completion_tokens ?? 0 };
    if (wantLogprobs && c.logprobs) res.tokens = completionTokens(c.logprobs);
    return res;
  }

  private async scoreEcho(
    prompt: string,
    continuations: string[],
    opts: CallOptions = {},
  ): Promise<number[]> {
    if (continuations.length === 0) return [];
    const texts = continuations.map((c) => prompt + c);
    const body = {
      model: this.opts.model,
      prompt: texts,
      max_tokens: 1,
      temperature: 0,
      echo: true,
      logprobs: 0,
    };
    const r = await this.post('/completions', body, CompletionResponse, opts.signal);
    if (r.choices.length !== texts.length)
      throw new ProviderError(
        `${this.id}: echo scoring asked for ${texts.length} prompts, got ${r.choices.length} choices`,
      );
    const choices = [...r.choices].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    return choices.map((c, i) => {
      const lp = c.logprobs;
      if (!lp || !lp.text_offset)
        throw new ProviderError(
          `${this.id}: the endpoint returned no echo log-probabilities (it may not support echo; score with a judge instead)`,
        );
      const start = prompt.length;
      const end = texts[i].length;
      let sum = 0;
      let count = 0;
      for (let j = 0; j < lp.tokens.length; j++) {
        const tokStart = lp.text_offset[j];
        const tokEnd = lp.text_offset[j + 1] ?? tokStart + lp.tokens[j].length;
        if (tokStart >= end || tokEnd <= start) continue;
        const x = lp.token_logprobs[j];
        if (x === null)
          throw new ProviderError(
            `${this.id}: echo log-probability missing for continuation token ${JSON.stringify(lp.tokens[j])}`,
          );
        sum += x;
        count++;
      }
      if (count === 0)
        throw new ProviderError(
          `${this.id}: no echoed tokens cover continuation ${i} (${JSON.stringify(continuations[i])})`,
        );
      return sum;
    });
  }
}

function completionTokens(lp: z.output<typeof CompletionLogprobs>): TokenLogprob[] {
  return lp.tokens.map((token, i) => {
    const t: TokenLogprob = { token, logprob: lp.token_logprobs[i] ?? NaN };
    const top = lp.top_logprobs?.[i];
    if (top)
      t.top = Object.entries(top)
        .map(([tk, l]) => ({ token: tk, logprob: l }))
        .sort((a, b) => b.logprob - a.logprob);
    return t;
  });
}
