/**
 * The report's figures, one function each, as Vega-Lite specs from a run's results and their summary (report.json
 * holds both; psm lab draws the same specs interactively). Captions are in prose.ts.
 */
import type { TopLevelSpec } from 'vega-lite';
import { VEGA_LITE_SCHEMA as SCHEMA } from '../../interpret/figures.ts';
import type { BatteryResult, RunResults, SeedResult } from '../results.ts';
import { fmt } from './format.ts';
import { preventativeTrialsOf } from './preventative.ts';
import { prose } from './prose.ts';
import type { Summary } from './types.ts';

export interface ReportFigure {
  /** File name (figures/<id>.svg|png) and the Markdown image's label. */
  id: string;
  caption: string;
  spec: TopLevelSpec;
}

type Seeds = readonly SeedResult[];

/** Every figure the run's results allow, in the report's order. */
export function figures(results: RunResults, s: Summary): ReportFigure[] {
  const seeds = results.seeds.filter((x) => x.variant === 'standard');
  const w = results.world;
  const all = [
    personaInferenceFigure(seeds, s),
    pretrainingProbesFigure(seeds),
    traitProfilesFigure(seeds, w),
    armsFigure(s, w),
    psmExplainsFigure(seeds, s),
    preventionFigure(seeds),
    screeningFigure(seeds),
    personaProbeFigure(seeds),
    ...interpretFigures(seeds),
  ];
  return all.filter((f): f is ReportFigure => f !== null);
}

/** The network's P(consistent) per k beside Bayes's posterior predictive. */
function personaInferenceFigure(seeds: Seeds, s: Summary): ReportFigure {
  const inf = seeds.flatMap((sd) =>
    sd.personaCheck.byK.flatMap((p) => [
      { k: p.k, value: p.model, series: `network (seed ${sd.seed})` },
      { k: p.k, value: p.bayes, series: 'Bayes' },
    ]),
  );
  return {
    id: 'persona-inference',
    caption: prose('captionPersonaInference', { r: fmt(s.personaInference.meanCorrelation.mean) }),
    spec: {
      $schema: SCHEMA,
      width: 420,
      height: 260,
      data: { values: inf },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'k', type: 'ordinal', title: 'earlier scenes k' },
        y: { field: 'value', type: 'quantitative', title: 'P(consistent)', scale: { domain: [0.4, 1] } },
        color: { field: 'series', type: 'nominal' },
      },
    } as TopLevelSpec,
  };
}

/** The probes' correlation with Bayes during pre-training, by tokens seen. */
function pretrainingProbesFigure(seeds: Seeds): ReportFigure {
  const probes = seeds.flatMap((sd) =>
    sd.pretrain.probes.map((p) => ({ tokens: p.tokens, correlation: p.correlation, seed: String(sd.seed) })),
  );
  return {
    id: 'pretraining-probes',
    caption: prose('captionPretrainingProbes'),
    spec: {
      $schema: SCHEMA,
      width: 420,
      height: 220,
      data: { values: probes },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'tokens', type: 'quantitative' },
        y: { field: 'correlation', type: 'quantitative', title: 'r with Bayes' },
        color: { field: 'seed', type: 'nominal' },
      },
    } as TopLevelSpec,
  };
}

/** The Assistant's P(good) per domain before and after post-training, network bars and Bayes ticks. */
function traitProfilesFigure(seeds: Seeds, w: RunResults['world']): ReportFigure {
  const profile = seeds.flatMap((sd) =>
    [sd.base, sd.posttrained].flatMap((b) =>
      b.domains.flatMap((d) => [
        { domain: d.domain, stage: b.label, source: 'network', value: d.pGood.mean, seed: sd.seed },
        { domain: d.domain, stage: b.label, source: 'Bayes', value: d.bayes ?? NaN, seed: sd.seed },
      ]),
    ),
  );
  return {
    id: 'trait-profiles',
    caption: prose('captionTraitProfiles', {
      trainedDomains: w.trainedDomains.join(', '),
      untrainedDomains: w.untrainedDomains.join(', '),
    }),
    spec: {
      $schema: SCHEMA,
      data: { values: profile },
      facet: { column: { field: 'stage', type: 'nominal', title: null } },
      spec: {
        width: 260,
        height: 200,
        layer: [
          {
            transform: [{ filter: "datum.source === 'network'" }],
            mark: 'bar',
            encoding: {
              x: { field: 'domain', type: 'nominal' },
              y: {
                aggregate: 'mean',
                field: 'value',
                type: 'quantitative',
                title: 'P(good)',
                scale: { domain: [0, 1] },
              },
            },
          },
          {
            transform: [{ filter: "datum.source === 'Bayes'" }],
            mark: { type: 'tick', color: 'black', thickness: 2 },
            encoding: {
              x: { field: 'domain', type: 'nominal' },
              y: { aggregate: 'mean', field: 'value', type: 'quantitative' },
            },
          },
        ],
      },
    } as TopLevelSpec,
  };
}

/** Off-target P(good) per arm and trainable set with 95% CIs over seeds; Bayes's prediction as ticks. */
function armsFigure(s: Summary, w: RunResults['world']): ReportFigure {
  const arms = s.arms.map((a) => ({
    arm: a.arm,
    trainable: a.trainable,
    mean: a.offTarget.mean,
    lo: a.offTarget.mean - (Number.isFinite(a.offTarget.ci95) ? a.offTarget.ci95 : 0),
    hi: a.offTarget.mean + (Number.isFinite(a.offTarget.ci95) ? a.offTarget.ci95 : 0),
    bayes: a.bayesOffTarget,
  }));
  return {
    id: 'arms',
    caption: prose('captionArms', { finetuneDomain: w.finetuneDomain }),
    spec: {
      $schema: SCHEMA,
      data: { values: arms },
      facet: { column: { field: 'trainable', type: 'nominal' } },
      spec: {
        width: 180,
        height: 200,
        layer: [
          {
            mark: 'bar',
            encoding: {
              x: { field: 'arm', type: 'nominal' },
              y: {
                field: 'mean',
                type: 'quantitative',
                title: 'off-target P(good)',
                scale: { domain: [0, 1] },
              },
            },
          },
          {
            mark: 'rule',
            encoding: {
              x: { field: 'arm', type: 'nominal' },
              y: { field: 'lo', type: 'quantitative' },
              y2: { field: 'hi' },
            },
          },
          {
            mark: { type: 'tick', color: 'black', thickness: 2 },
            encoding: { x: { field: 'arm', type: 'nominal' }, y: { field: 'bayes', type: 'quantitative' } },
          },
        ],
      },
    } as TopLevelSpec,
  };
}

/** Per-domain shifts of the network against the Bayesian persona's, across post-training and every arm. */
function psmExplainsFigure(seeds: Seeds, s: Summary): ReportFigure {
  const shifts: { bayes: number; network: number; what: string }[] = [];
  for (const sd of seeds) {
    const pairs: [string, BatteryResult, BatteryResult][] = [
      ['post-training', sd.base, sd.posttrained],
      ...sd.arms.map(
        (a) =>
          [`${a.arm}/${a.trainable}`, sd.posttrained, a.battery] as [string, BatteryResult, BatteryResult],
      ),
    ];
    for (const [what, before, after] of pairs) {
      for (const d of after.domains) {
        const b0 = before.domains.find((x) => x.domain === d.domain)!;
        if (d.bayes !== null && b0.bayes !== null)
          shifts.push({ bayes: d.bayes - b0.bayes, network: d.pGood.mean - b0.pGood.mean, what });
      }
    }
  }
  return {
    id: 'psm-explains',
    caption: prose('captionPsmExplains', { r2: fmt(s.psmExplains.r2), points: s.psmExplains.points }),
    spec: {
      $schema: SCHEMA,
      width: 360,
      height: 300,
      data: { values: shifts },
      mark: { type: 'point', filled: true },
      encoding: {
        x: { field: 'bayes', type: 'quantitative', title: 'Bayesian predicted shift' },
        y: { field: 'network', type: 'quantitative', title: 'network shift' },
        color: { field: 'what', type: 'nominal' },
      },
    } as TopLevelSpec,
  };
}

/**
 * The preventative trials per seed (null when none ran): two rows, the off-target change, and (from interpretation
 * version 17) where the Assistant ends up on its axis.
 */
function preventionFigure(seeds: Seeds): ReportFigure | null {
  const CHANGE = 'off-target change in P(good)';
  const AXIS = 'place on the assistant axis (post-trained: 1)';
  const prevention = seeds.flatMap((sd) => {
    const trials = preventativeTrialsOf(sd.interpret);
    if (trials.length === 0) return [];
    const seed = `seed ${sd.seed}`;
    const rows = (during: string, change: number, axis: number | undefined) => [
      { seed, during, measure: CHANGE, value: change },
      ...(axis === undefined ? [] : [{ seed, during, measure: AXIS, value: axis }]),
    ];
    return [
      ...rows('nothing', trials[0].offTargetDrop.plain, trials[0].axis?.plain),
      ...trials.flatMap((t) =>
        rows(
          t.method === 'ablate' ? `ablate ${t.subspace ?? 'traits'}` : `add, α ${t.alpha}`,
          t.offTargetDrop.steered,
          t.axis?.steered,
        ),
      ),
    ];
  });
  if (prevention.length === 0) return null;
  return {
    id: 'prevention',
    caption: prose('captionPrevention'),
    spec: {
      $schema: SCHEMA,
      data: { values: prevention },
      facet: {
        column: { field: 'seed', type: 'nominal', title: null },
        row: { field: 'measure', type: 'nominal', title: null, sort: [CHANGE, AXIS] },
      },
      resolve: { scale: { y: 'independent' } },
      spec: {
        width: 200,
        height: 160,
        mark: 'bar',
        encoding: {
          x: { field: 'during', type: 'nominal', title: null, sort: null, axis: { labelAngle: -35 } },
          y: { field: 'value', type: 'quantitative', title: null },
          color: { field: 'during', type: 'nominal', legend: null, sort: null },
        },
      },
    } as TopLevelSpec,
  };
}

/** The screening trial's figure (null when no seed ran it): off-target change and composition of each part. */
export function screeningFigure(
  seeds: readonly Pick<SeedResult, 'seed' | 'interpret' | 'screeningBayes'>[],
): ReportFigure | null {
  const screeningRows = seeds.flatMap((sd) => {
    const t = sd.interpret?.screeningTrial;
    if (!t) return [];
    return t.subsets.flatMap((x) => [
      { seed: `seed ${sd.seed}`, part: x.name, what: 'change', value: x.offTargetChange },
      ...(sd.screeningBayes ?? [])
        .filter((b) => b.part === x.name)
        .map((b) => ({ seed: `seed ${sd.seed}`, part: x.name, what: 'bayes', value: b.offTargetChange })),
      ...Object.entries(x.sources).map(([source, n]) => ({
        seed: `seed ${sd.seed}`,
        part: x.name,
        what: 'composition',
        source,
        value: n,
      })),
    ]);
  });
  if (screeningRows.length === 0) return null;
  const panel = (what: string[], spec: Record<string, unknown>) => ({
    transform: [{ filter: { field: 'what', oneOf: what } }],
    facet: { column: { field: 'seed', type: 'nominal', title: null } },
    spec: { width: 150, height: 140, ...spec },
  });
  const parts = {
    field: 'part',
    type: 'nominal',
    title: null,
    sort: ['flagged', 'random', 'unflagged'],
    axis: { labelAngle: 0 },
  };
  return {
    id: 'screening',
    caption: prose('captionScreening'),
    spec: {
      $schema: SCHEMA,
      data: { values: screeningRows },
      vconcat: [
        panel(['change', 'bayes'], {
          encoding: {
            x: parts,
            y: { field: 'value', type: 'quantitative', title: 'off-target change in P(good)' },
          },
          layer: [
            { transform: [{ filter: "datum.what === 'change'" }], mark: { type: 'bar', color: '#707070' } },
            {
              transform: [{ filter: "datum.what === 'bayes'" }],
              mark: { type: 'tick', color: 'black', thickness: 2 },
            },
          ],
        }),
        panel(['composition'], {
          mark: 'bar',
          encoding: {
            x: parts,
            y: { field: 'value', type: 'quantitative', title: 'examples', stack: 'zero' },
            color: { field: 'source', type: 'nominal', title: 'arm', legend: { orient: 'bottom' } },
          },
        }),
      ],
    } as TopLevelSpec,
  };
}

/** The archetype probe's distance to the Bayesian posterior per k, beside the kind's prior (null without a probe). */
function personaProbeFigure(seeds: Seeds): ReportFigure | null {
  const probeRows = seeds.flatMap((sd) =>
    (sd.interpret?.probe.byK ?? []).flatMap((b) => [
      { seed: `seed ${sd.seed}`, k: b.k, tv: b.tv, what: 'linear probe' },
      { seed: `seed ${sd.seed}`, k: b.k, tv: b.tvPrior, what: "the kind's prior (ignores the scenes)" },
    ]),
  );
  if (probeRows.length === 0) return null;
  return {
    id: 'persona-probe',
    caption: prose('captionPersonaProbe'),
    spec: {
      $schema: SCHEMA,
      width: 360,
      height: 260,
      data: { values: probeRows },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'k', type: 'ordinal', title: 'earlier scenes (k)', axis: { labelAngle: 0 } },
        y: { field: 'tv', type: 'quantitative', title: 'TV distance to the Bayesian posterior' },
        color: {
          field: 'what',
          type: 'nominal',
          title: null,
          legend: { orient: 'bottom', labelLimit: 400 },
        },
        detail: { field: 'seed', type: 'nominal' },
      },
    } as TopLevelSpec,
  };
}

/** The first interpreted seed's own three figures (interpret/figures.ts), captioned; none without one. */
function interpretFigures(seeds: Seeds): ReportFigure[] {
  const first = seeds.find((sd) => sd.interpret);
  if (!first) return [];
  const figs = first.interpret!.figures;
  return [
    {
      id: 'dose-response',
      caption: prose('captionDoseResponse', { seed: first.seed }),
      spec: figs.doseResponse,
    },
    { id: 'persona-space', caption: prose('captionPersonaSpace'), spec: figs.personaSpace },
    { id: 'projection-shift', caption: prose('captionProjectionShift'), spec: figs.shift },
  ];
}
