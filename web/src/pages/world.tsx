/**
 * The persona world: archetypes and their trait bundles, the package deals (trait correlations the world implies
 * beside those counted in the corpus), sample documents whose hidden character shows on demand, and the Bayes
 * calculator with a model's answer to the same prompts beside it.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type {
  BayesAnswer,
  CalculatorScene,
  ModelInfo,
  RunList,
  SampleDocument,
  WorldView,
} from '../../../src/web/api-types.ts';
import { getJson, postJson } from '../api.ts';
import { fmt } from '../format.ts';
import { href } from '../router.ts';
import { archetypeSpec, correlationSpec, pGoodSpec, posteriorSpec } from '../charts/specs.ts';
import { Chart } from '../components/chart.tsx';
import { Card, ErrorBox, Fetching, useFetch } from '../components/ui.tsx';

const q = (run?: string) => (run ? `run=${encodeURIComponent(run)}` : '');

function WorldChooser({ run }: { run?: string }) {
  const runs = useFetch<RunList>('/api/runs');
  return (
    <label class="inline">
      World of{' '}
      <select
        value={run ?? ''}
        onChange={(e) => {
          const v = (e.target as HTMLSelectElement).value;
          location.hash = v ? href('world', v) : href('world');
        }}
      >
        <option value="">the built-in world</option>
        {(runs.data?.runs ?? [])
          .filter((r) => r.status !== 'unreadable')
          .map((r) => (
            <option key={r.name} value={r.name}>
              run {r.name}
            </option>
          ))}
      </select>
    </label>
  );
}

function DocumentCard({ doc }: { doc: SampleDocument }) {
  const [shown, setShown] = useState(false);
  const parts: { text: string; scene: number | null }[] = [];
  let at = 0;
  doc.behaviourSpans.forEach(([s, e], i) => {
    if (s > at) parts.push({ text: doc.text.slice(at, s), scene: null });
    parts.push({ text: doc.text.slice(s, e), scene: i });
    at = e;
  });
  if (at < doc.text.length) parts.push({ text: doc.text.slice(at), scene: null });
  const h = doc.hidden;
  return (
    <article class="doc" aria-label={`document ${doc.id}`}>
      <pre class="doc-text">
        {parts.map((p, i) =>
          p.scene === null ? (
            p.text
          ) : (
            <mark
              key={i}
              class={shown ? `behaviour ${h.scenes[p.scene]?.behaviour}` : 'behaviour'}
              title={
                shown
                  ? `${h.scenes[p.scene]?.domain}: ${h.scenes[p.scene]?.behaviour}${h.scenes[p.scene]?.instructed ? ` (instructed: ${h.scenes[p.scene]?.instructed})` : ''}`
                  : 'a behaviour'
              }
            >
              {p.text}
            </mark>
          ),
        )}
      </pre>
      <button type="button" class="button small" aria-expanded={shown} onClick={() => setShown((s) => !s)}>
        {shown ? 'Hide the character' : 'Show the hidden character'}
      </button>
      {shown ? (
        <div class="hidden-character">
          <p>
            <strong>{h.name ?? 'the Assistant (unnamed)'}</strong>: a {h.kind === 'ai' ? 'AI' : 'human'}{' '}
            <strong>{h.archetype}</strong>
          </p>
          <ul class="traits">
            {Object.entries(h.traits).map(([d, v]) => (
              <li key={d} class={`trait ${v}`}>
                {d}: {v}
              </li>
            ))}
          </ul>
          <p class="muted small">
            Highlighted: each scene’s behaviour (blue good, red bad); instructed scenes say nothing about the
            character.
          </p>
        </div>
      ) : null}
    </article>
  );
}

function Documents({ run }: { run?: string }) {
  const [docs, setDocs] = useState<SampleDocument[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const more = async (offset: number, replace = false) => {
    setLoading(true);
    try {
      const next = await getJson<SampleDocument[]>(`/api/world/documents?${q(run)}&offset=${offset}&count=4`);
      setDocs((d) => (replace ? next : [...d, ...next]));
      setError(null);
    } catch (e) {
      setError(e);
    }
    setLoading(false);
  };
  useEffect(() => {
    void more(0, true);
  }, [run]);
  return (
    <Card title="Sample documents" id="documents">
      <p class="muted">
        {run
          ? `From the run’s pre-training corpus (held-out documents first).`
          : 'Generated from the world (seed 1).'}{' '}
        The character behind each is hidden until you ask.
      </p>
      {error ? <ErrorBox error={error} /> : null}
      <div class="docs">
        {docs.map((d) => (
          <DocumentCard key={d.id} doc={d} />
        ))}
      </div>
      <button type="button" class="button" disabled={loading} onClick={() => void more(docs.length)}>
        {loading ? 'Loading…' : 'More documents'}
      </button>
    </Card>
  );
}

const SUBJECTS: [BayesAnswer['subject'], string][] = [
  ['human', 'a new human character'],
  ['ai', 'a new AI character'],
  ['assistant', 'the Assistant'],
];

function Calculator({ world, run }: { world: WorldView; run?: string }) {
  const [subject, setSubject] = useState<BayesAnswer['subject']>('human');
  const [scenes, setScenes] = useState<CalculatorScene[]>([]);
  const [draft, setDraft] = useState<CalculatorScene>({
    domain: world.domains[0]?.name ?? '',
    behaviour: 'bad',
    instructed: null,
  });
  const [model, setModel] = useState('');
  const [answer, setAnswer] = useState<BayesAnswer | null>(null);
  const [error, setError] = useState<unknown>(null);
  const models = useFetch<ModelInfo[]>(run ? `/api/models?${q(run)}` : null);
  const local = (models.data ?? []).filter((m) => m.kind !== 'endpoint');
  useEffect(() => {
    const ac = new AbortController();
    const t = setTimeout(() => {
      postJson<BayesAnswer>(
        '/api/world/bayes',
        { run, subject, scenes, model: model || undefined },
        ac.signal,
      ).then(
        (a) => {
          setAnswer(a);
          setError(null);
        },
        (e: Error) => e.name !== 'AbortError' && setError(e),
      );
    }, 120);
    return () => {
      clearTimeout(t);
      ac.abort();
    };
  }, [run, subject, JSON.stringify(scenes), model]);
  const domain = world.domains.find((d) => d.name === draft.domain);
  const modelLabel = local.find((m) => m.id === model)?.label ?? 'model';
  const specs = useMemo(
    () =>
      answer
        ? {
            post: posteriorSpec(answer.archetypes),
            good: pGoodSpec(
              world.domains.map((d) => d.name),
              answer.pGood,
              answer.model?.pGood ?? null,
              `the network (${modelLabel})`,
            ),
          }
        : null,
    [answer, modelLabel],
  );
  return (
    <Card title="Bayes calculator" id="calculator">
      <p class="muted">
        Give a character scenes and watch the exact posterior over archetypes and the predicted P(good) in
        each domain move; pick a model to see what the network predicts for the same prompts.
      </p>
      <div class="calc">
        <div class="calc-controls">
          <label>
            Who
            <select
              id="calc-subject"
              value={subject}
              onChange={(e) => setSubject((e.target as HTMLSelectElement).value as BayesAnswer['subject'])}
            >
              {SUBJECTS.map(([v, l]) => (
                <option key={v} value={v}>
                  {l}
                </option>
              ))}
            </select>
          </label>
          <fieldset>
            <legend>Add a scene</legend>
            <label>
              Domain
              <select
                id="calc-domain"
                value={draft.domain}
                onChange={(e) =>
                  setDraft({ ...draft, domain: (e.target as HTMLSelectElement).value, instructed: null })
                }
              >
                {world.domains.map((d) => (
                  <option key={d.name} value={d.name}>
                    {d.name}
                  </option>
                ))}
              </select>
            </label>
            <div role="radiogroup" aria-label="behaviour" class="radios">
              {(['good', 'bad'] as const).map((b) => (
                <label key={b} class="chip">
                  <input
                    id={`calc-${b}`}
                    type="radio"
                    name="behaviour"
                    checked={draft.behaviour === b}
                    onChange={() => setDraft({ ...draft, behaviour: b })}
                  />
                  {b} ({b === 'good' ? domain?.good : domain?.bad})
                </label>
              ))}
            </div>
            <label>
              Instructed
              <select
                id="calc-instructed"
                value={draft.instructed ?? ''}
                onChange={(e) =>
                  setDraft({ ...draft, instructed: (e.target as HTMLSelectElement).value || null })
                }
              >
                <option value="">no (an ordinary scene)</option>
                {(domain?.instructed ?? []).map((g) => (
                  <option key={g} value={g}>
                    yes: {g}
                  </option>
                ))}
              </select>
            </label>
            <button
              type="button"
              class="button primary"
              onClick={() => setScenes((s) => [...s, draft])}
              disabled={scenes.length >= 24}
            >
              Add scene
            </button>
          </fieldset>
          <ol class="scene-list" aria-label="scenes so far">
            {scenes.map((s, i) => (
              <li key={i}>
                <span class={`trait ${s.behaviour}`}>
                  {s.domain}: {s.behaviour}
                  {s.instructed ? ` (instructed: ${s.instructed})` : ''}
                </span>
                <button
                  type="button"
                  class="link"
                  onClick={() => setScenes((x) => x.filter((_, j) => j !== i))}
                  aria-label={`remove scene ${i + 1}`}
                >
                  remove
                </button>
              </li>
            ))}
          </ol>
          {scenes.length ? (
            <button type="button" class="button small" onClick={() => setScenes([])}>
              Clear scenes
            </button>
          ) : (
            <p class="muted small">No scenes: the prior.</p>
          )}
          {run ? (
            <label>
              Beside it, the model
              <select
                id="calc-model"
                value={model}
                onChange={(e) => setModel((e.target as HTMLSelectElement).value)}
              >
                <option value="">none</option>
                {local.map((m) => (
                  <option key={m.id} value={m.id}>
                    {m.seedDir ? `${m.seedDir} · ` : ''}
                    {m.label}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <p class="muted small">Choose a run’s world above to compare with its models.</p>
          )}
        </div>
        <div class="calc-results" aria-live="polite">
          {error ? <ErrorBox error={error} /> : null}
          {specs && answer ? (
            <>
              <h3>Posterior over archetypes</h3>
              <Chart spec={specs.post} label="prior and posterior over archetypes" />
              <h3>P(good) in a new scene, per domain</h3>
              <Chart spec={specs.good} label="P(good) per domain: Bayes and the model" />
              <table class="compact">
                <thead>
                  <tr>
                    <th scope="col">domain</th>
                    <th scope="col">Bayes</th>
                    {answer.model ? <th scope="col">network</th> : null}
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(answer.pGood).map(([d, p]) => (
                    <tr key={d}>
                      <th scope="row">{d}</th>
                      <td class="num">{fmt(p, 3)}</td>
                      {answer.model ? <td class="num">{fmt(answer.model.pGood[d], 3)}</td> : null}
                    </tr>
                  ))}
                </tbody>
              </table>
              <details>
                <summary>The prompts the model reads</summary>
                {Object.entries(answer.prompts).map(([d, p]) => (
                  <div key={d}>
                    <h4>{d}</h4>
                    <pre class="prompt">{p}</pre>
                  </div>
                ))}
              </details>
            </>
          ) : null}
        </div>
      </div>
    </Card>
  );
}

export function WorldPage({ run }: { run?: string }) {
  const world = useFetch<WorldView>(`/api/world?${q(run)}`);
  const specs = useMemo(
    () => (world.data ? { arche: archetypeSpec(world.data), corr: correlationSpec(world.data) } : null),
    [world.data],
  );
  return (
    <div class="page">
      <div class="page-head">
        <h1>The world</h1>
        <WorldChooser run={run} />
      </div>
      <Fetching f={world} what="the world">
        {(w) => (
          <>
            <Card title={`Archetypes of “${w.name}”`} id="archetypes">
              {w.description ? <p class="muted">{w.description}</p> : null}
              <p class="muted small">
                Each archetype’s P(trait good) before trait flips ({fmt(w.noise.traitFlip)} per character); a
                scene shows the trait, flipped with probability {fmt(w.noise.behaviourFlip)}. Hover for the
                share of characters and the description.
              </p>
              <Chart spec={specs!.arche} label="archetypes by trait" />
              <ul class="domains">
                {w.domains.map((d) => (
                  <li key={d.name}>
                    <strong>{d.name}</strong>: good = {d.good}, bad = {d.bad}
                    {d.instructed.length ? ` · instructed groups: ${d.instructed.join(', ')}` : ''}
                  </li>
                ))}
              </ul>
            </Card>
            <Card title="Package deals" id="package-deals">
              <p class="muted">
                Correlations of the characters’ traits: what the world implies exactly, and what{' '}
                {w.correlations.observed
                  ? `${w.source} holds (${w.correlations.documents} documents)`
                  : 'a corpus would hold'}
                . A network that learns these learns that one domain’s behaviour predicts another’s.
              </p>
              <Chart spec={specs!.corr} label="trait correlations, expected and observed" />
            </Card>
            <Calculator world={w} run={run} />
            <Documents run={run} />
          </>
        )}
      </Fetching>
    </div>
  );
}
