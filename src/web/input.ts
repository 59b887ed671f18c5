/** Request input checked with zod, as psm serve checks it: the first problem becomes a 400 that names the field. */
import type { Context } from 'hono';
import type { z } from 'zod';
import { ApiError } from '../serve/index.ts';
import { parseBody } from '../serve/schema.ts';
import { LabError } from './errors.ts';

export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  try {
    return parseBody(schema, value);
  } catch (e) {
    if (e instanceof ApiError) throw new LabError(e.status, e.code ?? 'invalid_value', e.message, e.param);
    throw e;
  }
}

/** The request's JSON body (the guard has checked its content type and the body limit its size). */
export async function jsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LabError(400, 'invalid_json', `the request body is not valid JSON: ${(e as Error).message}`);
  }
}
