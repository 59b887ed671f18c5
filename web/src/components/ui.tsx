/** Small pieces every page uses: errors that say what went wrong, loading states, status badges, data hooks. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiFailure, getJson } from '../api.ts';

export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const e = error instanceof ApiFailure ? error : null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div class="error-box" role="alert">
      <strong>
        {e?.status === 404 ? 'Not found' : e?.status === 0 ? 'No connection' : 'Something went wrong'}
      </strong>
      <p>{message}</p>
      {e?.param ? (
        <p class="muted">
          Field: <code>{e.param}</code>
        </p>
      ) : null}
      {onRetry ? (
        <button type="button" class="button" onClick={onRetry}>
          Try again
        </button>
      ) : null}
    </div>
  );
}

/** The state of a live view's connection, while it is down (null: nothing to say). */
export function LiveNotice({ message }: { message: string | null }) {
  return message ? (
    <p class="notice" role="status">
      {message}
    </p>
  ) : null;
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {what}…
    </p>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

export function Card({
  title,
  children,
  actions,
  id,
}: {
  title?: ComponentChildren;
  children: ComponentChildren;
  actions?: ComponentChildren;
  id?: string;
}) {
  return (
    <section class="card" id={id} aria-labelledby={id ? `${id}-title` : undefined}>
      {title || actions ? (
        <header class="card-head">
          {title ? <h2 id={id ? `${id}-title` : undefined}>{title}</h2> : <span />}
          {actions ? <div class="card-actions">{actions}</div> : null}
        </header>
      ) : null}
      {children}
    </section>
  );
}

export interface Fetched<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** GETs a URL when it changes (null: nothing to fetch). */
export function useFetch<T>(url: string | null): Fetched<T> {
  const [state, setState] = useState<{ data: T | null; error: unknown; loading: boolean }>({
    data: null,
    error: null,
    loading: url !== null,
  });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (url === null) {
      setState({ data: null, error: null, loading: false });
      return;
    }
    const ac = new AbortController();
    setState((s) => ({ data: s.data, error: null, loading: true }));
    getJson<T>(url, ac.signal).then(
      (data) => setState({ data, error: null, loading: false }),
      (error: Error) => {
        if (error.name !== 'AbortError') setState({ data: null, error, loading: false });
      },
    );
    return () => ac.abort();
  }, [url, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Shows loading, the error, or the content once the data is there. */
export function Fetching<T>({
  f,
  what,
  children,
}: {
  f: Fetched<T>;
  what: string;
  children: (data: T) => ComponentChildren;
}) {
  if (f.error) return <ErrorBox error={f.error} onRetry={f.reload} />;
  if (f.data === null) return <Loading what={what} />;
  return <>{children(f.data)}</>;
}
