/**
 * The documentation's relative links resolve: every linked file exists and every #anchor names a heading of its
 * target, slugged as GitHub renders it. Benchmark headings carry dates, so a re-measured section silently breaks
 * the links to it unless something checks them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import GithubSlugger from 'github-slugger';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const DOCS = [
  'README.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** Markdown without its fenced code blocks, where link-like text is not a link. */
function prose(file: string): string {
  return fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
}

function anchorsOf(file: string): Set<string> {
  const slugger = new GithubSlugger();
  const headings = prose(file)
    .split('\n')
    .filter((line) => /^#{1,6} /.test(line))
    .map((line) => line.replace(/^#+ /, '').replace(/`/g, ''));
  return new Set(headings.map((h) => slugger.slug(h)));
}

describe('documentation links', () => {
  it('every relative link names an existing file and, with #anchor, one of its headings', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of DOCS) {
      for (const m of prose(file).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
        const [rel, anchor] = target.split('#');
        const linked = rel ? path.join(path.dirname(file), rel) : file;
        checked++;
        if (!fs.existsSync(path.join(ROOT, linked))) broken.push(`${file}: ${target} (no such file)`);
        else if (anchor && linked.endsWith('.md') && !anchorsOf(linked).has(anchor))
          broken.push(`${file}: ${target} (no such heading in ${linked})`);
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(broken).toEqual([]);
  });
});
