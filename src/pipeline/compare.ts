/**
 * Comparing runs: any metric of the report, read per seed from each run's results, with its t-interval over seeds
 * (as the report computes it), the Bayesian persona model's value for the same evidence, and each run's difference
 * from the first run: paired over the seeds both runs have (at least two), and a two-sample (Welch) interval always.
 *
 * Metrics are read from a one-seed summary (report.ts `summarize` on that seed alone), so a metric here is the
 * report's metric for that seed; the per-domain and assistant-axis metrics are read from the seed's results.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { estimate, mean, tQuantile975, variance, type Estimate } from '../measurement/stats.ts';
import { writeFigureFiles } from './figure.ts';
import { summarize, type Summary } from './report.ts';
import type { BatteryResult, RunResults, SeedResult } from './results.ts';

/** One run folder (or one variant of it) as compared. */
export interface ComparedRun {
  label: string;
  dir: string;
  variant: string;
  /** True when the run is unfinished and its last partial results (every seed done so far) are read. */
  partial: boolean;
  results: RunResults;
}

/** A metric's value for one seed, and Bayes's for the same evidence (null where Bayes has no such number). */
export interface SeedMetric {
  value: number;
  bayes: number | null;
}

export interface MetricDef {
  name: string;
  description: string;
  read: (seed: SeedResult, summary: Summary) => SeedMetric | null;
}

export interface RunMetric {
  run: string;
  seeds: number[];
  values: number[];
  estimate: Estimate;
  /** Mean over seeds of Bayes's value (null where Bayes has none). */
  bayes: number | null;
}

export interface Interval {
  mean: number;
  /** Half-width of the 95% interval; NaN when there are too few seeds. */
  ci95: number;
  df: number;
}

export interface RunDifference {
  run: string;
  reference: string;
  /** Over the seeds both runs have (null with fewer than two in common). */
  paired: (Interval & { seeds: number[] }) | null;
  /** Welch's two-sample interval (each run needs at least two seeds). */
  welch: Interval | null;
}

export interface MetricComparison {
  metric: string;
  description: string;
  runs: RunMetric[];
  differences: RunDifference[];
}

export interface Comparison {
  runs: { label: string; dir: string; variant: string; partial: boolean; world: string; seeds: number[] }[];
  metrics: MetricComparison[];
}

// ---------------------------------------------------------------------------------------------------------------
// Runs

/**
 * A run given as `DIR` or `DIR:variant` (the alignment-pre-training variant of a run is `DIR:alignment`). An
 * unfinished run is read from its partial results, which hold every seed finished so far.
 */
export function loadComparedRun(spec: string, label?: string): ComparedRun {
  let dir = spec;
  let variant = 'standard';
  const colon = spec.lastIndexOf(':');
  if (colon > 0 && /^[a-z]+$/.test(spec.slice(colon + 1)) && !fs.existsSync(spec)) {
    dir = spec.slice(0, colon);
    variant = spec.slice(colon + 1);
  }
  const finished = path.join(dir, 'results.json');
  const partialFile = path.join(dir, 'partial', 'results.json');
  const partial = !fs.existsSync(finished);
  const file = partial ? partialFile : finished;
  if (!fs.existsSync(file))
    throw new Error(
      `${dir}: no results.json (nor partial/results.json); is it a run folder with a finished seed?`,
    );
  let results: RunResults;
  try {
    results = JSON.parse(fs.readFileSync(file, 'utf8')) as RunResults;
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as Error).message})`);
  }
  const variants = [...new Set(results.seeds.map((s) => s.variant))];
  if (!variants.includes(variant))
    throw new Error(`${dir}: no seed of variant "${variant}" (variants: ${variants.join(', ') || 'none'})`);
  const base = path.basename(path.resolve(dir));
  return {
    label: label ?? (variant === 'standard' ? base : `${base}:${variant}`),
    dir,
    variant,
    partial,
    results,
  };
}

function seedsOf(run: ComparedRun): SeedResult[] {
  return run.results.seeds.filter((s) => s.variant === run.variant);
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics

const domainBayes = (b: BatteryResult, domain: string) =>
  b.domains.find((d) => d.domain === domain)?.bayes ?? null;
const domainPGood = (b: BatteryResult, domain: string) =>
  b.domains.find((d) => d.domain === domain)?.pGood.mean ?? NaN;

/** Mean of Bayes over some domains of a battery (null when Bayes was not recorded). */
function bayesOver(b: BatteryResult, domains: readonly string[]): number | null {
  const xs = domains.map((d) => domainBayes(b, d));
  return xs.some((x) => x === null) ? null : mean(xs as number[]);
}

const sub = (a: number | null, b: number | null) => (a === null || b === null ? null : a - b);

/** Every metric a run's results hold, named by a stable vocabulary (`psm compare --list` prints it). */
export function metricDefs(results: RunResults, variant = 'standard'): MetricDef[] {
  const first = results.seeds.find((s) => s.variant === variant);
  if (!first) return [];
  const w = results.world;
  const off = w.domains.filter((d) => d !== w.finetuneDomain);
  const defs: MetricDef[] = [
    {
      name: 'persona.r',
      description:
        "persona inference: mean item-level correlation of the network's P(good) with Bayes's, k >= 1",
      read: (_s, m) => ({ value: m.personaInference.meanCorrelation.mean, bayes: null }),
    },
  ];
  for (const p of first.personaCheck.byK) {
    const at = (m: Summary) => m.personaInference.byK.find((x) => x.k === p.k);
    defs.push(
      {
        name: `persona.k${p.k}`,
        description: `persona inference: P(trait-consistent option) after k = ${p.k} scenes of a new character`,
        read: (_s, m) => {
          const x = at(m);
          return x ? { value: x.model.mean, bayes: x.bayes } : null;
        },
      },
      {
        name: `persona.r.k${p.k}`,
        description: `persona inference: item-level correlation with Bayes at k = ${p.k}`,
        read: (_s, m) => {
          const x = at(m);
          return x ? { value: x.correlation.mean, bayes: null } : null;
        },
      },
    );
  }
  defs.push(
    {
      name: 'package.good',
      description: 'package deal: P(good) in a domain after 3 all-good scenes in others',
      read: (_s, m) => ({
        value: m.personaInference.packageGood.mean,
        bayes: m.personaInference.packageBayes.good,
      }),
    },
    {
      name: 'package.bad',
      description: 'package deal: P(good) in a domain after 3 all-bad scenes in others',
      read: (_s, m) => ({
        value: m.personaInference.packageBad.mean,
        bayes: m.personaInference.packageBayes.bad,
      }),
    },
    {
      name: 'package.gap',
      description: 'package deal: all-good minus all-bad',
      read: (_s, m) => ({
        value: m.personaInference.packageGood.mean - m.personaInference.packageBad.mean,
        bayes: m.personaInference.packageBayes.good - m.personaInference.packageBayes.bad,
      }),
    },
    {
      name: 'pretrain.valLoss',
      description: 'pre-training validation loss (nats per token)',
      read: (s) => ({ value: s.pretrain.valLoss, bayes: null }),
    },
    {
      name: 'base.untrained',
      description: "the Assistant's mean P(good) over the untrained domains before post-training",
      read: (s) => ({ value: s.base.untrainedMean, bayes: bayesOver(s.base, w.untrainedDomains) }),
    },
    {
      name: 'post.untrained',
      description: "the Assistant's mean P(good) over the untrained domains after post-training",
      read: (s) => ({
        value: s.posttrained.untrainedMean,
        bayes: bayesOver(s.posttrained, w.untrainedDomains),
      }),
    },
    {
      name: 'post.rise',
      description: 'post-training generalisation: untrained-domain mean P(good) after minus before',
      read: (_s, m) => ({ value: m.postTraining.rise.mean, bayes: m.postTraining.bayesRise }),
    },
    {
      name: 'psm.r2',
      description:
        "how much the persona model explains: R² of the network's per-domain shifts on Bayes's (this seed)",
      read: (_s, m) => ({ value: m.psmExplains.r2, bayes: null }),
    },
    {
      name: 'psm.slope',
      description: "slope of the network's per-domain shifts on Bayes's (this seed)",
      read: (_s, m) => ({ value: m.psmExplains.slope, bayes: null }),
    },
  );
  for (const [stage, pick] of [
    ['base', (s: SeedResult) => s.base],
    ['post', (s: SeedResult) => s.posttrained],
  ] as const) {
    for (const d of w.domains)
      defs.push({
        name: `${stage}.${d}`,
        description: `the Assistant's P(good) in ${d} ${stage === 'base' ? 'before' : 'after'} post-training`,
        read: (s) => ({ value: domainPGood(pick(s), d), bayes: domainBayes(pick(s), d) }),
      });
  }
  for (const a of first.arms) {
    const key = `${a.arm}/${a.trainable}`;
    const armOf = (s: SeedResult, arm = a.arm) =>
      s.arms.find((x) => x.arm === arm && x.trainable === a.trainable);
    const summaryArm = (m: Summary) => m.arms.find((x) => x.arm === a.arm && x.trainable === a.trainable);
    defs.push(
      {
        name: `${key}.offTarget`,
        description: `${key}: mean P(good) over the domains other than the fine-tuned one`,
        read: (_s, m) => {
          const x = summaryArm(m);
          return x ? { value: x.offTarget.mean, bayes: x.bayesOffTarget } : null;
        },
      },
      {
        name: `${key}.offTargetChange`,
        description: `${key}: off-target mean P(good) minus the post-trained model's`,
        read: (s) => {
          const x = armOf(s);
          return x
            ? {
                value: x.battery.offTargetMean - s.posttrained.offTargetMean,
                bayes: sub(bayesOver(x.battery, off), bayesOver(s.posttrained, off)),
              }
            : null;
        },
      },
      {
        name: `${key}.target`,
        description: `${key}: P(good) in the fine-tuned domain itself (is the narrow behaviour learned?)`,
        read: (s) => {
          const x = armOf(s);
          return x ? { value: x.targetDomainPGood, bayes: domainBayes(x.battery, w.finetuneDomain) } : null;
        },
      },
    );
    if (a.arm !== 'control')
      defs.push({
        name: `${key}.vsControl`,
        description: `${key}: off-target mean P(good) minus the control arm's (good behaviour, same trainable set)`,
        read: (s) => {
          const x = armOf(s);
          const c = armOf(s, 'control');
          return x && c
            ? {
                value: x.battery.offTargetMean - c.battery.offTargetMean,
                bayes: sub(bayesOver(x.battery, off), bayesOver(c.battery, off)),
              }
            : null;
        },
      });
    for (const d of w.domains)
      defs.push({
        name: `${key}.${d}`,
        description: `${key}: the Assistant's P(good) in ${d}`,
        read: (s) => {
          const x = armOf(s);
          return x ? { value: domainPGood(x.battery, d), bayes: domainBayes(x.battery, d) } : null;
        },
      });
  }
  for (const p of first.interpret?.space.assistant ?? []) {
    const stage = p.stage === 'post-trained' ? 'post' : p.stage;
    defs.push({
      name: `axis.${stage}`,
      description: `the Assistant's position on the assistant axis (${p.stage}; archetypes' mean 0, post-trained 1)`,
      read: (s) => {
        const x = s.interpret?.space.assistant.find((y) => y.stage === p.stage);
        return x ? { value: x.axisPosition, bayes: null } : null;
      },
    });
  }
  return defs;
}

/** The metrics shown when none are named: the headline numbers that every given run has. */
export function defaultMetricNames(available: readonly string[]): string[] {
  const pick = (re: RegExp) => available.filter((n) => re.test(n));
  return [
    'persona.r',
    'package.gap',
    'post.rise',
    ...pick(/^cheat\/[a-z0-9]+\.vsControl$/),
    ...pick(/^cheat\/[a-z0-9]+\.target$/),
    'psm.r2',
  ].filter((n) => available.includes(n));
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics

/** Welch's two-sample 95% interval of mean(a) - mean(b); the t quantile at the df rounded down (conservative). */
export function welchInterval(a: readonly number[], b: readonly number[]): Interval | null {
  if (a.length < 2 || b.length < 2) return null;
  const va = variance(a) / a.length;
  const vb = variance(b) / b.length;
  const diff = mean(a) - mean(b);
  const se = Math.sqrt(va + vb);
  if (se === 0) return { mean: diff, ci95: 0, df: a.length + b.length - 2 };
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  return { mean: diff, ci95: tQuantile975(Math.max(1, Math.floor(df))) * se, df };
}

/**
 * The paired 95% t-interval of per-seed differences a - b over the seeds both runs have (null with fewer than two in
 * common): a seed shares its model initialisation and data order between runs, so pairing removes that noise.
 */
export function pairedInterval(a: RunMetric, b: RunMetric): (Interval & { seeds: number[] }) | null {
  const seeds = a.seeds.filter((s) => b.seeds.includes(s));
  if (seeds.length < 2) return null;
  const diffs = seeds.map((s) => a.values[a.seeds.indexOf(s)] - b.values[b.seeds.indexOf(s)]);
  const e = estimate(diffs);
  return { mean: e.mean, ci95: e.ci95, df: diffs.length - 1, seeds };
}

// ---------------------------------------------------------------------------------------------------------------
// The comparison

function runMetric(run: ComparedRun, def: MetricDef): RunMetric {
  const seeds: number[] = [];
  const values: number[] = [];
  const bayes: number[] = [];
  for (const s of seedsOf(run)) {
    const m = def.read(s, summarize({ ...run.results, seeds: [s] }, run.variant));
    // A seed where the metric is undefined (a correlation of constant values) is left out, not counted as 0.
    if (!m || !Number.isFinite(m.value)) continue;
    seeds.push(s.seed);
    values.push(m.value);
    if (m.bayes !== null && Number.isFinite(m.bayes)) bayes.push(m.bayes);
  }
  return {
    run: run.label,
    seeds,
    values,
    estimate: estimate(values),
    bayes: bayes.length > 0 && bayes.length === values.length ? mean(bayes) : null,
  };
}

/**
 * The metrics all runs share (in the first run's order), the names only some runs have, and every run's own
 * definitions: each run reads a metric with its own, since the runs' worlds (domains, fine-tune domain) may differ.
 */
export function availableMetrics(runs: readonly ComparedRun[]): {
  shared: MetricDef[];
  some: string[];
  perRun: Map<string, MetricDef>[];
} {
  const perRun = runs.map((r) => new Map(metricDefs(r.results, r.variant).map((d) => [d.name, d])));
  const shared = [...(perRun[0]?.values() ?? [])].filter((d) => perRun.every((m) => m.has(d.name)));
  const some = [...new Set(perRun.flatMap((m) => [...m.keys()]))].filter(
    (n) => !shared.some((d) => d.name === n),
  );
  return { shared, some, perRun };
}

/** Compare runs on the named metrics (default: the headline ones); an unknown name lists the valid ones. */
export function compareRuns(runs: readonly ComparedRun[], metricNames?: readonly string[]): Comparison {
  if (runs.length === 0) throw new Error('compare: give at least one run');
  const { shared, some, perRun } = availableMetrics(runs);
  const names =
    metricNames && metricNames.length > 0 ? metricNames : defaultMetricNames(shared.map((d) => d.name));
  const defs = names.map((name) => {
    const def = shared.find((d) => d.name === name);
    if (def) return def;
    const partly = some.includes(name) ? ` ("${name}" exists in some of the runs only)` : '';
    throw new Error(
      `unknown metric "${name}"${partly}; metrics every run has: ${shared.map((d) => d.name).join(', ')}`,
    );
  });
  return {
    runs: runs.map((r) => ({
      label: r.label,
      dir: r.dir,
      variant: r.variant,
      partial: r.partial,
      world: r.results.world.name,
      seeds: seedsOf(r).map((s) => s.seed),
    })),
    metrics: defs.map((def) => {
      const per = runs.map((r, i) => runMetric(r, perRun[i].get(def.name)!));
      return {
        metric: def.name,
        description: def.description,
        runs: per,
        differences: per.slice(1).map((m) => ({
          run: m.run,
          reference: per[0].run,
          paired: pairedInterval(m, per[0]),
          welch: welchInterval(m.values, per[0].values),
        })),
      };
    }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Output: terminal table, Markdown, JSON, figure

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const withCi = (mean: number, ci: number) => (Number.isFinite(ci) ? `${f2(mean)} ± ${f2(ci)}` : f2(mean));
/** Network over Bayes, where Bayes predicts an effect large enough for a ratio to mean something. */
const ratio = (m: RunMetric) =>
  m.bayes !== null && Math.abs(m.bayes) >= 0.005 ? (m.estimate.mean / m.bayes).toFixed(2) : '-';

interface Row {
  run: string;
  seeds: string;
  perSeed: string;
  mean: string;
  bayes: string;
  ratio: string;
  paired: string;
  welch: string;
}

function rows(m: MetricComparison): Row[] {
  return m.runs.map((r, i) => {
    const d = i === 0 ? null : m.differences[i - 1];
    return {
      run: r.run,
      seeds: r.seeds.join(','),
      perSeed: r.values.map(f2).join(' '),
      mean: withCi(r.estimate.mean, r.estimate.ci95),
      bayes: r.bayes === null ? '-' : f2(r.bayes),
      ratio: ratio(r),
      paired: d?.paired
        ? `${withCi(d.paired.mean, d.paired.ci95)}${d.paired.seeds.length < r.seeds.length || d.paired.seeds.length < m.runs[0].seeds.length ? ` (seeds ${d.paired.seeds.join(',')})` : ''}`
        : i === 0
          ? 'reference'
          : '-',
      welch: d?.welch
        ? `${withCi(d.welch.mean, d.welch.ci95)} (df ${d.welch.df.toFixed(1)})`
        : i === 0
          ? ''
          : '-',
    };
  });
}

const HEADERS: Row = {
  run: 'run',
  seeds: 'seeds',
  perSeed: 'per seed',
  mean: 'mean ± 95% CI',
  bayes: 'Bayes',
  ratio: 'net/Bayes',
  paired: 'Δ paired',
  welch: 'Δ Welch',
};

export function formatComparison(c: Comparison): string {
  const out: string[] = [];
  const partial = c.runs.filter((r) => r.partial);
  if (partial.length > 0)
    out.push(`unfinished (the seeds done so far): ${partial.map((r) => r.label).join(', ')}`, '');
  for (const m of c.metrics) {
    out.push(`${m.metric}: ${m.description}`);
    const table = [HEADERS, ...rows(m)];
    const keys = Object.keys(HEADERS) as (keyof Row)[];
    const widths = keys.map((k) => Math.max(...table.map((r) => r[k].length)));
    for (const r of table) out.push(`  ${keys.map((k, j) => r[k].padEnd(widths[j])).join('  ')}`.trimEnd());
    out.push('');
  }
  out.push(
    `Δ: each run minus ${c.runs[0].label}; paired over the seeds both runs have, Welch's two-sample interval over all seeds. Intervals are 95% t-intervals over seeds.`,
  );
  return out.join('\n');
}

export function comparisonMarkdown(c: Comparison, figure?: string): string {
  const out: string[] = ['# Run comparison', ''];
  out.push('| run | folder | world | seeds |', '| --- | --- | --- | --- |');
  for (const r of c.runs)
    out.push(
      `| ${r.label} | ${r.dir}${r.variant !== 'standard' ? ` (${r.variant})` : ''} | ${r.world} | ${r.seeds.join(', ')}${r.partial ? ' (unfinished)' : ''} |`,
    );
  out.push('');
  if (figure) out.push(`![per-seed values, means with 95% intervals, and Bayes](${figure})`, '');
  for (const m of c.metrics) {
    out.push(`## ${m.metric}`, '', m.description, '');
    const keys = Object.keys(HEADERS) as (keyof Row)[];
    out.push(`| ${keys.map((k) => HEADERS[k]).join(' | ')} |`, `|${keys.map(() => ' --- ').join('|')}|`);
    for (const r of rows(m)) out.push(`| ${keys.map((k) => r[k]).join(' | ')} |`);
    out.push('');
  }
  out.push(
    `Δ: each run minus ${c.runs[0].label}. Paired: the 95% t-interval of the per-seed differences over the seeds both runs have (listed when not all). Welch: the two-sample 95% interval over all seeds (t at the Welch-Satterthwaite degrees of freedom, rounded down). net/Bayes: the network's mean over Bayes's value for the same evidence, where Bayes's is at least 0.005 in size.`,
    '',
  );
  return out.join('\n');
}

/** Per metric a panel: each seed's value, the mean with its 95% interval, and Bayes's value, per run. */
export function comparisonFigure(c: Comparison): TopLevelSpec {
  const order = c.runs.map((r) => r.label);
  const values: Record<string, unknown>[] = [];
  for (const m of c.metrics)
    for (const r of m.runs) {
      r.values.forEach((v, i) =>
        values.push({ metric: m.metric, run: r.run, what: 'seed', seed: r.seeds[i], value: v }),
      );
      const ci = Number.isFinite(r.estimate.ci95) ? r.estimate.ci95 : 0;
      values.push({
        metric: m.metric,
        run: r.run,
        what: 'mean ± 95% CI',
        value: r.estimate.mean,
        lo: r.estimate.mean - ci,
        hi: r.estimate.mean + ci,
      });
      if (r.bayes !== null) values.push({ metric: m.metric, run: r.run, what: 'Bayes', value: r.bayes });
    }
  const x = { field: 'run', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30 } } as const;
  const color = {
    field: 'what',
    type: 'nominal',
    title: null,
    scale: { domain: ['seed', 'mean ± 95% CI', 'Bayes'], range: ['#9aa5b1', '#1f4e79', '#d9822b'] },
  } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values },
    facet: { field: 'metric', type: 'nominal', sort: c.metrics.map((m) => m.metric), title: null },
    columns: Math.min(3, c.metrics.length),
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: Math.max(120, 70 * order.length),
      height: 160,
      layer: [
        {
          transform: [{ filter: "datum.what === 'seed'" }],
          mark: { type: 'point', filled: true, size: 40, opacity: 0.8 },
          encoding: {
            x,
            xOffset: { field: 'seed', type: 'nominal' },
            y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
            color,
            tooltip: [{ field: 'seed' }, { field: 'value', format: '.3f' }],
          },
        },
        {
          transform: [{ filter: "datum.what === 'mean ± 95% CI'" }],
          mark: { type: 'rule', strokeWidth: 2 },
          encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color },
        },
        {
          transform: [{ filter: "datum.what === 'mean ± 95% CI'" }],
          mark: { type: 'tick', thickness: 2, size: 18 },
          encoding: { x, y: { field: 'value', type: 'quantitative' }, color },
        },
        {
          transform: [{ filter: "datum.what === 'Bayes'" }],
          mark: { type: 'point', shape: 'diamond', filled: true, size: 70 },
          encoding: { x, y: { field: 'value', type: 'quantitative' }, color },
        },
      ],
    },
  } as TopLevelSpec;
}

/** Writes compare.md, compare.json and the figure (compare.svg, .png, .vl.json) into dir; returns the files. */
export async function writeComparison(dir: string, c: Comparison): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const svg = await writeFigureFiles(dir, 'compare', comparisonFigure(c));
  atomicWriteFileSync(path.join(dir, 'compare.md'), comparisonMarkdown(c, path.basename(svg)));
  atomicWriteJsonSync(path.join(dir, 'compare.json'), c);
  return ['compare.md', 'compare.json', 'compare.svg', 'compare.png', 'compare.vl.json'].map((f) =>
    path.join(dir, f),
  );
}
