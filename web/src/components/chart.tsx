/**
 * A Vega-Lite chart. The charting runtime loads on the first chart (its own chunk), and every chart is an accessible
 * image: a label for screen readers, and the same numbers as a table under "Data" for anyone who cannot hover.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Result } from '../charts/runtime.ts';

type Spec = Record<string, unknown>;

let runtime: Promise<typeof import('../charts/runtime.ts')> | null = null;
const loadRuntime = () => (runtime ??= import('../charts/runtime.ts'));

export function Chart({ spec, label, class: cls }: { spec: Spec; label: string; class?: string }) {
  const ref = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [ready, setReady] = useState(false);
  useEffect(() => {
    let result: Result | null = null;
    let cancelled = false;
    setError(null);
    loadRuntime()
      .then((rt) => {
        if (cancelled || !ref.current) return null;
        ref.current.replaceChildren(); // a redraw starts from an empty box
        return rt.draw(ref.current, spec, label);
      })
      .then((r) => {
        if (!r) return;
        if (cancelled) r.finalize();
        else {
          result = r;
          setReady(true);
        }
      })
      .catch((e: Error) => {
        if (!cancelled) setError(e.message);
      });
    return () => {
      cancelled = true;
      result?.finalize();
    };
  }, [spec, label]);
  return (
    <div class={`chart ${cls ?? ''}`} role="figure" aria-label={label} aria-busy={!ready && !error}>
      {error ? <p class="error-text">This chart could not be drawn: {error}</p> : null}
      {!ready && !error ? <div class="chart-loading">Drawing…</div> : null}
      <div ref={ref} class="chart-canvas" />
    </div>
  );
}

/** The rows behind a chart as a table (the first 300). */
export function DataTable({ rows, caption }: { rows: Record<string, unknown>[]; caption: string }) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) =>
    typeof v === 'number'
      ? Number.isInteger(v)
        ? String(v)
        : v.toFixed(4)
      : v === null || v === undefined
        ? ''
        : String(v);
  return (
    <details class="data-table">
      <summary>Data ({rows.length} rows)</summary>
      <div class="table-scroll">
        <table>
          <caption class="sr-only">{caption}</caption>
          <thead>
            <tr>
              {cols.map((c) => (
                <th scope="col" key={c}>
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.slice(0, 300).map((r, i) => (
              <tr key={i}>
                {cols.map((c) => (
                  <td key={c}>{cell(r[c])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}
