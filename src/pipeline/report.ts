/**
 * The run report, from report/: summary.ts pools the seeds, goals.ts reads the goals on them (one function each),
 * figures.ts builds one Vega-Lite spec per figure, markdown.ts and html.ts lay out report.md and report.html, and
 * render.ts writes them with report.json and the figures as SVG and PNG. Every sentence is in report/prose.ts.
 */
export { renderReport } from './report/render.ts';
export { summarize } from './report/summary.ts';
export type { InterpretAggregate, Summary } from './report/types.ts';
export { goals } from './report/goals.ts';
export { figures, screeningFigure, type ReportFigure } from './report/figures.ts';
export { markdown, preventativeTable, screeningLines } from './report/markdown.ts';
export { html } from './report/html.ts';
export {
  aggregatePreventative,
  preventativeGoal,
  preventativeKey,
  preventativeName,
  preventativeTrialsOf,
  PREVENTATIVE_GOAL_KEYS,
  type PreventativeAggregate,
} from './report/preventative.ts';
export { aggregateScreening, type ScreeningAggregate } from './report/screening.ts';
export { prose, REPORT_PROSE, PREVENTATIVE_NAMES, type ProseKey } from './report/prose.ts';
