/**
 * `psm serve`: an OpenAI-compatible HTTP server (node:http) for one local model.
 *
 *   GET  /v1/models, /v1/models/{id}
 *   POST /v1/chat/completions   messages -> PSM chat format; stream (SSE), logprobs/top_logprobs, n, stop, seed
 *   POST /v1/completions        raw prompt(s); stream, logprobs (top k), echo (prompt log-probabilities)
 *   GET  /health
 *
 * PSM extras ride in the request body as `psm: {steer, cap, ablate}` (see providers/interventions.ts). Guard rails:
 * loopback by default, optional bearer API key (compared in constant time), a body-size limit, a bound on
 * max_tokens, a bounded generation queue (429 beyond it), and OpenAI-style error bodies for every failure.
 * A request never takes the server down: every handler's error becomes a response.
 */
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AbortError, QueueFullError } from '../providers/limit.ts';
import type { ChatMessage, PsmExtras } from '../providers/types.ts';
import { NonFiniteLogitsError } from '../model/generate.ts';
import {
  ContextLengthError,
  type GenerateOutput,
  type GenerateParams,
  type LocalEngine,
  type TokenInfo,
} from '../providers/local-engine.ts';
import { ApiError, notFound } from './errors.ts';
import { buildInterventionHooks, InterventionError } from '../providers/interventions.ts';
import {
  ChatRequestSchema,
  CompletionRequestSchema,
  MAX_CHOICES,
  contentText,
  parseBody,
  stopList,
  type ChatRequest,
  type CompletionRequest,
} from './schema.ts';

export interface ServeOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** When set, every /v1 request needs "Authorization: Bearer <apiKey>". */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /**
   * Open connections at most (default 256); Node drops more at once. With the body limit this bounds the memory
   * that clients can make the server hold (connections x body size).
   */
  maxConnections?: number;
  /** One line per request (method, path, status, ms) and server errors; default silent. */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 1 << 20;
const DEFAULT_MAX_CONNECTIONS = 256;

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(
        new ApiError(
          413,
          `request body of ${declared} bytes exceeds the limit of ${limit} bytes`,
          'invalid_request_error',
          null,
          'request_too_large',
        ),
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        reject(
          new ApiError(
            413,
            `request body exceeds the limit of ${limit} bytes`,
            'invalid_request_error',
            null,
            'request_too_large',
          ),
        );
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    // An error of the request stream is the client going away mid-upload: an abort, not a server error.
    req.on('error', (e) => {
      if (!failed) reject(new AbortError(`the client went away while sending the body (${e.message})`));
    });
  });
}

/**
 * A key no client could send is refused at start rather than refusing every request: an empty one (often an
 * unset variable in `--api-key "$KEY"`) or one with whitespace around it (a bearer token is read trimmed).
 * `what` names where the key came from.
 */
export function checkApiKey(key: string, what: string): void {
  if (key.trim() === '')
    throw new Error(`${what} is empty: give a key, or leave it out to serve without one`);
  if (key !== key.trim())
    throw new Error(
      `${what} starts or ends with whitespace (a trailing newline?); clients' keys are read without it`,
    );
}

function sameSecret(given: string, expected: string): boolean {
  // Hash both sides so that the comparison takes the same time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function requestId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

function randomSeed(): number {
  return randomBytes(4).readUInt32LE(0);
}

function lp(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

function chatLogprobs(tokens: TokenInfo[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: lp(t.logprob),
      bytes: t.bytes,
      top_logprobs: (t.top ?? []).map((a) => ({ token: a.text, logprob: a.logprob, bytes: a.bytes })),
    })),
    refusal: null,
  };
}

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[] | null;
  text_offset: number[];
}

function completionLogprobs(tokens: TokenInfo[], k: number, offsetBase: number): CompletionLogprobs {
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => lp(t.logprob)),
    top_logprobs:
      k > 0
        ? tokens.map((t) => (t.top ? Object.fromEntries(t.top.map((a) => [a.text, a.logprob])) : null))
        : null,
    text_offset: tokens.map((t) => t.offset + offsetBase),
  };
}

function mergeLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs:
      a.top_logprobs || b.top_logprobs
        ? [...(a.top_logprobs ?? a.tokens.map(() => null)), ...(b.top_logprobs ?? b.tokens.map(() => null))]
        : null,
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/**
 * A server-sent event stream. The 200 status is committed with the first event the engine produced: events
 * sent before it (the role chunk, an echoed prompt) are held, so that a failure before the first token (queue
 * full, a non-finite output) is still answered with its own status instead of an error inside a 200 stream.
 */
class Sse {
  private held: string[] | null = [];
  constructor(private readonly res: http.ServerResponse) {}
  private commit(): void {
    if (this.held === null) return;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    for (const event of this.held) this.res.write(event);
    this.held = null;
  }
  /** Sends an event; `hold` keeps it (and the status) back until the next event that is not held. */
  send(data: unknown, hold = false): void {
    const event = `data: ${JSON.stringify(data)}\n\n`;
    if (hold && this.held !== null) this.held.push(event);
    else if (!this.res.writableEnded) {
      this.commit();
      this.res.write(event);
    }
  }
  done(): void {
    if (this.res.writableEnded) return;
    this.commit();
    this.res.end('data: [DONE]\n\n');
  }
}

/**
 * Engine errors as answers naming the request's fields: a prompt too long for the context names the
 * endpoint's prompt field (`messages` or `prompt`). A model output that is not finite (NaN, overflow) is never
 * answered as text or as null log-probabilities: with interventions in the request it is the request's doing
 * (422 naming `psm`, e.g. a steering alpha large enough to overflow float32 inside the model); without them
 * the model itself is broken (500).
 */
async function explainEngineErrors(
  run: () => Promise<void>,
  psm: PsmExtras | undefined,
  promptField: 'messages' | 'prompt',
): Promise<void> {
  try {
    await run();
  } catch (e) {
    if (e instanceof ContextLengthError)
      throw new ApiError(400, e.message, 'invalid_request_error', promptField, 'context_length_exceeded');
    if (!(e instanceof NonFiniteLogitsError)) throw e;
    const intervened = (psm?.steer?.length ?? 0) + (psm?.cap?.length ?? 0) + (psm?.ablate?.length ?? 0) > 0;
    if (intervened)
      throw new ApiError(
        422,
        `the model's output is not finite under this request's psm interventions (${e.message}); use a smaller alpha or vector`,
        'invalid_request_error',
        'psm',
        'non_finite_result',
      );
    throw new ApiError(
      500,
      `the model's output is not finite (${e.message}); its weights may be broken`,
      'server_error',
      null,
      'non_finite_result',
    );
  }
}

export class PsmServer {
  private readonly apiKey?: string;
  private readonly maxBody: number;
  private readonly log: (line: string) => void;

  constructor(
    readonly engine: LocalEngine,
    opts: ServeOptions = {},
  ) {
    if (opts.apiKey !== undefined) checkApiKey(opts.apiKey, 'the API key');
    this.apiKey = opts.apiKey;
    this.maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
    this.log = opts.log ?? (() => undefined);
  }

  /** The node:http request handler (usable with any http.Server). */
  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const t0 = Date.now();
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort();
    });
    this.route(req, res, ac.signal)
      .catch((e: unknown) => this.fail(res, e))
      .finally(() => {
        // A response never ended is one the client abandoned (the socket is destroyed): no status to report.
        const outcome = res.writableEnded ? String(res.statusCode) : 'aborted by the client';
        this.log(`${req.method} ${req.url} ${outcome} ${Date.now() - t0}ms`);
      });
  };

  private fail(res: http.ServerResponse, e: unknown): void {
    let err: ApiError;
    if (e instanceof ApiError) err = e;
    else if (e instanceof InterventionError)
      err = new ApiError(400, e.message, 'invalid_request_error', e.param, 'invalid_psm_extras');
    else if (e instanceof QueueFullError)
      err = new ApiError(
        429,
        `the server is busy: ${e.message}; retry later`,
        'rate_limit_error',
        null,
        'rate_limit_exceeded',
        { 'retry-after': '1' },
      );
    else if (e instanceof AbortError) {
      res.destroy();
      return;
    } else {
      this.log(`error: ${(e as Error)?.stack ?? String(e)}`);
      err = new ApiError(
        500,
        `internal error: ${(e as Error)?.message ?? String(e)}`,
        'server_error',
        null,
        'internal_error',
      );
    }
    if (res.headersSent) {
      // Mid-stream: report in-band, then end the stream.
      if (!res.writableEnded) {
        res.write(`data: ${JSON.stringify(err.body())}\n\n`);
        res.end();
      }
      return;
    }
    sendJson(res, err.status, err.body(), err.headers);
  }

  private async route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname.replace(/\/+$/, '') || '/';
    if (p === '/health') {
      if (req.method !== 'GET')
        throw new ApiError(
          405,
          `method ${req.method} not allowed on ${p}`,
          'invalid_request_error',
          null,
          'method_not_allowed',
        );
      sendJson(res, 200, {
        status: 'ok',
        model: this.engine.id,
        busy: this.engine.slots.inUse,
        queued: this.engine.slots.queued,
      });
      return;
    }
    if (!p.startsWith('/v1/')) throw notFound(`unknown path ${p}; the API lives under /v1`);
    this.authorize(req);
    if (p === '/v1/models' || p.startsWith('/v1/models/')) {
      if (req.method !== 'GET')
        throw new ApiError(
          405,
          `method ${req.method} not allowed on ${p}`,
          'invalid_request_error',
          null,
          'method_not_allowed',
        );
      const card = { id: this.engine.id, object: 'model', created: this.engine.created, owned_by: 'psm-lab' };
      if (p === '/v1/models') sendJson(res, 200, { object: 'list', data: [card] });
      else {
        const id = decodeURIComponent(p.slice('/v1/models/'.length));
        if (id !== this.engine.id)
          throw new ApiError(
            404,
            `the model '${id}' does not exist; this server serves '${this.engine.id}'`,
            'invalid_request_error',
            'model',
            'model_not_found',
          );
        sendJson(res, 200, card);
      }
      return;
    }
    if (p !== '/v1/chat/completions' && p !== '/v1/completions') throw notFound(`unknown endpoint ${p}`);
    if (req.method !== 'POST')
      throw new ApiError(
        405,
        `method ${req.method} not allowed on ${p}; use POST`,
        'invalid_request_error',
        null,
        'method_not_allowed',
      );
    const raw = await readBody(req, this.maxBody).catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 413) res.setHeader('connection', 'close');
      throw e;
    });
    let text: string;
    try {
      // Strict: JSON is UTF-8 (a leading byte-order mark is dropped), and a replaced byte would change the text.
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw new ApiError(
        400,
        'the request body is not valid UTF-8',
        'invalid_request_error',
        null,
        'invalid_json',
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new ApiError(
        400,
        `the request body is not valid JSON: ${(e as Error).message}`,
        'invalid_request_error',
        null,
        'invalid_json',
      );
    }
    if (p === '/v1/chat/completions') {
      const r = parseBody(ChatRequestSchema, body);
      await explainEngineErrors(() => this.chat(r, res, signal), r.psm, 'messages');
    } else {
      const r = parseBody(CompletionRequestSchema, body);
      await explainEngineErrors(() => this.completions(r, res, signal), r.psm, 'prompt');
    }
  }

  private authorize(req: http.IncomingMessage): void {
    if (this.apiKey === undefined) return;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (!m || !sameSecret(m[1].trim(), this.apiKey)) {
      throw new ApiError(
        401,
        m ? 'incorrect API key provided' : 'missing API key: send "Authorization: Bearer <key>"',
        'invalid_request_error',
        null,
        'invalid_api_key',
      );
    }
  }

  private checkModel(model: string): void {
    if (model !== this.engine.id)
      throw new ApiError(
        404,
        `the model '${model}' does not exist; this server serves '${this.engine.id}'`,
        'invalid_request_error',
        'model',
        'model_not_found',
      );
  }

  private maxTokens(asked: number | null | undefined, param: string): number {
    const cap = this.engine.maxTokens;
    if (asked === undefined || asked === null) return Math.min(cap, this.engine.contextLength);
    if (asked > cap)
      throw new ApiError(
        400,
        `${param} is ${asked}; this server allows at most ${cap} (psm serve --max-tokens)`,
        'invalid_request_error',
        param,
        'max_tokens_too_large',
      );
    return asked;
  }

  private async chat(r: ChatRequest, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    this.checkModel(r.model);
    const maxTokens = this.maxTokens(
      r.max_completion_tokens ?? r.max_tokens,
      r.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens',
    );
    const messages: ChatMessage[] = r.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: contentText(m.content),
    }));
    const promptIds = this.engine.encodeChat(messages);
    this.engine.checkPromptLength(promptIds);
    const hooks = buildInterventionHooks(
      r.psm,
      this.engine.model.config,
      this.engine.vectors,
      promptIds.length,
    );
    const n = r.n ?? 1;
    const topLogprobs = r.logprobs ? (r.top_logprobs ?? 0) : null;
    if (!r.logprobs && r.top_logprobs)
      throw new ApiError(
        400,
        'top_logprobs needs logprobs: true',
        'invalid_request_error',
        'top_logprobs',
        'invalid_value',
      );
    const seed = r.seed ?? randomSeed();
    const id = requestId('chatcmpl');
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: this.engine.id, system_fingerprint: null };
    const params = (i: number) => ({
      promptIds,
      maxTokens,
      temperature: r.temperature ?? 1,
      topP: r.top_p ?? 1,
      seed: seed + i,
      stop: [...this.engine.chatStop, ...stopList(r.stop)],
      topLogprobs,
      hooks,
      stripLeadingSpace: this.engine.chat.replyLeadingSpace,
      signal,
    });
    if (r.stream) {
      const sse = new Sse(res);
      let completionTokens = 0;
      // Refuse before committing to a 200 stream, so an overloaded server still answers 429.
      if (this.engine.slots.isFull()) throw new QueueFullError(this.engine.slots.maxQueue);
      for (let i = 0; i < n; i++) {
        sse.send(
          {
            ...base,
            object: 'chat.completion.chunk',
            choices: [
              { index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
            ],
          },
          true,
        );
        const out = await this.engine.generate({
          ...params(i),
          onDelta: (text, tokens) =>
            sse.send({
              ...base,
              object: 'chat.completion.chunk',
              choices: [
                {
                  index: i,
                  delta: { content: text },
                  logprobs: topLogprobs === null ? null : chatLogprobs(tokens),
                  finish_reason: null,
                },
              ],
            }),
        });
        completionTokens += out.completionTokens;
        sse.send({
          ...base,
          object: 'chat.completion.chunk',
          choices: [{ index: i, delta: {}, logprobs: null, finish_reason: out.finishReason }],
        });
      }
      if (r.stream_options?.include_usage) {
        sse.send({
          ...base,
          object: 'chat.completion.chunk',
          choices: [],
          usage: {
            prompt_tokens: promptIds.length,
            completion_tokens: completionTokens,
            total_tokens: promptIds.length + completionTokens,
          },
        });
      }
      sse.done();
      return;
    }
    const outs: GenerateOutput[] = [];
    for (let i = 0; i < n; i++) outs.push(await this.engine.generate(params(i)));
    const completionTokens = outs.reduce((s, o) => s + o.completionTokens, 0);
    sendJson(res, 200, {
      ...base,
      object: 'chat.completion',
      choices: outs.map((o, i) => ({
        index: i,
        message: { role: 'assistant', content: o.text, refusal: null },
        logprobs: topLogprobs === null ? null : chatLogprobs(o.tokens),
        finish_reason: o.finishReason,
      })),
      usage: {
        prompt_tokens: promptIds.length,
        completion_tokens: completionTokens,
        total_tokens: promptIds.length + completionTokens,
      },
    });
  }

  /** Generation, or an empty answer when no new token was asked for (echo-only scoring requests). */
  private generateOrNothing(p: GenerateParams): Promise<GenerateOutput> {
    if (p.maxTokens > 0) return this.engine.generate(p);
    return Promise.resolve({
      text: '',
      tokens: [],
      finishReason: 'length',
      promptTokens: p.promptIds.length,
      completionTokens: 0,
    });
  }

  private async completions(
    r: CompletionRequest,
    res: http.ServerResponse,
    signal: AbortSignal,
  ): Promise<void> {
    this.checkModel(r.model);
    const prompts = typeof r.prompt === 'string' ? [r.prompt] : r.prompt;
    const n = r.n ?? 1;
    if (prompts.length * n > MAX_CHOICES)
      throw new ApiError(
        400,
        `prompts x n = ${prompts.length * n} exceeds ${MAX_CHOICES} choices per request`,
        'invalid_request_error',
        'n',
        'invalid_value',
      );
    const maxTokens = this.maxTokens(r.max_tokens, 'max_tokens');
    const k = r.logprobs ?? null;
    const echo = r.echo ?? false;
    const seed = r.seed ?? randomSeed();
    const encoded = prompts.map((text, i) => {
      const ids = this.engine.encodeText(text);
      // With echo, a prompt that fills the context still has its log-probabilities: it just gets no new tokens.
      const full = ids.length >= this.engine.contextLength;
      if (full && maxTokens > 0 && !echo) this.engine.checkPromptLength(ids);
      else if (ids.length > this.engine.contextLength)
        throw new ApiError(
          400,
          `prompt ${i} has ${ids.length} tokens; the context is ${this.engine.contextLength}`,
          'invalid_request_error',
          'prompt',
          'context_length_exceeded',
        );
      if (ids.length <= this.engine.bosCount)
        throw new ApiError(400, `prompt ${i} is empty`, 'invalid_request_error', 'prompt', 'invalid_value');
      return {
        text,
        ids,
        budget: full ? 0 : maxTokens,
        hooks: buildInterventionHooks(r.psm, this.engine.model.config, this.engine.vectors, ids.length),
      };
    });
    const id = requestId('cmpl');
    const created = Math.floor(Date.now() / 1000);
    const base = { id, object: 'text_completion', created, model: this.engine.id, system_fingerprint: null };
    let promptTokens = 0;
    let completionTokens = 0;
    const sse = r.stream ? new Sse(res) : null;
    const choices: {
      index: number;
      text: string;
      logprobs: CompletionLogprobs | null;
      finish_reason: string;
    }[] = [];
    let started = false;
    for (let pi = 0; pi < encoded.length; pi++) {
      const { text: promptText, ids, hooks, budget } = encoded[pi];
      promptTokens += ids.length;
      const echoed =
        echo && k !== null
          ? completionLogprobs(
              await this.engine.promptLogprobs(ids, k, this.engine.bosCount, hooks, signal),
              k,
              0,
            )
          : null;
      for (let j = 0; j < n; j++) {
        const index = pi * n + j;
        const offsetBase = echo ? promptText.length : 0;
        const params = {
          promptIds: ids,
          maxTokens: budget,
          temperature: r.temperature ?? 1,
          topP: r.top_p ?? 1,
          seed: seed + index,
          stop: stopList(r.stop),
          topLogprobs: k,
          hooks,
          signal,
        };
        if (sse) {
          if (!started) {
            if (this.engine.slots.isFull()) throw new QueueFullError(this.engine.slots.maxQueue);
            started = true;
          }
          if (echo)
            sse.send(
              {
                ...base,
                choices: [{ index, text: promptText, logprobs: echoed, finish_reason: null }],
              },
              true,
            );
          const out = await this.generateOrNothing({
            ...params,
            onDelta: (text, tokens) =>
              sse.send({
                ...base,
                choices: [
                  {
                    index,
                    text,
                    logprobs: k === null ? null : completionLogprobs(tokens, k, offsetBase),
                    finish_reason: null,
                  },
                ],
              }),
          });
          completionTokens += out.completionTokens;
          sse.send({
            ...base,
            choices: [{ index, text: '', logprobs: null, finish_reason: out.finishReason }],
          });
        } else {
          const out = await this.generateOrNothing(params);
          completionTokens += out.completionTokens;
          let logprobs = k === null ? null : completionLogprobs(out.tokens, k, offsetBase);
          if (logprobs && echoed) logprobs = mergeLogprobs(echoed, logprobs);
          choices.push({
            index,
            text: (echo ? promptText : '') + out.text,
            logprobs,
            finish_reason: out.finishReason,
          });
        }
      }
    }
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    };
    if (sse) {
      if (r.stream_options?.include_usage) sse.send({ ...base, choices: [], usage });
      sse.done();
      return;
    }
    sendJson(res, 200, { ...base, choices, usage });
  }
}

/** Starts a server for the engine; resolves once it listens. */
export async function startServer(engine: LocalEngine, opts: ServeOptions = {}): Promise<RunningServer> {
  const app = new PsmServer(engine, opts);
  const server = http.createServer(app.handle);
  // Slow or stalled uploads cannot hold a connection forever.
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, host, () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        url: `http://${shownHost}:${port}`,
        port,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
