/**
 * Figures as files: a Vega-Lite spec rendered headless to SVG, and the SVG to PNG (for Markdown viewers that do not
 * show SVG), each written atomically beside the spec itself so anyone can re-render or restyle it.
 */
import * as path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Writes `<id>.vl.json`, `<id>.svg` and `<id>.png` into dir; returns the SVG's path. */
export async function writeFigureFiles(dir: string, id: string, spec: TopLevelSpec): Promise<string> {
  const svg = await renderSvg(spec);
  atomicWriteJsonSync(path.join(dir, `${id}.vl.json`), spec);
  atomicWriteFileSync(path.join(dir, `${id}.svg`), svg);
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } })
    .render()
    .asPng();
  atomicWriteFileSync(path.join(dir, `${id}.png`), png);
  return path.join(dir, `${id}.svg`);
}
