/**
 * One run: where it stands (live while it runs: the stage, its step, rate and ETA, the whole run's ETA), the
 * persona-inference curve of pre-training as it grows, every stage of every seed, and links to its other views.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { RunDetail, RunProgress, SeedProgress } from '../../../src/web/api-types.ts';
import { ApiFailure, follow, getJson } from '../api.ts';
import { ago, duration, fmt } from '../format.ts';
import { href, withQuery } from '../router.ts';
import { curveSpec } from '../charts/specs.ts';
import { Chart, DataTable } from '../components/chart.tsx';
import { Card, ErrorBox, Fetching, LiveNotice, Loading, StatusBadge, useFetch } from '../components/ui.tsx';

function useProgress(run: string) {
  const [progress, setProgress] = useState<RunProgress | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<string | null>(null);
  useEffect(() => {
    setProgress(null);
    setError(null);
    const ac = new AbortController();
    let stop = () => {};
    const url = `/api/runs/${encodeURIComponent(run)}/progress`;
    getJson<RunProgress>(url, ac.signal).then(
      (p) => {
        setProgress(p);
        stop = follow<RunProgress>(
          `${url}/events`,
          (q) => {
            setProgress(q);
            setLive(null);
          },
          (e: ApiFailure) => setLive(e.message),
        );
      },
      (e: Error) => e.name !== 'AbortError' && setError(e),
    );
    return () => {
      ac.abort();
      stop();
    };
  }, [run]);
  return { progress, error, live };
}

function StageChips({ seed }: { seed: SeedProgress }) {
  return (
    <ol class="stages">
      {seed.stages.map((s) => (
        <li
          key={s.name}
          class={`stage stage-${s.status}`}
          title={s.status === 'done' ? `done in ${duration(s.seconds)}` : s.status}
        >
          <span class="sr-only">{s.status}: </span>
          {s.name}
          {s.status === 'done' && s.seconds !== null ? (
            <span class="small muted"> {duration(s.seconds)}</span>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

function LivePanel({ p }: { p: RunProgress }) {
  const c = p.current;
  return (
    <Card title="Live" id="live">
      <div class="live-grid" aria-live="polite">
        <div>
          <div class="label">Stage</div>
          <div class="big">{c ? `${c.stage}` : 'between stages'}</div>
          <div class="muted small">{c ? `${c.seedDir}, running for ${duration(c.elapsedS)}` : ''}</div>
        </div>
        {c && c.steps !== null ? (
          <div>
            <div class="label">Step</div>
            <div class="big">
              {c.step ?? 0} / {c.steps}
            </div>
            <progress max={c.steps} value={c.step ?? 0} aria-label="steps of the stage" />
            <div class="muted small">
              {c.rate !== null ? `${fmt(c.rate, 2)} steps/s` : 'rate after the next record'}
              {c.lastRecordAgeS !== null ? ` · last record ${duration(c.lastRecordAgeS)} ago` : ''}
            </div>
          </div>
        ) : null}
        <div>
          <div class="label">Stage ETA</div>
          <div class="big">{c?.etaS !== null && c?.etaS !== undefined ? duration(c.etaS) : '—'}</div>
          <div class="muted small">
            {c && c.steps === null ? 'from this run’s finished stages alike' : ''}
          </div>
        </div>
        <div>
          <div class="label">Whole run</div>
          <div class="big">
            {p.stagesDone} / {p.stagesTotal} stages
          </div>
          <progress max={p.stagesTotal} value={p.stagesDone} aria-label="stages of the run" />
          <div class="muted small">
            {p.etaS !== null ? `about ${duration(p.etaS)} left` : 'ETA once every kind of stage has run once'}
          </div>
        </div>
      </div>
    </Card>
  );
}

function SideBySide({ detail }: { detail: RunDetail }) {
  const seeds = detail.seeds.filter((s) => s.variant === 'standard');
  const arms = [
    ...new Set(seeds.flatMap((s) => s.models.filter((m) => m.kind === 'arm').map((m) => m.label))),
  ];
  const [a, setA] = useState({ seed: '', arm: '' });
  const [b, setB] = useState({ seed: seeds[1] ? String(seeds[1].seed) : '', arm: arms[0] ?? '' });
  const side = (
    v: { seed: string; arm: string },
    set: (x: { seed: string; arm: string }) => void,
    name: string,
  ) => (
    <fieldset class="inline-fields">
      <legend>{name}</legend>
      <label>
        Seed
        <select value={v.seed} onChange={(e) => set({ ...v, seed: (e.target as HTMLSelectElement).value })}>
          <option value="">all seeds</option>
          {seeds.map((s) => (
            <option key={s.seed} value={String(s.seed)}>
              seed {s.seed}
            </option>
          ))}
        </select>
      </label>
      <label>
        Model
        <select value={v.arm} onChange={(e) => set({ ...v, arm: (e.target as HTMLSelectElement).value })}>
          <option value="">post-trained</option>
          {arms.map((x) => (
            <option key={x} value={x}>
              {x} arm
            </option>
          ))}
        </select>
      </label>
    </fieldset>
  );
  return (
    <Card title="Side by side" id="side-by-side">
      <p class="muted">
        Two seeds, or the post-trained Assistant and an arm, of this run (or pick two runs on the runs page).
      </p>
      <div class="row-wrap">
        {side(a, setA, 'A')}
        {side(b, setB, 'B')}
        <a
          class="button primary"
          href={withQuery(href('compare'), {
            a: detail.name,
            aSeed: a.seed,
            aArm: a.arm,
            b: detail.name,
            bSeed: b.seed,
            bArm: b.arm,
          })}
        >
          Compare
        </a>
      </div>
    </Card>
  );
}

export function RunPage({ run }: { run: string }) {
  const detail = useFetch<RunDetail>(`/api/runs/${encodeURIComponent(run)}`);
  const { progress, error, live } = useProgress(run);
  const curve = progress?.curve ?? [];
  const budget = (detail.data?.config as { corpus?: { tokens?: number } } | null)?.corpus?.tokens ?? null;
  const spec = useMemo(() => curveSpec(curve, budget), [JSON.stringify(curve), budget]);
  if (error) return <ErrorBox error={error} />;
  return (
    <div class="page">
      <Fetching f={detail} what="the run">
        {(d) => (
          <>
            <div class="page-head">
              <h1>
                {d.name} <StatusBadge status={progress?.status ?? d.status} />
              </h1>
              <p class="muted">
                world {d.world ?? '?'} · {d.seeds.length} seed folder{d.seeds.length === 1 ? '' : 's'} ·
                updated {ago(progress?.updatedAt)}
              </p>
              <nav class="run-links" aria-label="Views of this run">
                {d.hasReport ? (
                  <a href={href('report', d.name)}>Interactive report</a>
                ) : (
                  <span class="muted">report when the run finishes</span>
                )}
                <a href={href('chat', d.name)}>Chat</a>
                <a href={href('world', d.name)}>World</a>
                <a href={href('space', d.name)}>Persona space</a>
                {d.staticReport ? <a href={d.staticReport}>Static report (report.html)</a> : null}
              </nav>
            </div>
            <LiveNotice message={live} />
            {progress?.status === 'running' ? <LivePanel p={progress} /> : null}
            {progress?.status === 'stopped' ? (
              <p class="notice">
                This run stopped before it finished ({progress.stagesDone} of {progress.stagesTotal} stages):{' '}
                <code>psm run --config &lt;run folder&gt;/config.yaml --out &lt;run folder&gt;</code> resumes
                it where it stopped.
              </p>
            ) : null}
            <Card title="Persona inference during pre-training" id="curve">
              <p class="muted">
                Correlation of the network’s P(good) with the exact Bayesian answer on held-out probes, by
                tokens seen; it grows live while pre-training runs. Scroll to zoom, drag to pan.
              </p>
              {curve.length ? (
                <Chart spec={spec} label="persona inference during pre-training" />
              ) : (
                <p class="muted">No probe records yet.</p>
              )}
              {curve.length ? (
                <DataTable
                  rows={curve as unknown as Record<string, unknown>[]}
                  caption="pre-training probe records"
                />
              ) : null}
            </Card>
            {d.seeds.some((s) => s.variant === 'standard') && d.hasReport ? <SideBySide detail={d} /> : null}
            <Card title="Stages" id="stages">
              {progress ? (
                progress.seeds.map((s) => (
                  <div key={s.dir} class="seed-stages">
                    <h3>{s.dir}</h3>
                    <StageChips seed={s} />
                  </div>
                ))
              ) : (
                <Loading what="the stages" />
              )}
            </Card>
          </>
        )}
      </Fetching>
    </div>
  );
}
