/**
 * A run's report, interactive: the goal table, then every figure of the static report drawn from the report's own
 * Vega-Lite spec, with tooltips, toggles for seeds, arms and series, zoom where a plot is dense, its data as a table,
 * and a permalink (#/report/<run>/<figure>).
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { FigureView, ReportView, RunList } from '../../../src/web/api-types.ts';
import { href } from '../router.ts';
import { canZoom, figureRows, interactiveSpec, toggleFields } from '../charts/interactive.ts';
import { Chart, DataTable } from '../components/chart.tsx';
import { Card, Fetching, useFetch } from '../components/ui.tsx';

const title = (id: string) => id.replace(/-/g, ' ').replace(/^./, (c) => c.toUpperCase());

function FigureCard({ run, fig, focused }: { run: string; fig: FigureView; focused: boolean }) {
  const fields = useMemo(() => toggleFields(fig.spec), [fig]);
  const [hidden, setHidden] = useState<Map<string, Set<string>>>(new Map());
  const [copied, setCopied] = useState(false);
  const spec = useMemo(() => interactiveSpec(fig.spec, hidden), [fig, hidden]);
  const zoom = useMemo(() => canZoom(fig.spec), [fig]);
  const link = `${location.origin}${location.pathname}${href('report', run, fig.id)}`;
  const flip = (field: string, value: string) =>
    setHidden((h) => {
      const next = new Map(h);
      const set = new Set(next.get(field) ?? []);
      if (set.has(value)) set.delete(value);
      else set.add(value);
      next.set(field, set);
      return next;
    });
  return (
    <section
      class={`card figure ${focused ? 'focused' : ''}`}
      id={`fig-${fig.id}`}
      aria-labelledby={`fig-${fig.id}-title`}
      tabIndex={-1}
    >
      <header class="card-head">
        <h2 id={`fig-${fig.id}-title`}>{title(fig.id)}</h2>
        <div class="card-actions">
          <a
            class="button small"
            href={href('report', run, fig.id)}
            aria-label={`permalink to ${title(fig.id)}`}
          >
            #
          </a>
          <button
            type="button"
            class="button small"
            onClick={() =>
              void navigator.clipboard?.writeText(link).then(() => {
                setCopied(true);
                setTimeout(() => setCopied(false), 1500);
              })
            }
          >
            {copied ? 'Copied' : 'Copy link'}
          </button>
        </div>
      </header>
      <p class="caption">{fig.caption}</p>
      {fields.length ? (
        <div class="toggles">
          {fields.map((f) => (
            <fieldset key={f.field} class="toggle-group">
              <legend>{f.field}</legend>
              {f.values.map((v) => (
                <label key={v} class="chip">
                  <input
                    type="checkbox"
                    checked={!hidden.get(f.field)?.has(v)}
                    onChange={() => flip(f.field, v)}
                  />
                  {v}
                </label>
              ))}
            </fieldset>
          ))}
        </div>
      ) : null}
      {zoom ? <p class="hint">Scroll to zoom, drag to pan, double-click to reset.</p> : null}
      <Chart spec={spec} label={`${title(fig.id)}: ${fig.caption}`} />
      <DataTable rows={figureRows(spec)} caption={title(fig.id)} />
    </section>
  );
}

function RunChooser({ what }: { what: string }) {
  const runs = useFetch<RunList>('/api/runs');
  return (
    <Fetching f={runs} what="the runs">
      {(l) => {
        const done = l.runs.filter((r) => r.status === 'done' || r.goalsTotal);
        return done.length ? (
          <Card title={`Choose a run for the ${what}`}>
            <ul class="run-choices">
              {done.map((r) => (
                <li key={r.name}>
                  <a href={href(what === 'report' ? 'report' : what, r.name)}>{r.name}</a>
                </li>
              ))}
            </ul>
          </Card>
        ) : (
          <p class="empty">No finished run yet: a run’s {what} appears when it finishes.</p>
        );
      }}
    </Fetching>
  );
}

export function ReportPage({ run, figure }: { run?: string; figure?: string }) {
  const report = useFetch<ReportView & { partial?: boolean }>(
    run ? `/api/runs/${encodeURIComponent(run)}/report` : null,
  );
  useEffect(() => {
    if (!figure || !report.data) return;
    const el = document.getElementById(`fig-${figure}`);
    el?.scrollIntoView({ block: 'start' });
    el?.focus({ preventScroll: true });
  }, [figure, report.data]);
  if (!run) return <RunChooser what="report" />;
  return (
    <div class="page">
      <Fetching f={report} what="the report">
        {(r) => (
          <>
            <div class="page-head">
              <h1>Report: {r.run}</h1>
              <p class="muted">
                {r.partial ? 'Partial report (the seeds finished so far). ' : ''}
                The figures are the static report’s own specs from report.json, drawn live.
                {r.staticReport ? (
                  <>
                    {' '}
                    <a href={r.staticReport}>Static report</a>.
                  </>
                ) : null}
              </p>
              <nav class="run-links" aria-label="Figures">
                {r.figures.map((f) => (
                  <a key={f.id} href={href('report', r.run, f.id)}>
                    {title(f.id)}
                  </a>
                ))}
              </nav>
            </div>
            <Card title="Goals" id="goals">
              <div class="table-scroll">
                <table class="goals">
                  <thead>
                    <tr>
                      <th scope="col">goal</th>
                      <th scope="col">what it asks</th>
                      <th scope="col">met</th>
                      <th scope="col">measured</th>
                    </tr>
                  </thead>
                  <tbody>
                    {r.goals.map((g) => (
                      <tr key={g.id}>
                        <th scope="row">{g.id}</th>
                        <td>{g.text}</td>
                        <td class={g.met === true ? 'met' : g.met === false ? 'unmet' : 'muted'}>
                          {g.met === true ? '✓ met' : g.met === false ? '✗ not met' : '—'}
                        </td>
                        <td>{g.detail}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </Card>
            <div class="figures">
              {r.figures.map((f) => (
                <FigureCard key={f.id} run={r.run} fig={f} focused={f.id === figure} />
              ))}
            </div>
          </>
        )}
      </Fetching>
    </div>
  );
}

export { RunChooser };
