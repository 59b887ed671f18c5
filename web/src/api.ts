/** Talking to the lab's API: JSON requests whose failures carry the server's message, and server-sent event streams. */
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { ApiErrorBody } from '../../src/web/api-types.ts';

/** A failed request, with the lab's own message (never a bare status code). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/** Listeners told when the lab asks for its API key (401), so the page can ask the user once. */
const keyListeners = new Set<() => void>();
export function onKeyRequired(fn: () => void): () => void {
  keyListeners.add(fn);
  return () => keyListeners.delete(fn);
}

async function failure(res: Response): Promise<ApiFailure> {
  let body: ApiErrorBody | null = null;
  try {
    body = (await res.json()) as ApiErrorBody;
  } catch {
    // not JSON: a proxy or a dropped connection
  }
  if (res.status === 401) for (const fn of keyListeners) fn();
  const e = body?.error;
  return new ApiFailure(
    res.status,
    e?.code ?? 'http_error',
    e?.message ?? `the lab answered ${res.status} ${res.statusText}`,
    e?.param ?? null,
  );
}

async function request<T>(url: string, init: RequestInit = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { credentials: 'same-origin', ...init });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiFailure(
      0,
      'network',
      `the lab cannot be reached (${(e as Error).message}); is psm lab still running?`,
    );
  }
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export const getJson = <T>(url: string, signal?: AbortSignal) => request<T>(url, { signal });

export const postJson = <T>(url: string, body: unknown, signal?: AbortSignal) =>
  request<T>(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });

/**
 * POSTs and reads the answer as server-sent events (the chat streams this way: EventSource cannot POST). Resolves when
 * the stream ends; rejects with the lab's error when the request is refused before streaming.
 */
export async function postStream(
  url: string,
  body: unknown,
  onEvent: (event: string, data: unknown) => void,
  signal?: AbortSignal,
): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiFailure(0, 'network', `the lab cannot be reached (${(e as Error).message})`);
  }
  if (!res.ok || !res.body) throw await failure(res);
  const parser = createParser({
    onEvent: (m: EventSourceMessage) => onEvent(m.event ?? 'message', JSON.parse(m.data)),
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parser.feed(value);
  }
}

/**
 * Follows a live view (GET, server-sent `snapshot` events) with EventSource, which reconnects by itself. Returns a
 * function that stops it.
 */
export function follow<T>(
  url: string,
  onSnapshot: (value: T) => void,
  onError: (e: ApiFailure) => void,
): () => void {
  const source = new EventSource(url);
  source.addEventListener('snapshot', (ev) => {
    const data = JSON.parse((ev as MessageEvent<string>).data) as T | ApiErrorBody;
    if (data && typeof data === 'object' && 'error' in data && (data as ApiErrorBody).error?.code)
      onError(new ApiFailure(500, (data as ApiErrorBody).error.code, (data as ApiErrorBody).error.message));
    else onSnapshot(data as T);
  });
  source.onerror = () => {
    // EventSource retries on its own; say so only while it is down.
    if (source.readyState !== EventSource.OPEN)
      onError(new ApiFailure(0, 'network', 'lost the live connection to the lab; retrying…'));
  };
  return () => source.close();
}
