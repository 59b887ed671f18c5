/** The lab's frame: navigation (remembering the run in view), the API-key prompt when the lab asks for one, the page. */
import { useEffect, useState } from 'preact/hooks';
import type { RunList } from '../../src/web/api-types.ts';
import { ApiFailure, onKeyRequired, postJson } from './api.ts';
import { href, useRoute, type Route } from './router.ts';
import { ChatPage } from './pages/chat.tsx';
import { ComparePage } from './pages/compare.tsx';
import { ReportPage } from './pages/report.tsx';
import { RunPage } from './pages/run.tsx';
import { RunsPage } from './pages/runs.tsx';
import { SpacePage } from './pages/space.tsx';
import { WorldPage } from './pages/world.tsx';
import { useFetch } from './components/ui.tsx';

const RUN_KEY = 'psm-lab-run';

/** The run a page is about: the route's, else the one last looked at. */
function useCurrentRun(route: Route): string | undefined {
  const fromRoute = ['runs', 'report', 'chat', 'space', 'world'].includes(route.page)
    ? route.args[0]
    : undefined;
  const [last, setLast] = useState<string | undefined>(() => localStorage.getItem(RUN_KEY) ?? undefined);
  useEffect(() => {
    if (fromRoute) {
      localStorage.setItem(RUN_KEY, fromRoute);
      setLast(fromRoute);
    }
  }, [fromRoute]);
  return fromRoute ?? last;
}

function KeyPrompt({ onDone }: { onDone: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await postJson('/api/session', { key });
      onDone();
      location.reload();
    } catch (err) {
      setError(err instanceof ApiFailure ? err.message : String(err));
    }
  };
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="key-title">
      <form class="card" onSubmit={submit}>
        <h2 id="key-title">This lab needs its API key</h2>
        <p class="muted">
          It was started with --api-key (or --api-key-env). The key stays in an HttpOnly session cookie.
        </p>
        <label>
          API key
          <input
            type="password"
            value={key}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
            autoFocus
            required
          />
        </label>
        {error ? (
          <p class="error-text" role="alert">
            {error}
          </p>
        ) : null}
        <button class="button primary" type="submit">
          Unlock
        </button>
      </form>
    </div>
  );
}

const PAGES: [string, string][] = [
  ['runs', 'Runs'],
  ['report', 'Report'],
  ['world', 'World'],
  ['chat', 'Chat'],
  ['space', 'Persona space'],
  ['compare', 'Compare'],
];

export function App() {
  const route = useRoute();
  const run = useCurrentRun(route);
  const [needKey, setNeedKey] = useState(false);
  useEffect(() => onKeyRequired(() => setNeedKey(true)), []);
  // Every run-scoped page links to the run in view; without one, its page asks for one.
  const runs = useFetch<RunList>(route.page === 'runs' && route.args.length === 0 ? null : '/api/runs');
  const known = runs.data?.runs.some((r) => r.name === run) ?? true;
  const current = known ? run : undefined;
  const link = (page: string) =>
    page === 'runs' ? href('runs') : page === 'compare' ? href('compare') : href(page, current);
  const title = PAGES.find(([p]) => p === route.page)?.[1] ?? 'PSM Lab';
  useEffect(() => {
    document.title = `${title}${route.args[0] ? ` · ${route.args[0]}` : ''} · PSM Lab`;
  }, [title, route.args[0]]);
  let page;
  switch (route.page) {
    case 'runs':
      page = route.args[0] ? <RunPage run={route.args[0]} /> : <RunsPage />;
      break;
    case 'report':
      page = <ReportPage run={route.args[0] ?? current} figure={route.args[1]} />;
      break;
    case 'world':
      page = <WorldPage run={route.args[0]} />;
      break;
    case 'chat':
      page = <ChatPage run={route.args[0] ?? current} query={route.query} />;
      break;
    case 'space':
      page = <SpacePage run={route.args[0] ?? current} seed={route.query.get('seed') ?? undefined} />;
      break;
    case 'compare':
      page = <ComparePage query={route.query} />;
      break;
    default:
      page = (
        <p>
          No page “{route.page}”. <a href={href('runs')}>Go to the runs</a>.
        </p>
      );
  }
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href('runs')}>
          <img src="/favicon.svg" alt="" width="24" height="24" /> PSM Lab
        </a>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map(([p, name]) => (
              <li key={p}>
                <a href={link(p)} aria-current={route.page === p ? 'page' : undefined}>
                  {name}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        {current ? (
          <span class="current-run" title="The run the pages show">
            run <strong>{current}</strong>
          </span>
        ) : null}
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
      {needKey ? <KeyPrompt onDone={() => setNeedKey(false)} /> : null}
    </>
  );
}
