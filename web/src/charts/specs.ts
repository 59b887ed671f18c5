/**
 * Vega-Lite specs of the lab's own views (the report's figures come from the report itself): the pre-training curve
 * as it grows, the side-by-side bars, the world's heat maps, the calculator's posterior, the meter's history and the
 * persona space. Each is a spec only; Vega-Lite draws it.
 */
import type { CompareSide, CurvePoint, SpaceView, WorldView } from '../../../src/web/api-types.ts';

type Spec = Record<string, unknown>;
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** `tokens`: the pre-training budget, so a growing curve is seen against the whole run. */
export function curveSpec(points: CurvePoint[], tokens: number | null = null): Spec {
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 220,
    data: { values: points.filter((p) => p.correlation !== null).map((p) => ({ ...p, seed: p.seedDir })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'tokens',
        type: 'quantitative',
        title: 'pre-training tokens',
        ...(tokens ? { scale: { domain: [0, tokens] } } : {}),
      },
      y: { field: 'correlation', type: 'quantitative', title: 'r with Bayes (held-out probes)' },
      color: { field: 'seed', type: 'nominal', title: 'seed' },
      tooltip: [
        { field: 'seed' },
        { field: 'step' },
        { field: 'tokens', format: ',' },
        { field: 'correlation', format: '.3f' },
        { field: 'loss', format: '.3f' },
      ],
    },
    params: [{ name: 'zoom', select: { type: 'interval', encodings: ['x'] }, bind: 'scales' }],
  };
}

export function compareBarsSpec(a: CompareSide, b: CompareSide): Spec {
  const rows = [a, b].flatMap((s, i) =>
    s.domains.map((d) => ({
      side: `${i === 0 ? 'A' : 'B'}: ${s.label}`,
      domain: d.domain,
      pGood: d.pGood,
      bayes: d.bayes,
    })),
  );
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 240,
    data: { values: rows },
    encoding: {
      x: { field: 'domain', type: 'nominal', title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'side', type: 'nominal' },
      color: { field: 'side', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 500 } },
    },
    layer: [
      {
        mark: 'bar',
        encoding: {
          y: {
            field: 'pGood',
            type: 'quantitative',
            title: "the Assistant's P(good)",
            scale: { domain: [0, 1] },
          },
          tooltip: [
            { field: 'side' },
            { field: 'domain' },
            { field: 'pGood', format: '.3f' },
            { field: 'bayes', format: '.3f', title: 'Bayes' },
          ],
        },
      },
      {
        mark: { type: 'tick', thickness: 3 },
        encoding: { y: { field: 'bayes', type: 'quantitative' } },
      },
    ],
  };
}

export function compareInferenceSpec(a: CompareSide, b: CompareSide): Spec {
  const rows = [a, b].flatMap((s, i) => {
    const side = `${i === 0 ? 'A' : 'B'}: ${s.label}`;
    return s.inference.flatMap((p) => [
      { side, k: p.k, value: p.model, what: 'network' },
      { side, k: p.k, value: p.bayes, what: 'Bayes' },
    ]);
  });
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 220,
    data: { values: rows },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'k', type: 'ordinal', title: 'earlier scenes k', axis: { labelAngle: 0 } },
      y: { field: 'value', type: 'quantitative', title: 'P(consistent)', scale: { zero: false } },
      color: { field: 'side', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 500 } },
      strokeDash: { field: 'what', type: 'nominal', title: null },
      tooltip: [{ field: 'side' }, { field: 'what' }, { field: 'k' }, { field: 'value', format: '.3f' }],
    },
  };
}

export function archetypeSpec(w: WorldView): Spec {
  const rows = w.archetypes.flatMap((a) =>
    w.domains.map((d) => ({
      archetype: `${a.name} (${a.kind})`,
      domain: d.name,
      pGood: a.traits[d.name] ?? null,
      share: a.share,
      description: a.description ?? '',
    })),
  );
  return {
    $schema: SCHEMA,
    width: 'container',
    height: { step: 26 },
    autosize: { type: 'fit-x', contains: 'padding' },
    data: { values: rows },
    encoding: {
      x: { field: 'domain', type: 'nominal', title: null, axis: { orient: 'top', labelAngle: 0 } },
      y: { field: 'archetype', type: 'nominal', title: null, sort: null },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: {
            field: 'pGood',
            type: 'quantitative',
            title: 'P(trait good)',
            scale: { scheme: 'redblue', domain: [0, 1] },
          },
          tooltip: [
            { field: 'archetype' },
            { field: 'domain' },
            { field: 'pGood', format: '.2f', title: 'P(trait good)' },
            { field: 'share', format: '.3f', title: 'share of characters' },
            { field: 'description' },
          ],
        },
      },
      {
        mark: { type: 'text', fontSize: 11 },
        encoding: {
          text: { field: 'pGood', type: 'quantitative', format: '.1f' },
          color: {
            condition: { test: 'datum.pGood < 0.25 || datum.pGood > 0.75', value: 'white' },
            value: 'black',
          },
        },
      },
    ],
  };
}

/** Expected and observed trait correlations side by side (one heat map each, one colour scale). */
export function correlationSpec(w: WorldView): Spec {
  const c = w.correlations;
  const rows = (m: number[][] | null, what: string) =>
    m
      ? c.domains.flatMap((a, i) => c.domains.map((b, j) => ({ what, a, b, r: i === j ? null : m[i][j] })))
      : [];
  const panel = (what: string) => ({
    title: what,
    width: 220,
    height: 220,
    transform: [{ filter: `datum.what === '${what}'` }],
    encoding: {
      x: { field: 'a', type: 'nominal', title: null, sort: c.domains },
      y: { field: 'b', type: 'nominal', title: null, sort: c.domains },
    },
    layer: [
      {
        mark: 'rect',
        encoding: {
          color: {
            field: 'r',
            type: 'quantitative',
            title: 'correlation',
            scale: { scheme: 'purpleorange', domain: [-1, 1], reverse: true },
          },
          tooltip: [
            { field: 'what' },
            { field: 'a', title: 'trait' },
            { field: 'b', title: 'with' },
            { field: 'r', format: '.3f', title: 'correlation' },
          ],
        },
      },
      {
        transform: [{ filter: 'datum.r !== null' }],
        mark: { type: 'text', fontSize: 10 },
        encoding: { text: { field: 'r', type: 'quantitative', format: '.2f' } },
      },
    ],
  });
  const panels = ['expected (the world)', ...(c.observed ? ['observed (the corpus)'] : [])];
  return {
    $schema: SCHEMA,
    data: {
      values: [...rows(c.expected, 'expected (the world)'), ...rows(c.observed, 'observed (the corpus)')],
    },
    hconcat: panels.map(panel),
    resolve: { scale: { color: 'shared' } },
  };
}

export function posteriorSpec(
  archetypes: { name: string; kind: string; prior: number; posterior: number }[],
): Spec {
  const rows = archetypes
    .filter((a) => a.prior > 0)
    .flatMap((a) => [
      { archetype: a.name, kind: a.kind, what: 'prior', p: a.prior },
      { archetype: a.name, kind: a.kind, what: 'posterior', p: a.posterior },
    ]);
  return {
    $schema: SCHEMA,
    width: 'container',
    height: { step: 12 },
    autosize: { type: 'fit-x', contains: 'padding' },
    data: { values: rows },
    mark: 'bar',
    encoding: {
      y: { field: 'archetype', type: 'nominal', title: null, sort: null },
      yOffset: { field: 'what', type: 'nominal', sort: ['prior', 'posterior'] },
      x: {
        field: 'p',
        type: 'quantitative',
        title: 'P(archetype)',
        scale: { domain: [0, 1] },
        axis: { tickCount: 5 },
      },
      color: {
        field: 'what',
        type: 'nominal',
        title: null,
        scale: { range: ['#adb5bd', '#4263eb'] },
        sort: ['prior', 'posterior'],
      },
      tooltip: [{ field: 'archetype' }, { field: 'what' }, { field: 'p', format: '.3f' }],
    },
  };
}

export function pGoodSpec(
  domains: string[],
  bayes: Record<string, number>,
  model: Record<string, number> | null,
  modelLabel: string,
): Spec {
  const rows = domains.flatMap((d) => [
    { domain: d, source: 'Bayes (exact)', p: bayes[d] },
    ...(model ? [{ domain: d, source: modelLabel, p: model[d] }] : []),
  ]);
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 200,
    data: { values: rows },
    mark: 'bar',
    encoding: {
      x: { field: 'domain', type: 'nominal', title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'source', type: 'nominal' },
      y: { field: 'p', type: 'quantitative', title: 'P(good) in a new scene', scale: { domain: [0, 1] } },
      color: {
        field: 'source',
        type: 'nominal',
        title: null,
        scale: { range: ['#495057', '#e8590c'] },
        legend: { orient: 'bottom', labelLimit: 400 },
      },
      tooltip: [{ field: 'domain' }, { field: 'source' }, { field: 'p', format: '.3f' }],
    },
  };
}

export function meterHistorySpec(rows: { turn: number; trait: string; value: number; side: string }[]): Spec {
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 160,
    data: { values: rows },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'turn', type: 'ordinal', title: 'turn', axis: { labelAngle: 0 } },
      y: { field: 'value', type: 'quantitative', title: 'projection (alpha units)' },
      color: { field: 'trait', type: 'nominal', title: null },
      strokeDash: { field: 'side', type: 'nominal', title: null },
      tooltip: [{ field: 'side' }, { field: 'turn' }, { field: 'trait' }, { field: 'value', format: '.2f' }],
    },
  };
}

export function spaceSpec(s: SpaceView): Spec {
  const post = s.assistant.find((a) => a.stage === 'post-trained');
  const base = s.assistant.find((a) => a.stage === 'base');
  const arms = s.assistant.filter((a) => a.stage !== 'base' && a.stage !== 'post-trained');
  const points = [
    ...s.archetypes.map((a) => ({
      label: a.name,
      group: `${a.kind} archetype`,
      pc1: a.pc1,
      pc2: a.pc2,
      axisPosition: null,
      nearest: null,
    })),
    ...s.assistant.map((a) => ({
      label: a.stage,
      group: 'the Assistant',
      pc1: a.pc1,
      pc2: a.pc2,
      axisPosition: a.axisPosition,
      nearest: a.nearest,
    })),
  ];
  const path =
    base && post
      ? (arms.length ? arms : [post]).flatMap((arm) =>
          (arm === post ? [base, post] : [base, post, arm]).map((p, order) => ({
            branch: arm.stage,
            order,
            pc1: p.pc1,
            pc2: p.pc2,
          })),
        )
      : [];
  // The axis runs from the archetypes' mean (the origin of the centred PCA) through the post-trained Assistant.
  const axis = post
    ? [0, 1.25].map((t, order) => ({
        order,
        pc1: t * post.pc1,
        pc2: t * post.pc2,
        label: order ? 'assistant axis' : '',
      }))
    : [];
  const x = {
    field: 'pc1',
    type: 'quantitative',
    title: `PC1 (${Math.round(100 * (s.varianceExplained[0] ?? 0))}% of variance)`,
  };
  const y = {
    field: 'pc2',
    type: 'quantitative',
    title: `PC2 (${Math.round(100 * (s.varianceExplained[1] ?? 0))}%)`,
  };
  return {
    $schema: SCHEMA,
    width: 'container',
    height: 460,
    layer: [
      {
        data: { values: axis },
        mark: { type: 'line', color: '#c2255c', strokeWidth: 2, opacity: 0.8 },
        encoding: { x, y, order: { field: 'order' } },
      },
      {
        data: { values: axis.slice(1) },
        mark: { type: 'text', color: '#c2255c', dx: 6, dy: -6, align: 'left', fontWeight: 600 },
        encoding: { x, y, text: { field: 'label' } },
      },
      {
        data: { values: path },
        mark: { type: 'line', strokeDash: [4, 3], color: 'gray' },
        encoding: { x, y, detail: { field: 'branch' }, order: { field: 'order' } },
      },
      {
        data: { values: points },
        params: [
          { name: 'zoom', select: { type: 'interval', encodings: ['x', 'y'] }, bind: 'scales' },
          { name: 'pick', select: { type: 'point', fields: ['group'] }, bind: 'legend' },
        ],
        mark: { type: 'point', filled: true, size: 110 },
        encoding: {
          x,
          y,
          color: {
            field: 'group',
            type: 'nominal',
            title: null,
            scale: { range: ['#4263eb', '#e8590c', '#2b8a3e'] },
          },
          shape: { field: 'group', type: 'nominal', title: null },
          opacity: { condition: { param: 'pick', value: 1 }, value: 0.15 },
          tooltip: [
            { field: 'label', title: 'name' },
            { field: 'group' },
            { field: 'pc1', format: '.3f' },
            { field: 'pc2', format: '.3f' },
            { field: 'axisPosition', format: '.2f', title: 'place on the axis' },
            { field: 'nearest', title: 'nearest archetype' },
          ],
        },
      },
      {
        data: { values: points },
        mark: { type: 'text', dx: 8, dy: -7, align: 'left', fontSize: 10 },
        encoding: { x, y, text: { field: 'label' } },
      },
    ],
  };
}
