/**
 * Hash routes, so every view has a link that survives a reload and needs nothing from the server:
 * #/runs, #/runs/<run>, #/compare?a=…, #/report/<run>[/<figure>], #/world[/<run>], #/chat/<run>, #/space/<run>.
 */
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  page: string;
  /** Decoded path segments after the page name. */
  args: string[];
  query: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const parts = pathPart
    .split('/')
    .filter(Boolean)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  return { page: parts[0] ?? 'runs', args: parts.slice(1), query: new URLSearchParams(queryPart) };
}

/** A route's link: href('report', run, figure) -> "#/report/<run>/<figure>". */
export function href(page: string, ...args: (string | undefined)[]): string {
  return `#/${[page, ...args.filter((a): a is string => a !== undefined && a !== '')].map(encodeURIComponent).join('/')}`;
}

export function withQuery(link: string, query: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${link}?${s}` : link;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Replaces the current route's query without a new history entry (view settings, not navigation). */
export function replaceQuery(query: Record<string, string | undefined>): void {
  const base = location.hash.split('?')[0] || '#/';
  history.replaceState(null, '', withQuery(base, query));
}
