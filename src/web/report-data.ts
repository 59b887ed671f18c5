/**
 * The interactive report and the side-by-side view, both read from a run's report.json: the figures are the static
 * report's own Vega-Lite specs (`figures` of the report module, on report.json's results and summary), and the
 * compared numbers come from its summary or, for one seed, from the same summary function on that seed alone.
 */
import { figures, summarize, type Summary } from '../pipeline/report.ts';
import type { BatteryResult, RunResults, SeedResult } from '../pipeline/results.ts';
import type { CompareSide, ReportView } from './api-types.ts';
import { badRequest } from './errors.ts';
import type { RunReport } from './runs.ts';

export function reportView(run: string, report: RunReport, staticReport: string | null): ReportView {
  const figs = figures(report.results, report.summary);
  return {
    run,
    createdAt: report.results.createdAt ?? null,
    goals: report.summary.goals,
    figures: figs.map((f) => ({
      id: f.id,
      caption: f.caption,
      spec: f.spec as unknown as Record<string, unknown>,
    })),
    summary: report.summary as unknown as Record<string, unknown>,
    staticReport,
  };
}

const num = (x: number | null | undefined): number | null =>
  typeof x === 'number' && Number.isFinite(x) ? x : null;

/** What one side of the comparison is: a whole run, one of its seeds, and optionally one fine-tuned arm. */
export interface SideChoice {
  seed?: number;
  /** "<arm>/<trainable>", e.g. "cheat/all". */
  arm?: string;
}

/** Mean over seeds of each domain's P(good) and Bayes in the batteries `pick` selects. */
function domainMeans(seeds: SeedResult[], pick: (s: SeedResult) => BatteryResult | undefined) {
  const batteries = seeds.map(pick).filter((b): b is BatteryResult => b !== undefined);
  const domains = batteries[0]?.domains.map((d) => d.domain) ?? [];
  const mean = (xs: (number | null)[]) => {
    const ok = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
    return ok.length ? ok.reduce((a, b) => a + b, 0) / ok.length : null;
  };
  return domains.map((domain) => ({
    domain,
    pGood: mean(batteries.map((b) => b.domains.find((d) => d.domain === domain)?.pGood.mean ?? null)),
    bayes: mean(batteries.map((b) => b.domains.find((d) => d.domain === domain)?.bayes ?? null)),
  }));
}

export function compareSide(run: string, report: RunReport, choice: SideChoice): CompareSide {
  const results: RunResults = report.results;
  let seeds = results.seeds.filter((s) => s.variant === 'standard');
  let summary: Summary = report.summary;
  if (choice.seed !== undefined) {
    seeds = seeds.filter((s) => s.seed === choice.seed);
    if (seeds.length === 0)
      throw badRequest(
        `run "${run}" has no seed ${choice.seed} (seeds: ${results.seeds.map((s) => s.seed).join(', ')})`,
        'seed',
      );
    summary = summarize({ ...results, seeds });
  }
  let label = choice.seed !== undefined ? `${run}, seed ${choice.seed}` : run;
  let battery = (s: SeedResult): BatteryResult | undefined => s.posttrained;
  const numbers: CompareSide['numbers'] = [
    { name: 'persona inference r (mean over k)', value: num(summary.personaInference.meanCorrelation.mean) },
    { name: 'package deal after all-good scenes', value: num(summary.personaInference.packageGood.mean) },
    { name: 'package deal after all-bad scenes', value: num(summary.personaInference.packageBad.mean) },
    { name: 'post-training rise on untrained domains', value: num(summary.postTraining.rise.mean) },
    { name: 'R² of network shifts on Bayes shifts', value: num(summary.psmExplains.r2) },
  ];
  if (choice.arm !== undefined) {
    const [arm, trainable] = choice.arm.split('/');
    const a = summary.arms.find((x) => x.arm === arm && x.trainable === trainable);
    if (!a)
      throw badRequest(
        `run "${run}" has no arm "${choice.arm}" (arms: ${summary.arms.map((x) => `${x.arm}/${x.trainable}`).join(', ')})`,
        'arm',
      );
    label += `, ${choice.arm}`;
    battery = (s) => s.arms.find((x) => x.arm === arm && x.trainable === trainable)?.battery;
    numbers.push(
      { name: 'off-target P(good) after the fine-tune', value: num(a.offTarget.mean) },
      { name: 'off-target change vs the control arm', value: num(a.vsControl?.mean) },
      { name: 'P(good) in the fine-tuned domain', value: num(a.target.mean) },
      { name: 'Bayes: off-target P(good)', value: num(a.bayesOffTarget) },
    );
  } else {
    const cheat = summary.arms.find((x) => x.arm === 'cheat' && x.trainable === 'all');
    numbers.push({
      name: 'cheat vs control, off-target (all parameters)',
      value: num(cheat?.vsControl?.mean),
    });
  }
  return {
    label,
    domains: domainMeans(seeds, battery),
    numbers,
    inference: summary.personaInference.byK.map((b) => ({
      k: b.k,
      model: num(b.model.mean),
      bayes: num(b.bayes),
    })),
  };
}
