/**
 * The charting runtime (vega-embed: Vega and Vega-Lite, the libraries the static report renders with), loaded as its
 * own chunk on the first chart. Expressions run through Vega's interpreter, so the page's CSP needs no eval.
 */
import embed, { type Result, type VisualizationSpec } from 'vega-embed';
import { expressionInterpreter } from 'vega-interpreter';

export type { Result };

const dark = () => matchMedia('(prefers-color-scheme: dark)').matches;

function theme(): Record<string, unknown> {
  const ink = dark() ? '#d4d8e0' : '#2b2f36';
  const grid = dark() ? '#3a3f4a' : '#e6e8ec';
  const symbol = dark() ? '#9aa3b2' : '#5a6270';
  return {
    background: null,
    font: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
    axis: {
      labelColor: ink,
      titleColor: ink,
      gridColor: grid,
      domainColor: grid,
      tickColor: grid,
      labelFontSize: 11,
      titleFontSize: 12,
    },
    legend: {
      labelColor: ink,
      titleColor: ink,
      labelFontSize: 11,
      titleFontSize: 12,
      labelLimit: 260,
      symbolBaseFillColor: symbol,
      symbolBaseStrokeColor: symbol,
    },
    header: { labelColor: ink, titleColor: ink },
    title: { color: ink, fontSize: 13, fontWeight: 600, anchor: 'start' },
    view: { stroke: grid },
    text: { color: ink },
    range: {
      category: [
        '#4263eb',
        '#e8590c',
        '#2b8a3e',
        '#c2255c',
        '#7048e8',
        '#1098ad',
        '#f08c00',
        '#5c940d',
        '#862e9c',
        '#495057',
      ],
    },
  };
}

export async function draw(el: HTMLElement, spec: Record<string, unknown>, label: string): Promise<Result> {
  const result = await embed(el, spec as VisualizationSpec, {
    renderer: 'svg',
    ast: true,
    expr: expressionInterpreter,
    config: theme() as never,
    // Export stays (it works offline); the online editor and source views do not.
    actions: { export: true, source: false, compiled: false, editor: false },
    i18n: { PNG_ACTION: `Save “${label}” as PNG`, SVG_ACTION: `Save “${label}” as SVG` } as never,
    tooltip: { theme: dark() ? 'dark' : 'light' },
  });
  // The export menu's button is an icon: give it a name screen readers can say.
  for (const summary of el.querySelectorAll('details > summary'))
    summary.setAttribute('aria-label', `Save ${label}`);
  return result;
}
