/**
 * Chat with a model, streamed as server-sent events: `token` events as the reply is generated (from a local model's
 * engine, or from an endpoint's provider as its stream arrives), then (for a run's local models) a `meter` event
 * with the turn's persona meter, then `done`; a failure mid-stream is an `error` event.
 * The body carries psm serve's sampling fields and its `psm` extras (steering, capping, ablation) unchanged.
 */
import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { AbortError, QueueFullError } from '../providers/limit.ts';
import type { ChatMessage } from '../providers/types.ts';
import {
  buildInterventionHooks,
  ContextLengthError,
  InterventionError,
  PsmExtrasSchema,
} from '../serve/index.ts';
import type { MeterReading } from './api-types.ts';
import { LabError } from './errors.ts';
import { parseInput } from './input.ts';
import type { LabModels, LocalModel, ResolvedModel, SeedSteering } from './models.ts';

export const ChatBody = z
  .object({
    model: z.string().min(1).max(600),
    messages: z
      .array(
        z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(20_000) }).strict(),
      )
      .min(1)
      .max(200),
    max_tokens: z.number().int().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    seed: z.number().int().min(0).max(0xffffffff).optional(),
    psm: PsmExtrasSchema.optional(),
    /** Compute the persona meter of the turn (one more forward pass). */
    meter: z.boolean().optional(),
  })
  .strict();

export type ChatRequestBody = z.output<typeof ChatBody>;

/** Turns engine and intervention errors into the lab's errors (the request field at fault named). */
function labError(e: unknown): LabError | null {
  if (e instanceof LabError) return e;
  if (e instanceof InterventionError) return new LabError(400, 'invalid_psm_extras', e.message, e.param);
  if (e instanceof ContextLengthError)
    return new LabError(400, 'context_length_exceeded', e.message, 'messages');
  if (e instanceof QueueFullError)
    return new LabError(429, 'rate_limit_exceeded', `the lab is busy: ${e.message}; retry shortly`, null, {
      'retry-after': '1',
    });
  return null;
}

/** A stream's events, written strictly in order. */
class EventWriter {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly stream: { writeSSE(m: { event: string; data: string }): Promise<void> }) {}
  send(event: string, data: unknown): void {
    this.chain = this.chain
      .then(() => this.stream.writeSSE({ event, data: JSON.stringify(data) }))
      .catch(() => undefined);
  }
  flush(): Promise<void> {
    return this.chain;
  }
}

export async function chat(
  c: Context,
  models: LabModels,
  maxTokens: number,
  raw: unknown,
): Promise<Response> {
  const body = parseInput(ChatBody, raw);
  if (body.max_tokens !== undefined && body.max_tokens > maxTokens)
    throw new LabError(
      400,
      'max_tokens_too_large',
      `max_tokens is ${body.max_tokens}; this lab allows at most ${maxTokens} (psm lab --max-tokens)`,
      'max_tokens',
    );
  const model = models.resolve(body.model);
  const messages: ChatMessage[] = body.messages;
  const seed = body.seed ?? randomBytes(4).readUInt32LE(0);
  if (model.kind === 'endpoint') return endpointChat(c, model, body, messages, seed, maxTokens);
  return localChat(c, models, model, body, messages, seed, maxTokens);
}

async function endpointChat(
  c: Context,
  model: Extract<ResolvedModel, { kind: 'endpoint' }>,
  body: ChatRequestBody,
  messages: ChatMessage[],
  seed: number,
  maxTokens: number,
): Promise<Response> {
  if (body.psm)
    throw new LabError(
      400,
      'invalid_psm_extras',
      'steering needs a local model; an endpoint replies unsteered',
      'psm',
    );
  return streamSSE(c, async (stream) => {
    const ac = new AbortController();
    stream.onAbort(() => ac.abort());
    const events = new EventWriter(stream);
    try {
      let streamed = false;
      const r = await model.provider.generate(
        {
          messages,
          maxTokens: body.max_tokens ?? Math.min(maxTokens, 256),
          temperature: body.temperature ?? 1,
          topP: body.top_p,
          seed,
        },
        {
          signal: ac.signal,
          onText: (text) => {
            streamed = true;
            events.send('token', { text });
          },
        },
      );
      // A provider that cannot stream ignores onText: its reply goes out whole.
      if (!streamed) events.send('token', { text: r.text });
      events.send('done', {
        finishReason: r.finishReason,
        completionTokens: r.usage?.completionTokens ?? null,
        seed,
      });
    } catch (e) {
      if (!ac.signal.aborted)
        events.send(
          'error',
          (labError(e) ?? new LabError(502, 'endpoint_error', (e as Error).message)).body(),
        );
    }
    await events.flush();
  });
}

async function localChat(
  c: Context,
  models: LabModels,
  model: Extract<ResolvedModel, { kind: 'local' }>,
  body: ChatRequestBody,
  messages: ChatMessage[],
  seed: number,
  maxTokens: number,
): Promise<Response> {
  let m: LocalModel;
  let promptIds: number[];
  let steering: SeedSteering | null = null;
  try {
    m = models.local(model.dir);
    promptIds = m.engine.encodeChat(messages);
    m.engine.checkPromptLength(promptIds);
    const wantsSteering = body.psm !== undefined;
    if (model.run && (body.meter || wantsSteering)) {
      try {
        steering = models.seedSteering(model.run.dir, model.run.seedDir);
      } catch (e) {
        // Without an interpretation there is nothing to steer or read with; plain chat still works.
        if (wantsSteering) throw e;
      }
    }
    // Check the interventions before committing to a stream, so a bad slider gets a 400 that names it.
    buildInterventionHooks(
      body.psm,
      m.engine.model.config,
      steering ? models.library(steering) : new Map(),
      promptIds.length,
    );
    if (m.engine.slots.isFull()) throw new QueueFullError(m.engine.slots.maxQueue);
  } catch (e) {
    throw labError(e) ?? e;
  }
  const library = steering ? models.library(steering) : new Map();
  const hooksFor = () => buildInterventionHooks(body.psm, m.engine.model.config, library, promptIds.length);
  const probe = steering && body.meter && model.run ? models.probe(model.run.dir, model.dir) : null;
  return streamSSE(c, async (stream) => {
    const ac = new AbortController();
    stream.onAbort(() => ac.abort());
    const events = new EventWriter(stream);
    try {
      const out = await m.engine.generate({
        promptIds,
        maxTokens: body.max_tokens ?? Math.min(maxTokens, 64),
        temperature: body.temperature ?? 1,
        topP: body.top_p ?? 1,
        seed,
        stop: m.engine.chatStop,
        topLogprobs: 0,
        hooks: hooksFor(),
        stripLeadingSpace: m.engine.chat.replyLeadingSpace,
        signal: ac.signal,
        onDelta: (text) => events.send('token', { text }),
      });
      let meter: MeterReading | null = null;
      if (steering && body.meter && probe) {
        const ids = [...promptIds, ...out.tokens.map((t) => t.id)];
        meter = models.meter(m, steering, probe, ids, promptIds.length, hooksFor());
        events.send('meter', meter);
      }
      events.send('done', { finishReason: out.finishReason, completionTokens: out.completionTokens, seed });
    } catch (e) {
      if (!(e instanceof AbortError) && !ac.signal.aborted)
        events.send(
          'error',
          (
            labError(e) ??
            new LabError(500, 'internal_error', `the generation failed: ${(e as Error).message}`)
          ).body(),
        );
    }
    await events.flush();
  });
}
