/**
 * `renderReport`: a run's report written into its folder (report.md, report.html, report.json, and each figure as
 * figures/<id>.svg and .png), every file atomically. Figures are Vega-Lite specs rendered headless.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../../io/atomic-write.ts';
import type { RunResults } from '../results.ts';
import { figures } from './figures.ts';
import { html } from './html.ts';
import { markdown } from './markdown.ts';
import { summarize } from './summary.ts';

/** A Vega-Lite spec as SVG, rendered without a browser. */
async function renderFigure(spec: TopLevelSpec): Promise<string> {
  const compiled = compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/** Writes report.md, report.html, report.json and figures/*.svg|png into runDir; returns report.html's path. */
export async function renderReport(runDir: string, results: RunResults): Promise<string> {
  const s = summarize(results);
  const figs = figures(results, s);
  const figDir = path.join(runDir, 'figures');
  fs.mkdirSync(figDir, { recursive: true });
  const svgs = new Map<string, string>();
  for (const f of figs) {
    const svg = await renderFigure(f.spec);
    svgs.set(f.id, svg);
    atomicWriteFileSync(path.join(figDir, `${f.id}.svg`), svg);
    const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } })
      .render()
      .asPng();
    atomicWriteFileSync(path.join(figDir, `${f.id}.png`), png);
  }
  const md = markdown(results, s, figs);
  atomicWriteFileSync(path.join(runDir, 'report.md'), md);
  atomicWriteFileSync(path.join(runDir, 'report.html'), html(md, svgs));
  atomicWriteJsonSync(path.join(runDir, 'report.json'), { summary: s, results });
  return path.join(runDir, 'report.html');
}
