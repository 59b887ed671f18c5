/** How the report writes numbers: fixed decimals, 'n/a' for what was not measured, a ± 95% interval where known. */
import type { Estimate } from '../../measurement/stats.ts';

export const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

export const fmtE = (e: Estimate) =>
  Number.isFinite(e.ci95) ? `${fmt(e.mean)} ± ${fmt(e.ci95)}` : fmt(e.mean);

/** A share of seeds as a whole percentage ('-' when unmeasured). */
export const fmtShare = (x: number) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '-');
