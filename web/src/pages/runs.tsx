/** Every run with its key numbers (as `psm runs`), live: a running experiment's stage and progress update as it goes. */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { RunList, RunRow } from '../../../src/web/api-types.ts';
import { ApiFailure, follow, getJson } from '../api.ts';
import { ago, fmt, signed, tokens } from '../format.ts';
import { href, withQuery } from '../router.ts';
import { ErrorBox, LiveNotice, Loading, StatusBadge } from '../components/ui.tsx';

type SortKey = 'name' | 'createdAt' | 'status' | 'personaR' | 'postRise' | 'cheatVsControl' | 'goalsMet';

const COLUMNS: { key: SortKey; label: string; title: string; numeric?: boolean }[] = [
  { key: 'name', label: 'Run', title: 'run folder' },
  { key: 'status', label: 'Status', title: 'done, running, stopped (unfinished) or unreadable' },
  { key: 'createdAt', label: 'Created', title: 'when the results were written (else when the run started)' },
  {
    key: 'personaR',
    label: 'Persona r',
    title: 'persona inference: mean correlation with Bayes over k',
    numeric: true,
  },
  {
    key: 'postRise',
    label: 'Post rise',
    title: 'post-training: rise of P(good) on the untrained domains',
    numeric: true,
  },
  {
    key: 'cheatVsControl',
    label: 'Cheat − control',
    title: 'off-target P(good), cheat arm minus control (all parameters)',
    numeric: true,
  },
  { key: 'goalsMet', label: 'Goals', title: 'goals met of those measured', numeric: true },
];

function compareRows(a: RunRow, b: RunRow, key: SortKey): number {
  const x = a[key];
  const y = b[key];
  if (x === y) return 0;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  return typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
}

export function RunsPage() {
  const [list, setList] = useState<RunList | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<string | null>(null);
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: 'createdAt', desc: true });
  const [filter, setFilter] = useState('');
  const [picked, setPicked] = useState<string[]>([]);
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const ac = new AbortController();
    getJson<RunList>('/api/runs', ac.signal).then(
      setList,
      (e: Error) => e.name !== 'AbortError' && setError(e),
    );
    const stop = follow<RunList>(
      '/api/runs/events',
      (l) => {
        setList(l);
        setLive(null);
      },
      (e: ApiFailure) => setLive(e.message),
    );
    const timer = setInterval(() => setNow(Date.now()), 10_000);
    return () => {
      ac.abort();
      stop();
      clearInterval(timer);
    };
  }, []);
  const rows = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const r = (list?.runs ?? []).filter(
      (x) => !f || x.name.toLowerCase().includes(f) || x.status.includes(f),
    );
    return r.sort((a, b) => (sort.desc ? -1 : 1) * compareRows(a, b, sort.key));
  }, [list, sort, filter]);
  if (error) return <ErrorBox error={error} onRetry={() => location.reload()} />;
  if (!list) return <Loading what="the runs" />;
  const toggle = (name: string) =>
    setPicked((p) => (p.includes(name) ? p.filter((x) => x !== name) : [...p.slice(-1), name]));
  return (
    <div class="page">
      <div class="page-head">
        <h1>Runs</h1>
        <p class="muted">
          {list.runs.length} run{list.runs.length === 1 ? '' : 's'} in <code>{list.runsDir}</code>. Start one
          with <code>psm run --out {list.runsDir}/&lt;name&gt;</code>; it appears here and its progress
          follows live.
        </p>
      </div>
      <LiveNotice message={live} />
      <div class="toolbar">
        <label class="inline">
          Filter{' '}
          <input
            type="search"
            value={filter}
            onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
            placeholder="name or status"
          />
        </label>
        <a
          class={`button ${picked.length === 2 ? 'primary' : 'disabled'}`}
          href={picked.length === 2 ? withQuery(href('compare'), { a: picked[0], b: picked[1] }) : undefined}
          aria-disabled={picked.length !== 2}
        >
          Compare {picked.length === 2 ? `${picked[0]} and ${picked[1]}` : 'two runs (tick two)'}
        </a>
      </div>
      {list.runs.length === 0 ? (
        <div class="empty">
          <p>No runs yet.</p>
          <p>
            <code>psm run --preset quick --out {list.runsDir}/quick</code> makes one in under a minute.
          </p>
        </div>
      ) : (
        <div class="table-scroll">
          <table class="runs-table">
            <caption class="sr-only">Runs and their key numbers; column buttons sort</caption>
            <thead>
              <tr>
                <th scope="col">
                  <span class="sr-only">Compare</span>
                </th>
                {COLUMNS.map((c) => (
                  <th
                    scope="col"
                    key={c.key}
                    aria-sort={sort.key === c.key ? (sort.desc ? 'descending' : 'ascending') : undefined}
                    class={c.numeric ? 'num' : undefined}
                  >
                    <button
                      type="button"
                      class="sort"
                      title={c.title}
                      onClick={() =>
                        setSort((s) => ({ key: c.key, desc: s.key === c.key ? !s.desc : c.key !== 'name' }))
                      }
                    >
                      {c.label}
                      <span aria-hidden="true">{sort.key === c.key ? (sort.desc ? ' ▾' : ' ▴') : ''}</span>
                    </button>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.name} data-run={r.name}>
                  <td>
                    <input
                      type="checkbox"
                      checked={picked.includes(r.name)}
                      onChange={() => toggle(r.name)}
                      aria-label={`pick ${r.name} to compare`}
                    />
                  </td>
                  <th scope="row">
                    <a href={href('runs', r.name)}>{r.name}</a>
                    <div class="muted small">
                      {[
                        r.world && `world ${r.world}`,
                        r.seeds !== null && `${r.seeds} seed${r.seeds === 1 ? '' : 's'}`,
                        r.tokens !== null && `${tokens(r.tokens)} tokens`,
                        r.model,
                      ]
                        .filter(Boolean)
                        .join(' · ')}
                    </div>
                  </th>
                  <td>
                    <StatusBadge status={r.status} />
                    {r.status === 'running' || r.status === 'stopped' ? (
                      <div
                        class="mini-progress"
                        title={`${Math.round(100 * (r.progress ?? 0))}% of stages done`}
                      >
                        <progress max={1} value={r.progress ?? 0} aria-label={`${r.name} progress`} />
                        <span class="small">{r.stage ?? ''}</span>
                      </div>
                    ) : null}
                    {r.message ? <div class="small error-text">{r.message}</div> : null}
                  </td>
                  <td title={r.createdAt ?? ''}>{ago(r.createdAt, now)}</td>
                  <td class="num">{fmt(r.personaR)}</td>
                  <td class="num">{signed(r.postRise)}</td>
                  <td class="num">{signed(r.cheatVsControl)}</td>
                  <td class="num">{r.goalsTotal ? `${r.goalsMet}/${r.goalsTotal}` : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
