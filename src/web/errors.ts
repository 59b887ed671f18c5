/** The lab's API errors: an HTTP status, a stable code and a message that names the problem (api-types ApiErrorBody). */
import type { ApiErrorBody } from './api-types.ts';

export class LabError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'LabError';
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, code: this.code, param: this.param } };
  }
}

export const badRequest = (message: string, param: string | null = null) =>
  new LabError(400, 'invalid_value', message, param);

export const notFound = (message: string) => new LabError(404, 'not_found', message);

/** A run folder whose records are being written (or half-written): try again shortly. */
export const busy = (message: string) => new LabError(409, 'run_busy', message, null, { 'retry-after': '2' });
