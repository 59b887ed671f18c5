/**
 * Request bodies of the OpenAI-compatible API, validated with zod. Unknown fields are ignored (as vLLM and
 * llama.cpp do); wrong types and out-of-range values become OpenAI-style 400 errors naming the field.
 */
import { z } from 'zod';
import { ApiError } from './errors.ts';

export const MAX_CHOICES = 16;

const Intervention = z
  .object({
    hook: z.string().min(1).max(200).optional(),
    vector: z.union([
      z
        .array(z.number())
        .min(1)
        .max(1 << 16),
      z.string().min(1).max(200),
    ]),
    alpha: z.number().optional(),
    min: z.number().optional(),
    max: z.number().optional(),
    positions: z.enum(['all', 'prompt', 'generated']).optional(),
  })
  .strict();

export const PsmExtrasSchema = z
  .object({
    steer: z.array(Intervention).max(32).optional(),
    cap: z.array(Intervention).max(32).optional(),
    ablate: z.array(Intervention).max(32).optional(),
  })
  .strict();

const TextPart = z.object({ type: z.literal('text'), text: z.string() });

const Message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string(), z.array(TextPart), z.null()]),
  name: z.string().optional(),
});

const Stop = z.union([z.string(), z.array(z.string()).max(4)]).nullish();
const optNum = (s: z.ZodNumber) => s.nullish();

const common = {
  model: z.string().min(1),
  temperature: optNum(z.number().min(0).max(2)),
  top_p: optNum(z.number().gt(0).max(1)),
  n: optNum(z.number().int().min(1).max(MAX_CHOICES)),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  stop: Stop,
  seed: optNum(z.number().int()),
  // Accepted for compatibility and ignored: PSM Lab samples without penalties.
  presence_penalty: optNum(z.number().min(-2).max(2)),
  frequency_penalty: optNum(z.number().min(-2).max(2)),
  user: z.string().optional(),
  psm: PsmExtrasSchema.optional(),
};

export const ChatRequestSchema = z.object({
  ...common,
  messages: z.array(Message).min(1).max(1024),
  max_tokens: optNum(z.number().int().min(1)),
  max_completion_tokens: optNum(z.number().int().min(1)),
  logprobs: z.boolean().nullish(),
  top_logprobs: optNum(z.number().int().min(0).max(20)),
});

export const CompletionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).min(1).max(MAX_CHOICES)]),
  max_tokens: optNum(z.number().int().min(0)),
  logprobs: optNum(z.number().int().min(0).max(20)),
  echo: z.boolean().nullish(),
  suffix: z.null().optional(),
});

export type ChatRequest = z.output<typeof ChatRequestSchema>;
export type CompletionRequest = z.output<typeof CompletionRequestSchema>;

/** "messages.0.content" -> "messages[0].content" (the form OpenAI's `param` uses). */
function paramOf(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError(
      400,
      'the request body must be a JSON object',
      'invalid_request_error',
      null,
      'invalid_value',
    );
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = paramOf(issue.path);
  const more =
    r.error.issues.length > 1
      ? ` (and ${r.error.issues.length - 1} more problem${r.error.issues.length > 2 ? 's' : ''})`
      : '';
  throw new ApiError(
    400,
    `invalid value for '${param ?? 'body'}': ${issue.message}${more}`,
    'invalid_request_error',
    param,
    'invalid_value',
  );
}

export function contentText(content: string | { type: 'text'; text: string }[] | null): string {
  if (content === null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === undefined || stop === null) return [];
  return typeof stop === 'string' ? [stop] : stop;
}
