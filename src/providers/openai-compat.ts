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
 * - every answer validated (zod) before use, so malformed JSON never reaches measurement code or a cache;
 * - streaming when the caller passes CallOptions.onText: `stream: true` (with the usage chunk), the server-sent
 *   events parsed by eventsource-parser, each chunk validated, the deltas handed on as they come and assembled
 *   into the same GenerateResponse the unstreamed call gives. An attempt is retried only until the first text
 *   reaches the caller; after that a failure (a broken chunk, an error event, a timeout) is an error.
 *
 * Scoring uses the legacy completions API with `echo: true, logprobs: 0` (vLLM, psm serve and OpenAI's
 * older completion models support it; llama.cpp's server does not): the continuation's log-probability is
 * the sum over the echoed tokens that cover it (a token straddling the prompt/continuation boundary counts).
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
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
const Usage = z.object({ prompt_tokens: Num, completion_tokens: Num }).partial().nullish();
const ChatText = z.object({ content: z.string().nullish(), refusal: z.string().nullish() });
const ChatLogprobs = z
  .object({
    content: z
      .array(z.object({ token: z.string(), logprob: Num, top_logprobs: z.array(TopLp).nullish() }))
      .nullish(),
  })
  .nullish();
const ChatResponse = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        index: z.number().int().optional(),
        message: ChatText,
        finish_reason: z.string().nullish(),
        logprobs: ChatLogprobs,
      }),
    )
    .min(1),
  usage: Usage,
});
/** A streamed chat chunk: the choice's new text in `delta`; the usage chunk has no choices. */
const ChatChunk = z.object({
  model: z.string().optional(),
  choices: z.array(
    z.object({
      index: z.number().int().optional(),
      delta: ChatText,
      finish_reason: z.string().nullish(),
      logprobs: ChatLogprobs,
    }),
  ),
  usage: Usage,
});

const CompletionLogprobs = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(Num.nullable()),
  top_logprobs: z.array(z.record(z.string(), Num).nullable()).nullish(),
  text_offset: z.array(Num).nullish(),
});
const CompletionChoice = z.object({
  index: z.number().int().optional(),
  text: z.string(),
  finish_reason: z.string().nullish(),
  logprobs: CompletionLogprobs.nullish(),
});
const CompletionResponse = z.object({
  model: z.string().optional(),
  choices: z.array(CompletionChoice).min(1),
  usage: Usage,
});
/** A streamed completion chunk: the same shape, the choice's new text in `text`; the usage chunk has no choices. */
const CompletionChunk = CompletionResponse.extend({ choices: z.array(CompletionChoice) });

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

/** What a failed fetch or body read says: the error's message and its cause's (undici hides the reason there). */
function describeFailure(e: unknown): string {
  const err = e as Error;
  const cause = err?.cause as Error | undefined;
  return `${err?.message ?? String(e)}${cause ? ` (${String(cause.message ?? cause)})` : ''}`;
}

/** Choice 0's share of an answer: one chunk of a stream, or a whole answer as a single piece. */
interface ReplyPiece {
  model?: string;
  text: string;
  finishReason?: string | null;
  /** The piece's tokens' log-probabilities, where the answer carries them. */
  tokens?: TokenLogprob[];
  usage?: z.output<typeof Usage>;
}

function chatPiece(r: z.output<typeof ChatResponse> | z.output<typeof ChatChunk>): ReplyPiece {
  const c = r.choices.find((x) => (x.index ?? 0) === 0);
  const said = c && ('message' in c ? c.message : c.delta);
  return {
    model: r.model,
    usage: r.usage,
    text: said?.content ?? '',
    finishReason: c?.finish_reason,
    tokens: c?.logprobs?.content?.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      top: t.top_logprobs?.map((a) => ({ token: a.token, logprob: a.logprob })),
    })),
  };
}

function completionPiece(r: z.output<typeof CompletionChunk>): ReplyPiece {
  const c = r.choices.find((x) => (x.index ?? 0) === 0);
  return {
    model: r.model,
    usage: r.usage,
    text: c?.text ?? '',
    finishReason: c?.finish_reason,
    tokens: c?.logprobs ? completionTokens(c.logprobs) : undefined,
  };
}

/**
 * Builds the normalised response from an answer's pieces. The unstreamed answer goes through it as one piece, so
 * a streamed answer and an unstreamed one are assembled by the same code.
 */
class ReplyAssembler {
  private text = '';
  private finishReason: string | null | undefined;
  private tokens: TokenLogprob[] | undefined;
  private usage: z.output<typeof Usage>;
  private model: string | undefined;

  constructor(
    private readonly wantLogprobs: boolean,
    private readonly requestedModel: string,
  ) {}

  add(p: ReplyPiece): void {
    this.text += p.text;
    this.model ??= p.model;
    if (p.finishReason) this.finishReason = p.finishReason;
    if (p.tokens) (this.tokens ??= []).push(...p.tokens);
    if (p.usage?.prompt_tokens !== undefined) this.usage = p.usage;
  }

  /** True once a finish reason arrived. */
  get finished(): boolean {
    return Boolean(this.finishReason);
  }

  result(): GenerateResponse {
    const res: GenerateResponse = {
      text: this.text,
      finishReason: finishOf(this.finishReason),
      model: this.model ?? this.requestedModel,
    };
    if (this.usage?.prompt_tokens !== undefined)
      res.usage = {
        promptTokens: this.usage.prompt_tokens,
        completionTokens: this.usage.completion_tokens ?? 0,
      };
    if (this.wantLogprobs && this.tokens) res.tokens = this.tokens;
    return res;
  }
}

/** An endpoint that generates: its path, its answer and chunk schemas, and what each says as a ReplyPiece. */
interface GenerateRoute<W extends z.ZodType, C extends z.ZodType> {
  path: string;
  whole: W;
  chunk: C;
  wholePiece(r: z.output<W>): ReplyPiece;
  chunkPiece(r: z.output<C>): ReplyPiece;
}

const CHAT_ROUTE: GenerateRoute<typeof ChatResponse, typeof ChatChunk> = {
  path: '/chat/completions',
  whole: ChatResponse,
  chunk: ChatChunk,
  wholePiece: chatPiece,
  chunkPiece: chatPiece,
};
const COMPLETION_ROUTE: GenerateRoute<typeof CompletionResponse, typeof CompletionChunk> = {
  path: '/completions',
  whole: CompletionResponse,
  chunk: CompletionChunk,
  wholePiece: completionPiece,
  chunkPiece: completionPiece,
};

/** One attempt's connection: its signal (the caller's abort or the timeout) and what a transport failure means. */
interface Exchange {
  signal: AbortSignal;
  /** A failed fetch or body read as the error to throw: AbortError, or a retryable timeout or network failure. */
  transportError(e: unknown): Error;
}

/** A stream's events are buffered up to this size; a longer event is garbage (a retryable failure). */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

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
  private post<S extends z.ZodType>(
    path: string,
    body: unknown,
    schema: S,
    signal?: AbortSignal,
  ): Promise<z.output<S>> {
    return this.withRetries(
      () =>
        this.attempt(
          path,
          body,
          'application/json',
          (res, ex) => this.readWhole(res, ex, path, schema),
          signal,
        ),
      signal,
    );
  }

  /**
   * Runs attempts under the concurrency limit until one succeeds, retrying RetryableErrors with backoff; every
   * other error ends the call at once. Error messages never carry a secret.
   */
  private async withRetries<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const maxRetries = this.opts.maxRetries ?? 5;
    try {
      return await this.limit.run(async () => {
        let last: RetryableError | undefined;
        for (let i = 0; i <= maxRetries; i++) {
          if (signal?.aborted) throw new AbortError();
          try {
            return await attempt();
          } catch (e) {
            if (!(e instanceof RetryableError)) throw e;
            last = e;
            if (i === maxRetries) break;
            const max = this.opts.backoffMaxMs ?? 30_000;
            const delay = Math.min(
              max,
              e.retryAfterMs ?? backoffDelay(i, this.opts.backoffBaseMs ?? 500, max, this.opts.random),
            );
            this.opts.onRetry?.({ attempt: i + 1, delayMs: delay, reason: this.redact(e.message) });
            await sleep(delay, signal);
          }
        }
        throw new ProviderError(`${this.id}: giving up after ${maxRetries + 1} attempts: ${last?.message}`, {
          retryable: true,
          status: last?.status,
        });
      }, signal);
    } catch (e) {
      if (e instanceof Error) e.message = this.redact(e.message);
      throw e;
    }
  }

  /**
   * One POST: sends the body, turns an error status into the error to throw (retryable or not), and hands a 2xx
   * response to `read`. The timeout covers the whole exchange, body included.
   */
  private async attempt<T>(
    path: string,
    body: unknown,
    accept: string,
    read: (res: Response, ex: Exchange) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    const ex: Exchange = {
      signal: ac.signal,
      transportError: (e) => {
        if (signal?.aborted) return new AbortError();
        if (timedOut) return new RetryableError(`POST ${path} timed out after ${timeoutMs} ms`);
        return new RetryableError(`POST ${path} failed: ${describeFailure(e)}`);
      },
    };
    try {
      let res: Response;
      try {
        res = await this.fetchFn(this.urlFor(path), {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept,
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
      } catch (e) {
        throw ex.transportError(e);
      }
      if (res.status >= 200 && res.status < 300) return await read(res, ex);
      const text = await readText(res, ex);
      if (res.status === 429 || res.status === 408 || res.status === 409 || res.status >= 500) {
        throw new RetryableError(
          `POST ${path} answered ${res.status}: ${this.errorMessage(text)}`,
          parseRetryAfter(res.headers.get('retry-after')),
          res.status,
        );
      }
      throw new ProviderError(`${this.id}: POST ${path} answered ${res.status}: ${this.errorMessage(text)}`, {
        status: res.status,
        retryable: false,
      });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** A whole JSON answer, validated. */
  private async readWhole<S extends z.ZodType>(
    res: Response,
    ex: Exchange,
    path: string,
    schema: S,
  ): Promise<z.output<S>> {
    const text = await readText(res, ex);
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
    return validated(schema, json, text, `POST ${path} returned an unexpected response`, res.status);
  }

  /**
   * A server-sent event stream: each event's chunk validated and handed to onChunk in order; `[DONE]` ends it.
   * A chunk that is not JSON or not of the schema, or an error event (an `error` event type, or a chunk with an
   * `error` member, as psm serve and OpenAI send a failure after the 200), is a RetryableError: whether it may
   * still be retried is the caller's call (see streamed()). A body that ends before `[DONE]` and before a finish
   * reason (`finished()`) is cut off. An endpoint that ignores `stream: true` and answers with one JSON body is
   * read as a whole answer, handed on as one chunk.
   */
  private async readStream<W extends z.ZodType, C extends z.ZodType>(
    res: Response,
    ex: Exchange,
    route: GenerateRoute<W, C>,
    onPiece: (piece: ReplyPiece) => void,
    finished: () => boolean,
  ): Promise<void> {
    const type = res.headers.get('content-type') ?? '';
    if (!/^text\/event-stream\b/i.test(type)) {
      onPiece(route.wholePiece(await this.readWhole(res, ex, route.path, route.whole)));
      return;
    }
    if (!res.body) throw new RetryableError(`POST ${route.path} answered an event stream without a body`);
    const events: EventSourceMessage[] = [];
    let overflow = false;
    const parser = createParser({
      onEvent: (e) => events.push(e),
      onError: (e) => {
        if (e.type === 'max-buffer-size-exceeded') overflow = true;
      },
      maxBufferSize: MAX_EVENT_CHARS,
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    // Some fetch implementations do not end a body's read on abort; cancelling the reader always does.
    const cancel = () => void reader.cancel().catch(() => undefined);
    ex.signal.addEventListener('abort', cancel, { once: true });
    try {
      for (;;) {
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (e) {
          throw ex.transportError(e);
        }
        if (next.done) break;
        parser.feed(next.value);
        if (overflow)
          throw new RetryableError(
            `POST ${route.path} sent a stream event longer than ${MAX_EVENT_CHARS} characters`,
          );
        for (const event of events.splice(0)) {
          // An abort (or the timeout) may come from onText itself: no piece is handed on after it.
          if (ex.signal.aborted) throw ex.transportError(ex.signal.reason);
          if (event.data === '[DONE]') return;
          onPiece(route.chunkPiece(this.streamChunk(event, route)));
        }
      }
    } finally {
      ex.signal.removeEventListener('abort', cancel);
      cancel();
    }
    if (ex.signal.aborted) throw ex.transportError(ex.signal.reason);
    if (!finished())
      throw new RetryableError(`POST ${route.path}: the stream ended before the reply was complete`);
  }

  /** One event of a stream as a validated chunk; an error event, bad JSON or a wrong shape throws. */
  private streamChunk<C extends z.ZodType>(
    event: EventSourceMessage,
    route: { path: string; chunk: C },
  ): z.output<C> {
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      if (event.event === 'error')
        throw new RetryableError(
          `POST ${route.path} reported an error mid-stream: ${describeBody(event.data)}`,
        );
      throw new RetryableError(
        `POST ${route.path} sent a stream event that is not JSON: ${describeBody(event.data)}`,
      );
    }
    if (event.event === 'error' || (json !== null && typeof json === 'object' && 'error' in json))
      throw new RetryableError(
        `POST ${route.path} reported an error mid-stream: ${this.errorMessage(event.data)}`,
      );
    return validated(route.chunk, json, event.data, `POST ${route.path} sent an unexpected stream event`);
  }

  /**
   * A streamed generation: attempts as for an unstreamed one, each reading the stream into a fresh assembler,
   * until the first text reaches the caller. From then on a failure cannot be retried (the caller has shown or
   * used text that a new attempt would send again, and perhaps differently): it ends the call with a
   * non-retryable ProviderError. The caller's abort is an AbortError at any point.
   */
  private streamed<W extends z.ZodType, C extends z.ZodType>(
    route: GenerateRoute<W, C>,
    body: Record<string, unknown>,
    wantLogprobs: boolean,
    onText: (delta: string) => void,
    signal?: AbortSignal,
  ): Promise<GenerateResponse> {
    const streamBody = { ...body, stream: true, stream_options: { include_usage: true } };
    let delivered = 0;
    return this.withRetries(async () => {
      const reply = new ReplyAssembler(wantLogprobs, this.opts.model);
      const onPiece = (piece: ReplyPiece) => {
        reply.add(piece);
        if (!piece.text) return;
        delivered += piece.text.length;
        onText(piece.text);
      };
      try {
        await this.attempt(
          route.path,
          streamBody,
          'text/event-stream',
          (res, ex) => this.readStream(res, ex, route, onPiece, () => reply.finished),
          signal,
        );
      } catch (e) {
        if (delivered > 0 && e instanceof RetryableError)
          throw new ProviderError(
            `${this.id}: ${e.message} (after ${delivered} characters of the reply were streamed; a streamed reply is not retried once text has been delivered)`,
            { status: e.status, retryable: false, cause: e },
          );
        throw e;
      }
      return reply.result();
    }, signal);
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
    const wantLogprobs = Boolean(req.logprobs || (req.topLogprobs ?? 0) > 0);
    const common: Record<string, unknown> = {
      model: this.opts.model,
      max_tokens: req.maxTokens,
      temperature: req.temperature,
      top_p: req.topP,
      seed: req.seed,
      stop: req.stop && req.stop.length ? req.stop : undefined,
    };
    if (req.psm && (this.opts.sendPsmExtras ?? true)) common.psm = req.psm;
    const whole = async <W extends z.ZodType, C extends z.ZodType>(
      route: GenerateRoute<W, C>,
      body: Record<string, unknown>,
    ): Promise<GenerateResponse> => {
      if (opts.onText) return this.streamed(route, body, wantLogprobs, opts.onText, opts.signal);
      const reply = new ReplyAssembler(wantLogprobs, this.opts.model);
      reply.add(route.wholePiece(await this.post(route.path, body, route.whole, opts.signal)));
      return reply.result();
    };
    if (req.messages)
      return whole(CHAT_ROUTE, {
        ...common,
        messages: req.messages,
        ...(wantLogprobs ? { logprobs: true, top_logprobs: req.topLogprobs ?? 0 } : {}),
      });
    return whole(COMPLETION_ROUTE, {
      ...common,
      prompt: req.prompt,
      ...(wantLogprobs ? { logprobs: req.topLogprobs ?? 0 } : {}),
    });
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

/** A body's text; a failure while it arrives is a transport failure (an abort, a timeout, a dropped socket). */
async function readText(res: Response, ex: Exchange): Promise<string> {
  try {
    return await res.text();
  } catch (e) {
    throw ex.transportError(e);
  }
}

/** `json` checked against `schema`; a mismatch is a RetryableError naming the first wrong field. */
function validated<S extends z.ZodType>(
  schema: S,
  json: unknown,
  text: string,
  what: string,
  status?: number,
): z.output<S> {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new RetryableError(
    `${what} (${issue.path.join('.') || 'body'}: ${issue.message}): ${describeBody(text)}`,
    undefined,
    status,
  );
}
