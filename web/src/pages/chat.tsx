/**
 * Chat with any model of a run (or an imported model, or an endpoint), replies streamed token by token, one or two
 * models side by side on the same user turns and sampling seed. For a run's models, a persona meter per turn (each
 * trait vector's projection, the archetype probe's posterior; per token on demand) and steering sliders whose values
 * are psm serve's `psm` field, shown as sent.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { MeterReading, ModelInfo, SteeringInfo } from '../../../src/web/api-types.ts';
import { ApiFailure, getJson, postStream } from '../api.ts';
import { fmt } from '../format.ts';
import { replaceQuery } from '../router.ts';
import { meterHistorySpec } from '../charts/specs.ts';
import { Chart } from '../components/chart.tsx';
import { Card, ErrorBox, Fetching, useFetch } from '../components/ui.tsx';
import { RunChooser } from './report.tsx';

interface Reply {
  text: string;
  meter: MeterReading | null;
  done: boolean;
  error: string | null;
  finish: string | null;
}

type Side = 'a' | 'b';

interface Steering {
  alphas: Record<string, number>;
  axis: number;
  cap: boolean;
  positions: 'all' | 'prompt' | 'generated';
}

const NO_STEERING: Steering = { alphas: {}, axis: 0, cap: false, positions: 'all' };

/** The `psm` field of a request: psm serve's steering and capping, by the seed's vector names. */
export function psmField(s: Steering, info: SteeringInfo | null): Record<string, unknown> | undefined {
  const steer = Object.entries(s.alphas)
    .filter(([, a]) => a !== 0)
    .map(([vector, alpha]) => ({
      vector,
      alpha,
      ...(s.positions !== 'all' ? { positions: s.positions } : {}),
    }));
  if (s.axis !== 0 && info?.axis.ready)
    steer.push({
      vector: 'assistant-axis',
      alpha: s.axis,
      ...(s.positions !== 'all' ? { positions: s.positions } : {}),
    });
  const cap =
    s.cap && info?.axis.ready && info.axis.threshold !== null
      ? [{ vector: 'assistant-axis', min: info.axis.threshold }]
      : [];
  if (!steer.length && !cap.length) return undefined;
  return { ...(steer.length ? { steer } : {}), ...(cap.length ? { cap } : {}) };
}

function useSteeringInfo(run: string | undefined, seedDir: string | null | undefined) {
  const [info, setInfo] = useState<SteeringInfo | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    setInfo(null);
    setError(null);
    if (!run || !seedDir) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ac = new AbortController();
    const load = () =>
      getJson<SteeringInfo>(
        `/api/runs/${encodeURIComponent(run)}/seeds/${encodeURIComponent(seedDir)}/steering`,
        ac.signal,
      ).then(
        (i) => {
          setInfo(i);
          // The axis is computed once per seed in the background; ask again until it is there.
          if (!i.axis.ready && i.axis.message?.startsWith('computing')) timer = setTimeout(load, 1500);
        },
        (e: Error) => e.name !== 'AbortError' && setError(e),
      );
    void load();
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
  }, [run, seedDir]);
  return { info, error };
}

function Slider({
  id,
  label,
  value,
  onChange,
  min = -8,
  max = 8,
  step = 0.5,
  hint,
}: {
  id: string;
  label: string;
  value: number;
  onChange: (v: number) => void;
  min?: number;
  max?: number;
  step?: number;
  hint?: string;
}) {
  return (
    <div class="slider">
      <label for={id}>
        {label} <output for={id}>{value > 0 ? `+${value}` : value}</output>
      </label>
      <input
        id={id}
        type="range"
        min={min}
        max={max}
        step={step}
        value={value}
        onInput={(e) => onChange(Number((e.target as HTMLInputElement).value))}
        aria-describedby={hint ? `${id}-hint` : undefined}
      />
      {hint ? (
        <span id={`${id}-hint`} class="sr-only">
          {hint}
        </span>
      ) : null}
    </div>
  );
}

function SteeringPanel({
  info,
  steering,
  set,
  run,
}: {
  info: SteeringInfo;
  steering: Steering;
  set: (s: Steering) => void;
  run: string;
}) {
  const traits = info.vectors.filter((v) => v.kind === 'trait');
  const psm = psmField(steering, info);
  return (
    <Card
      title="Steering"
      id="steering"
      actions={
        <button type="button" class="button small" onClick={() => set(NO_STEERING)}>
          Reset
        </button>
      }
    >
      <p class="muted small">
        alpha in units of {info.alphaUnit}; positive pushes toward the trait’s bad side, as in the report’s
        dose-response. Vectors of {info.seedDir}.
      </p>
      {traits.map((v) => (
        <Slider
          key={v.name}
          id={`steer-${v.name}`}
          label={`${v.name} (layer ${v.layer})`}
          value={steering.alphas[v.name] ?? 0}
          onChange={(a) => set({ ...steering, alphas: { ...steering.alphas, [v.name]: a } })}
          hint={`steering along the ${v.name} persona vector`}
        />
      ))}
      {info.axis.ready ? (
        <>
          <Slider
            id="steer-axis"
            label={`assistant axis (layer ${info.vectors.find((v) => v.kind === 'axis')?.layer})`}
            value={steering.axis}
            onChange={(a) => set({ ...steering, axis: a })}
            hint="positive moves toward the post-trained Assistant"
          />
          <label class="check">
            <input
              type="checkbox"
              checked={steering.cap}
              onChange={(e) => set({ ...steering, cap: (e.target as HTMLInputElement).checked })}
            />
            Cap the projection on the assistant axis at {fmt(info.axis.threshold, 2)} (the interpretation’s
            rule)
          </label>
        </>
      ) : (
        <p class="muted small" role="status">
          {info.axis.message}
        </p>
      )}
      <label>
        Positions
        <select
          value={steering.positions}
          onChange={(e) =>
            set({ ...steering, positions: (e.target as HTMLSelectElement).value as Steering['positions'] })
          }
        >
          <option value="all">all tokens</option>
          <option value="prompt">the prompt only</option>
          <option value="generated">the generated tokens only</option>
        </select>
      </label>
      <details>
        <summary>As psm serve’s request field</summary>
        <pre class="json">{JSON.stringify({ psm: psm ?? {} }, null, 2)}</pre>
        <p class="small">
          <a
            href={`/api/runs/${encodeURIComponent(run)}/seeds/${encodeURIComponent(info.seedDir)}/vectors.json`}
            download
          >
            vectors.json
          </a>{' '}
          for <code>psm serve --vectors vectors.json</code> gives the same names the same meaning.
        </p>
      </details>
    </Card>
  );
}

const barWidth = (v: number, scale: number) => `${Math.min(50, (50 * Math.abs(v)) / scale)}%`;

function MeterView({ reading, label, scale }: { reading: MeterReading; label: string; scale: number }) {
  return (
    <div class="meter" role="group" aria-label={`persona meter, ${label}`}>
      <h3>{label}</h3>
      <div class="meter-axis small muted" aria-hidden="true">
        <span>← good side</span>
        <span>bad side →</span>
      </div>
      {reading.traits.map((t) => (
        <div class="meter-row" key={t.trait}>
          <span class="meter-name">{t.trait}</span>
          <span
            class="meter-bar"
            role="meter"
            aria-label={`${t.trait} projection`}
            aria-valuenow={Number(t.turn.toFixed(2))}
            aria-valuemin={-scale}
            aria-valuemax={scale}
          >
            <span
              class={`meter-fill ${t.turn >= 0 ? 'pos' : 'neg'}`}
              style={{ width: barWidth(t.turn, scale), [t.turn >= 0 ? 'left' : 'right']: '50%' }}
            />
          </span>
          <span class="meter-value num">
            {t.turn >= 0 ? '+' : ''}
            {fmt(t.turn, 2)}
          </span>
        </div>
      ))}
      <h4>Archetype probe</h4>
      {reading.probe ? (
        reading.probe.archetypes
          .filter((a) => a.p > 0.005)
          .sort((x, y) => y.p - x.p)
          .map((a) => (
            <div class="meter-row" key={a.name}>
              <span class="meter-name">{a.name}</span>
              <span
                class="meter-bar prob"
                role="meter"
                aria-label={`P(${a.name})`}
                aria-valuenow={Number(a.p.toFixed(3))}
                aria-valuemin={0}
                aria-valuemax={1}
              >
                <span class="meter-fill prob" style={{ width: `${100 * a.p}%`, left: 0 }} />
              </span>
              <span class="meter-value num">{fmt(a.p, 2)}</span>
            </div>
          ))
      ) : (
        <p class="muted small">{reading.probeMessage}</p>
      )}
    </div>
  );
}

function TokenView({ reading, trait }: { reading: MeterReading; trait: string }) {
  const t = reading.traits.find((x) => x.trait === trait);
  if (!t || reading.tokens.length === 0) return <p class="muted small">No reply tokens.</p>;
  const scale = Math.max(1, ...t.tokens.map(Math.abs));
  return (
    <p class="tokens" role="group" aria-label={`reply tokens coloured by their ${trait} projection`}>
      {reading.tokens.map((tok, i) => {
        const v = t.tokens[i];
        const a = Math.min(1, Math.abs(v) / scale);
        return (
          <span
            key={i}
            class="tok"
            title={`${JSON.stringify(tok)}: ${v >= 0 ? '+' : ''}${v.toFixed(2)}`}
            style={{ background: v >= 0 ? `rgba(224,49,49,${0.55 * a})` : `rgba(66,99,235,${0.55 * a})` }}
          >
            {tok}
          </span>
        );
      })}
    </p>
  );
}

export function ChatPage({ run, query }: { run?: string; query: URLSearchParams }) {
  const models = useFetch<ModelInfo[]>(run ? `/api/models?run=${encodeURIComponent(run)}` : '/api/models');
  if (!run && models.data && !models.data.length) return <RunChooser what="chat" />;
  return (
    <Fetching f={models} what="the models">
      {(list) =>
        list.length ? <ChatRoom run={run} models={list} query={query} /> : <RunChooser what="chat" />
      }
    </Fetching>
  );
}

function ChatRoom({ run, models, query }: { run?: string; models: ModelInfo[]; query: URLSearchParams }) {
  const fallback = models.find((m) => m.kind === 'post-trained') ?? models[0];
  const [a, setA] = useState(models.some((m) => m.id === query.get('a')) ? query.get('a')! : fallback.id);
  const [b, setB] = useState(models.some((m) => m.id === query.get('b')) ? query.get('b')! : '');
  const [system, setSystem] = useState('');
  const [temperature, setTemperature] = useState(0.8);
  const [maxTokens, setMaxTokens] = useState(48);
  const [seed, setSeed] = useState(1);
  const [steering, setSteering] = useState<Steering>(NO_STEERING);
  const [draft, setDraft] = useState('');
  const [users, setUsers] = useState<string[]>([]);
  const [replies, setReplies] = useState<Record<Side, Reply[]>>({ a: [], b: [] });
  const [busy, setBusy] = useState(false);
  const [perToken, setPerToken] = useState(false);
  const [tokenTrait, setTokenTrait] = useState('');
  const controllers = useRef<AbortController[]>([]);
  const modelA = models.find((m) => m.id === a)!;
  const modelB = models.find((m) => m.id === b) ?? null;
  const { info, error: steeringError } = useSteeringInfo(run, modelA.meter ? modelA.seedDir : null);
  useEffect(() => {
    replaceQuery({ a, b: b || undefined });
    // Another model is another conversation: its replies would not be the ones shown.
    setUsers([]);
    setReplies({ a: [], b: [] });
  }, [a, b]);
  useEffect(() => {
    if (info && !tokenTrait) setTokenTrait(info.vectors[0]?.name ?? '');
  }, [info]);
  const psm = modelA.steerable ? psmField(steering, info) : undefined;

  const send = async (text: string) => {
    const turn = users.length;
    const sides: [Side, ModelInfo][] = [
      ['a', modelA],
      ...(modelB ? [['b', modelB] as [Side, ModelInfo]] : []),
    ];
    setUsers((u) => [...u, text]);
    setReplies((r) => ({ a: [...r.a, blank()], b: modelB ? [...r.b, blank()] : r.b }));
    setBusy(true);
    controllers.current = sides.map(() => new AbortController());
    const update = (side: Side, f: (x: Reply) => Reply) =>
      setReplies((r) => ({ ...r, [side]: r[side].map((x, i) => (i === turn ? f(x) : x)) }));
    await Promise.all(
      sides.map(async ([side, m], k) => {
        const history = [
          ...(system.trim() ? [{ role: 'system', content: system.trim() }] : []),
          ...users.flatMap((u, i) => [
            { role: 'user', content: u },
            { role: 'assistant', content: replies[side][i]?.text ?? '' },
          ]),
          { role: 'user', content: text },
        ];
        try {
          await postStream(
            '/api/chat',
            {
              model: m.id,
              messages: history,
              temperature,
              max_tokens: maxTokens,
              seed: seed + turn,
              meter: m.meter,
              ...(m.steerable && psm ? { psm } : {}),
            },
            (event, data) => {
              if (event === 'token')
                update(side, (x) => ({ ...x, text: x.text + (data as { text: string }).text }));
              else if (event === 'meter') update(side, (x) => ({ ...x, meter: data as MeterReading }));
              else if (event === 'done')
                update(side, (x) => ({
                  ...x,
                  done: true,
                  finish: (data as { finishReason: string }).finishReason,
                }));
              else if (event === 'error')
                update(side, (x) => ({
                  ...x,
                  done: true,
                  error: (data as { error: { message: string } }).error.message,
                }));
            },
            controllers.current[k].signal,
          );
          update(side, (x) => ({ ...x, done: true }));
        } catch (e) {
          const message =
            (e as Error).name === 'AbortError' ? 'stopped' : e instanceof ApiFailure ? e.message : String(e);
          update(side, (x) => ({ ...x, done: true, error: message }));
        }
      }),
    );
    setBusy(false);
  };
  const submit = (e: Event) => {
    e.preventDefault();
    const text = draft.trim();
    if (!text || busy) return;
    setDraft('');
    void send(text);
  };
  const clear = () => {
    setUsers([]);
    setReplies({ a: [], b: [] });
  };
  const history = useMemo(
    () =>
      (['a', 'b'] as Side[]).flatMap((side) =>
        replies[side].flatMap((r, turn) =>
          r.meter
            ? r.meter.traits.map((t) => ({
                turn: turn + 1,
                trait: t.trait,
                value: t.turn,
                side: side === 'a' ? `A: ${modelA.label}` : `B: ${modelB?.label}`,
              }))
            : [],
        ),
      ),
    [replies],
  );
  const historySpec = useMemo(() => meterHistorySpec(history), [history]);
  const scale = Math.max(4, ...history.map((h) => Math.abs(h.value)));
  const lastMeter = (side: Side) => [...replies[side]].reverse().find((r) => r.meter)?.meter ?? null;
  const label = (m: ModelInfo) => `${m.seedDir ? `${m.seedDir} · ` : ''}${m.label}`;
  const modelSelect = (id: string, value: string, set: (v: string) => void, none?: string) => (
    <select id={id} value={value} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
      {none ? <option value="">{none}</option> : null}
      {models.map((m) => (
        <option key={m.id} value={m.id}>
          {label(m)}
        </option>
      ))}
    </select>
  );
  return (
    <div class="page chat-page">
      <div class="page-head">
        <h1>Chat{run ? `: ${run}` : ''}</h1>
        <p class="muted">
          Replies stream as they are generated. The meter reads the residual stream at the end of each of your
          turns, in one extra forward pass.
        </p>
      </div>
      <div class="chat-grid">
        <div class="chat-main">
          <Card>
            <div class="row-wrap">
              <label for="model-a">Model {modelSelect('model-a', a, setA)}</label>
              <label for="model-b">Beside it {modelSelect('model-b', b, setB, 'nothing (one model)')}</label>
              <label>
                Temperature
                <input
                  id="chat-temperature"
                  type="number"
                  min={0}
                  max={2}
                  step={0.1}
                  value={temperature}
                  onInput={(e) => setTemperature(Number((e.target as HTMLInputElement).value))}
                  class="narrow"
                />
              </label>
              <label>
                Max tokens
                <input
                  id="chat-max-tokens"
                  type="number"
                  min={1}
                  max={512}
                  value={maxTokens}
                  onInput={(e) => setMaxTokens(Number((e.target as HTMLInputElement).value))}
                  class="narrow"
                />
              </label>
              <label>
                Seed
                <input
                  id="chat-seed"
                  type="number"
                  min={0}
                  value={seed}
                  onInput={(e) => setSeed(Number((e.target as HTMLInputElement).value))}
                  class="narrow"
                />
              </label>
            </div>
            <label>
              System line (optional, e.g. an Assistant intro)
              <input
                id="chat-system"
                value={system}
                onInput={(e) => setSystem((e.target as HTMLInputElement).value)}
                placeholder="The Assistant is an AI system. A user writes to it."
              />
            </label>
          </Card>
          <div class={`transcripts ${modelB ? 'two' : ''}`}>
            {(['a', ...(modelB ? ['b'] : [])] as Side[]).map((side) => {
              const m = side === 'a' ? modelA : modelB!;
              return (
                <section
                  class="card transcript"
                  key={side}
                  aria-label={`conversation with ${label(m)}`}
                  data-side={side}
                >
                  <h2 class="transcript-title">
                    {side === 'b' || modelB ? `${side.toUpperCase()}: ` : ''}
                    {label(m)}
                  </h2>
                  <ol class="messages" aria-live="polite" aria-busy={busy}>
                    {users.map((u, i) => (
                      <li key={i}>
                        <div class="msg user">
                          <span class="who">You</span>
                          {u}
                        </div>
                        <div class={`msg assistant ${replies[side][i]?.error ? 'failed' : ''}`}>
                          <span class="who">Assistant</span>
                          <span class="reply-text">{replies[side][i]?.text}</span>
                          {!replies[side][i]?.done ? (
                            <span class="cursor" aria-hidden="true">
                              ▍
                            </span>
                          ) : null}
                          {replies[side][i]?.error ? (
                            <div class="error-text" role="alert">
                              {replies[side][i].error}
                            </div>
                          ) : null}
                          {replies[side][i]?.meter ? (
                            <div class="turn-meter small muted">
                              {replies[side][i]
                                .meter!.traits.map(
                                  (t) => `${t.trait} ${t.turn >= 0 ? '+' : ''}${t.turn.toFixed(1)}`,
                                )
                                .join(' · ')}
                            </div>
                          ) : null}
                        </div>
                      </li>
                    ))}
                  </ol>
                  {perToken && lastMeter(side) ? (
                    <TokenView reading={lastMeter(side)!} trait={tokenTrait} />
                  ) : null}
                </section>
              );
            })}
          </div>
          <form class="composer card" onSubmit={submit}>
            <label for="message" class="sr-only">
              Your message
            </label>
            <textarea
              id="message"
              rows={2}
              value={draft}
              placeholder="Write to the Assistant (Enter sends, Shift+Enter a new line)"
              onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey) submit(e);
              }}
            />
            <div class="row-wrap">
              <button type="submit" class="button primary" disabled={busy || !draft.trim()}>
                Send
              </button>
              <button
                type="button"
                class="button"
                disabled={!busy}
                onClick={() => controllers.current.forEach((c) => c.abort())}
              >
                Stop
              </button>
              <button type="button" class="button" disabled={busy || !users.length} onClick={clear}>
                New conversation
              </button>
              {psm ? <span class="badge badge-running">steered</span> : null}
            </div>
          </form>
        </div>
        <aside class="chat-side" aria-label="Persona meter and steering">
          <Card title="Persona meter" id="meter">
            {!modelA.meter ? (
              <p class="muted">
                The meter reads a run’s models with its seed’s persona vectors; {label(modelA)} has none.
              </p>
            ) : lastMeter('a') ? (
              <>
                <MeterView
                  reading={lastMeter('a')!}
                  label={modelB ? `A: ${modelA.label}` : `turn ${replies.a.filter((r) => r.meter).length}`}
                  scale={scale}
                />
                {modelB && lastMeter('b') ? (
                  <MeterView reading={lastMeter('b')!} label={`B: ${modelB.label}`} scale={scale} />
                ) : null}
                {new Set(history.map((h) => h.turn)).size > 1 ? (
                  <Chart spec={historySpec} label="trait projections by turn" />
                ) : null}
                <label class="check">
                  <input
                    type="checkbox"
                    checked={perToken}
                    onChange={(e) => setPerToken((e.target as HTMLInputElement).checked)}
                  />
                  Per token
                </label>
                {perToken ? (
                  <label>
                    Colour tokens by
                    <select
                      value={tokenTrait}
                      onChange={(e) => setTokenTrait((e.target as HTMLSelectElement).value)}
                    >
                      {lastMeter('a')!.traits.map((t) => (
                        <option key={t.trait} value={t.trait}>
                          {t.trait}
                        </option>
                      ))}
                    </select>
                  </label>
                ) : null}
              </>
            ) : (
              <p class="muted">Send a message: each turn’s reading appears here.</p>
            )}
          </Card>
          {steeringError ? <ErrorBox error={steeringError} /> : null}
          {run && info && modelA.steerable ? (
            <SteeringPanel info={info} steering={steering} set={setSteering} run={run} />
          ) : null}
        </aside>
      </div>
    </div>
  );
}

const blank = (): Reply => ({ text: '', meter: null, done: false, error: null, finish: null });
