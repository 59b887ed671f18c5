/**
 * Persona space: the archetypes on the first two principal components of their activations, the Assistant's path
 * (base, post-trained, each fine-tuned arm) and the assistant axis; hover names a point.
 */
import { useMemo } from 'preact/hooks';
import type { RunDetail, SpaceView } from '../../../src/web/api-types.ts';
import { fmt } from '../format.ts';
import { href, withQuery } from '../router.ts';
import { spaceSpec } from '../charts/specs.ts';
import { Chart, DataTable } from '../components/chart.tsx';
import { Card, Fetching, useFetch } from '../components/ui.tsx';
import { RunChooser } from './report.tsx';

export function SpacePage({ run, seed }: { run?: string; seed?: string }) {
  const detail = useFetch<RunDetail>(run ? `/api/runs/${encodeURIComponent(run)}` : null);
  if (!run) return <RunChooser what="space" />;
  return (
    <div class="page">
      <Fetching f={detail} what="the run">
        {(d) => {
          const seeds = d.seeds.filter((s) => s.interpreted);
          const chosen = seeds.find((s) => s.dir === seed) ?? seeds[0];
          return (
            <>
              <div class="page-head">
                <h1>Persona space: {d.name}</h1>
                {seeds.length > 1 ? (
                  <label class="inline">
                    Seed{' '}
                    <select
                      value={chosen?.dir}
                      onChange={(e) =>
                        (location.hash = withQuery(href('space', d.name), {
                          seed: (e.target as HTMLSelectElement).value,
                        }))
                      }
                    >
                      {seeds.map((s) => (
                        <option key={s.dir} value={s.dir}>
                          {s.dir}
                        </option>
                      ))}
                    </select>
                  </label>
                ) : null}
              </div>
              {chosen ? (
                <SpaceCard run={d.name} seedDir={chosen.dir} />
              ) : (
                <p class="empty">No seed of this run has been interpreted yet.</p>
              )}
            </>
          );
        }}
      </Fetching>
    </div>
  );
}

function SpaceCard({ run, seedDir }: { run: string; seedDir: string }) {
  const space = useFetch<SpaceView>(
    `/api/runs/${encodeURIComponent(run)}/seeds/${encodeURIComponent(seedDir)}/space`,
  );
  const spec = useMemo(() => (space.data ? spaceSpec(space.data) : null), [space.data]);
  return (
    <Fetching f={space} what="the persona space">
      {(s) => (
        <>
          <Card title={`${s.seedDir}, layer ${s.layer}`} id="space">
            <p class="muted">
              Archetypes’ mean activations on PC1 and PC2 ({fmt(100 * (s.varianceExplained[0] ?? NaN), 0)}%
              and {fmt(100 * (s.varianceExplained[1] ?? NaN), 0)}% of their variance). The assistant axis runs
              from the archetypes’ mean through the post-trained Assistant (cosine with PC1{' '}
              {fmt(s.axisCosPCs[0])}, PC2 {fmt(s.axisCosPCs[1])}); dashed, the Assistant’s path to each
              fine-tune. Hover names a point; click a legend entry to highlight a group; scroll to zoom.
            </p>
            <Chart spec={spec!} label="persona space with the Assistant's path and the assistant axis" />
          </Card>
          <Card title="Where the Assistant sits" id="placements">
            <div class="table-scroll">
              <table>
                <thead>
                  <tr>
                    <th scope="col">model</th>
                    <th scope="col">place on the axis (0: archetypes’ mean, 1: post-trained)</th>
                    <th scope="col">nearest archetype</th>
                  </tr>
                </thead>
                <tbody>
                  {s.assistant.map((a) => (
                    <tr key={a.stage}>
                      <th scope="row">{a.stage}</th>
                      <td class="num">{fmt(a.axisPosition)}</td>
                      <td>{a.nearest}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <DataTable
              rows={s.archetypes as unknown as Record<string, unknown>[]}
              caption="archetype coordinates"
            />
          </Card>
        </>
      )}
    </Fetching>
  );
}
