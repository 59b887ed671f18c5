/**
 * On-disk cache of provider answers, so that a re-run (e.g. a resumed audit) re-asks nothing.
 *
 * Key: SHA-256 of a canonical JSON of (provider kind, location with credentials stripped, model, variant,
 * operation, request). API keys and headers are never part of a provider's identity, so they never reach a
 * key or a cache file, and changing a key keeps the cache valid. Entries are written atomically (temp file +
 * rename), so a crash never leaves a half-written entry; an unreadable entry counts as a miss and is
 * overwritten by the next answer. Failed calls are never cached. Call options are not part of a key: a streamed
 * answer (CallOptions.onText) is stored whole, under the same key as the same request unstreamed.
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { atomicWriteJson } from '../io/atomic-write.ts';
import type {
  CallOptions,
  ChatMessage,
  GenerateRequest,
  GenerateResponse,
  Provider,
  ProviderIdentity,
} from './types.ts';

const CACHE_VERSION = 1;

/** JSON with object keys sorted and undefined members dropped: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

const SECRET_PARAM =
  /^(api[-_]?key|key|token|access[-_]?token|auth|authorization|secret|password|sig|signature|code)$/i;

/** A URL without user:password and without query parameters that look like credentials. */
export function redactLocation(location: string): string {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return location;
  }
  url.username = '';
  url.password = '';
  for (const name of [...url.searchParams.keys()]) if (SECRET_PARAM.test(name)) url.searchParams.delete(name);
  return url.toString().replace(/\/+$/, '');
}

export function cacheKey(identity: ProviderIdentity, op: string, request: unknown): string {
  const keyed = {
    v: CACHE_VERSION,
    kind: identity.kind,
    location: redactLocation(identity.location),
    model: identity.model,
    variant: identity.variant ?? {},
    op,
    request,
  };
  return createHash('sha256').update(canonicalJson(keyed)).digest('hex');
}

interface Entry<T> {
  v: number;
  key: string;
  op: string;
  provider: { kind: string; location: string; model: string };
  request: unknown;
  value: T;
  createdAt: string;
}

export class DiskCache {
  hits = 0;
  misses = 0;

  constructor(readonly dir: string) {}

  private file(key: string): string {
    return path.join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  async get<T>(key: string): Promise<T | undefined> {
    let text: string;
    try {
      text = await fsp.readFile(this.file(key), 'utf8');
    } catch {
      this.misses++;
      return undefined;
    }
    try {
      const entry = JSON.parse(text) as Entry<T>;
      if (entry && entry.v === CACHE_VERSION && entry.key === key && 'value' in entry) {
        this.hits++;
        return entry.value;
      }
    } catch {
      // A damaged entry is a miss; the next successful answer replaces it atomically.
    }
    this.misses++;
    return undefined;
  }

  async set<T>(
    key: string,
    identity: ProviderIdentity,
    op: string,
    request: unknown,
    value: T,
  ): Promise<void> {
    const file = this.file(key);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const entry: Entry<T> = {
      v: CACHE_VERSION,
      key,
      op,
      provider: { kind: identity.kind, location: redactLocation(identity.location), model: identity.model },
      request,
      value,
      createdAt: new Date().toISOString(),
    };
    await atomicWriteJson(file, entry);
  }
}

/** Wraps a provider so that generate, score and scoreChat answers are read from / written to the cache. */
export function withCache(provider: Provider, cache: DiskCache): Provider {
  const identity = provider.identity();
  const wrapped: Provider = {
    id: provider.id,
    capabilities: provider.capabilities,
    identity: () => provider.identity(),
    async generate(req: GenerateRequest, opts?: CallOptions): Promise<GenerateResponse> {
      const key = cacheKey(identity, 'generate', req);
      const hit = await cache.get<GenerateResponse>(key);
      if (hit) {
        // A cached answer streams as one piece; a streamed answer was stored whole (below).
        if (hit.text) opts?.onText?.(hit.text);
        return { ...hit, cached: true };
      }
      const res = await provider.generate(req, opts);
      await cache.set(key, identity, 'generate', req, { ...res, cached: undefined });
      return res;
    },
    close: provider.close ? () => provider.close!() : undefined,
  };
  // Scores of given text are cached whole: a hit must have one number per continuation.
  const cachedScores = async (op: string, request: unknown, n: number, compute: () => Promise<number[]>) => {
    const key = cacheKey(identity, op, request);
    const hit = await cache.get<number[]>(key);
    if (hit && Array.isArray(hit) && hit.length === n) return hit;
    const res = await compute();
    await cache.set(key, identity, op, request, res);
    return res;
  };
  if (provider.score) {
    const score = provider.score.bind(provider);
    wrapped.score = (prompt: string, continuations: string[], opts?: CallOptions) =>
      cachedScores('score', { prompt, continuations }, continuations.length, () =>
        score(prompt, continuations, opts),
      );
  }
  if (provider.scoreChat) {
    const scoreChat = provider.scoreChat.bind(provider);
    wrapped.scoreChat = (messages: ChatMessage[], replies: string[], opts?: CallOptions) =>
      cachedScores('scoreChat', { messages, replies }, replies.length, () =>
        scoreChat(messages, replies, opts),
      );
  }
  return wrapped;
}
