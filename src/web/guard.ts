/**
 * Who may drive the lab. Three checks, each against one attack:
 *
 * - Host: only the names the lab listens on (loopback names by default), so a web page whose domain is re-pointed
 *   at 127.0.0.1 (DNS rebinding) is refused. Bound to every interface the host is not checked; the API key guards.
 * - Origin: a browser request from another site (Origin of another host, or Sec-Fetch-Site cross-site / same-site)
 *   is refused, so no other page can drive the chat or steering; POST bodies must be JSON, which a cross-site form
 *   cannot send without a preflight the lab never grants.
 * - API key (when set, as psm serve's): "Authorization: Bearer <key>" for scripts, or a session cookie the page gets
 *   by posting the key once (HttpOnly, SameSite=Strict, so other sites cannot send it).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { LabError } from './errors.ts';

export const SESSION_COOKIE = 'psm_lab_session';

const WILDCARD = new Set(['0.0.0.0', '::', '']);
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'];

/** Host header values the lab answers to, for a listening host and port (null: any). */
export function allowedHosts(host: string, port: number): Set<string> | null {
  if (WILDCARD.has(host)) return null;
  const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const names = new Set([shown]);
  if (LOOPBACK.includes(shown) || shown === '::1') for (const n of LOOPBACK) names.add(n);
  return new Set([...names].flatMap((n) => [`${n}:${port}`, ...(port === 80 ? [n] : [])]));
}

function sameSecret(given: string, expected: string): boolean {
  // Hash both sides so that the comparison takes the same time whatever the lengths.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export interface GuardOptions {
  /** The Host values to accept (allowedHosts); null accepts any. Read per request: the port is known after listen. */
  hosts: () => Set<string> | null;
  apiKey?: string;
}

export class Guard {
  private readonly sessions = new Set<string>();

  constructor(private readonly opts: GuardOptions) {}

  get keyRequired(): boolean {
    return this.opts.apiKey !== undefined;
  }

  /** Host and cross-site checks for every request. */
  readonly requests: MiddlewareHandler = async (c, next) => {
    const hosts = this.opts.hosts();
    const host = c.req.header('host') ?? '';
    if (hosts && !hosts.has(host.toLowerCase()))
      throw new LabError(
        403,
        'host_not_allowed',
        `this lab answers to ${[...hosts].join(', ')}, not "${host}"`,
      );
    const site = c.req.header('sec-fetch-site');
    const origin = c.req.header('origin');
    const crossSite = site === 'cross-site' || site === 'same-site';
    const foreignOrigin =
      origin !== undefined &&
      origin !== 'null' &&
      origin !== `http://${host}` &&
      origin !== `https://${host}`;
    // Page navigations (a link to a report file) may come from anywhere; everything the page fetches may not.
    const navigation = c.req.method === 'GET' && c.req.header('sec-fetch-mode') === 'navigate';
    if ((crossSite || foreignOrigin || origin === 'null') && !navigation)
      throw new LabError(403, 'cross_origin', 'requests from other sites may not use the lab');
    if (c.req.method === 'POST' && !/^application\/json\b/i.test(c.req.header('content-type') ?? ''))
      throw new LabError(
        415,
        'unsupported_media_type',
        'send the request body as JSON (content-type: application/json)',
      );
    await next();
  };

  /** The API key check for the API and the run files (the page itself loads without one, to ask for it). */
  readonly key: MiddlewareHandler = async (c, next) => {
    if (this.opts.apiKey !== undefined && !this.authorized(c))
      throw new LabError(
        401,
        'invalid_api_key',
        'this lab needs its API key: enter it on the page, or send "Authorization: Bearer <key>"',
      );
    await next();
  };

  private authorized(c: Context): boolean {
    const m = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '');
    if (m) return sameSecret(m[1].trim(), this.opts.apiKey!);
    const session = getCookie(c, SESSION_COOKIE);
    return session !== undefined && this.sessions.has(session);
  }

  /** POST /api/session {key}: a correct key gets a session cookie. */
  openSession(c: Context, key: unknown): void {
    if (this.opts.apiKey === undefined) return;
    if (typeof key !== 'string' || !sameSecret(key, this.opts.apiKey))
      throw new LabError(401, 'invalid_api_key', 'incorrect API key', 'key');
    const token = randomBytes(24).toString('base64url');
    this.sessions.add(token);
    setCookie(c, SESSION_COOKIE, token, { httpOnly: true, sameSite: 'Strict', path: '/' });
  }
}
