/** Two runs, seeds or arms side by side: key numbers with their difference, P(good) per domain, persona inference by k. */
import { useMemo, useState } from 'preact/hooks';
import type { CompareSide, RunList } from '../../../src/web/api-types.ts';
import { fmt, signed } from '../format.ts';
import { href, withQuery } from '../router.ts';
import { compareBarsSpec, compareInferenceSpec } from '../charts/specs.ts';
import { Chart } from '../components/chart.tsx';
import { Card, Fetching, useFetch } from '../components/ui.tsx';

const KEYS = ['a', 'aSeed', 'aArm', 'b', 'bSeed', 'bArm'] as const;

function Picker({ query }: { query: URLSearchParams }) {
  const runs = useFetch<RunList>('/api/runs');
  const [v, setV] = useState<Record<string, string>>(() =>
    Object.fromEntries(KEYS.map((k) => [k, query.get(k) ?? ''])),
  );
  const set = (k: string) => (e: Event) => setV({ ...v, [k]: (e.target as HTMLInputElement).value });
  return (
    <Fetching f={runs} what="the runs">
      {(l) => {
        const done = l.runs.filter((r) => r.status === 'done');
        return (
          <form
            class="row-wrap"
            onSubmit={(e) => {
              e.preventDefault();
              location.hash = withQuery(href('compare'), v);
            }}
          >
            {(['a', 'b'] as const).map((s) => (
              <fieldset class="inline-fields" key={s}>
                <legend>{s.toUpperCase()}</legend>
                <label>
                  Run
                  <select value={v[s]} onChange={set(s)} required>
                    <option value="">choose…</option>
                    {done.map((r) => (
                      <option key={r.name} value={r.name}>
                        {r.name}
                      </option>
                    ))}
                  </select>
                </label>
                <label>
                  Seed
                  <input
                    type="number"
                    min={0}
                    value={v[`${s}Seed`]}
                    onInput={set(`${s}Seed`)}
                    placeholder="all"
                    class="narrow"
                  />
                </label>
                <label>
                  Arm
                  <input value={v[`${s}Arm`]} onInput={set(`${s}Arm`)} placeholder="e.g. cheat/all" />
                </label>
              </fieldset>
            ))}
            <button class="button primary" type="submit">
              Compare
            </button>
          </form>
        );
      }}
    </Fetching>
  );
}

export function ComparePage({ query }: { query: URLSearchParams }) {
  const ready = query.get('a') && query.get('b');
  const url = ready
    ? withQuery('/api/compare', Object.fromEntries(KEYS.map((k) => [k, query.get(k) ?? undefined]))).replace(
        '#',
        '',
      )
    : null;
  const cmp = useFetch<{ a: CompareSide; b: CompareSide }>(url);
  const specs = useMemo(
    () =>
      cmp.data
        ? { bars: compareBarsSpec(cmp.data.a, cmp.data.b), inf: compareInferenceSpec(cmp.data.a, cmp.data.b) }
        : null,
    [cmp.data],
  );
  return (
    <div class="page">
      <div class="page-head">
        <h1>Side by side</h1>
        <p class="muted">
          Two runs, two seeds of one run, or the post-trained Assistant beside a fine-tuned arm; numbers from
          each run’s report.json.
        </p>
      </div>
      <Card>
        <Picker query={query} />
      </Card>
      {url ? (
        <Fetching f={cmp} what="the comparison">
          {({ a, b }) => (
            <>
              <Card title="Key numbers" id="numbers">
                <div class="table-scroll">
                  <table>
                    <thead>
                      <tr>
                        <th scope="col">measure</th>
                        <th scope="col">A: {a.label}</th>
                        <th scope="col">B: {b.label}</th>
                        <th scope="col">B − A</th>
                      </tr>
                    </thead>
                    <tbody>
                      {[...new Set([...a.numbers, ...b.numbers].map((n) => n.name))].map((name) => {
                        const x = a.numbers.find((n) => n.name === name)?.value ?? null;
                        const y = b.numbers.find((n) => n.name === name)?.value ?? null;
                        return (
                          <tr key={name}>
                            <th scope="row">{name}</th>
                            <td class="num">{fmt(x, 3)}</td>
                            <td class="num">{fmt(y, 3)}</td>
                            <td class="num">{signed(x !== null && y !== null ? y - x : null, 3)}</td>
                          </tr>
                        );
                      })}
                    </tbody>
                  </table>
                </div>
              </Card>
              <Card title="The Assistant’s P(good) per domain" id="domains">
                <p class="muted">
                  Bars: the network; ticks: the Bayesian persona model for the same evidence, in each side’s
                  colour.
                </p>
                <Chart spec={specs!.bars} label="P(good) per domain, A beside B" />
              </Card>
              <Card title="Persona inference by earlier scenes" id="inference">
                <Chart spec={specs!.inf} label="persona inference by k, A and B" />
              </Card>
            </>
          )}
        </Fetching>
      ) : null}
    </div>
  );
}
