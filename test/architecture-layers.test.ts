/**
 * The source folders form layers, and a file imports only its own folder or folders below it (README, "Shape of the
 * code"). A newcomer finds the room for a change by its layer; a cycle between folders would make that a lie. The
 * rank table below is the layering; a new folder must be given its place here before anything imports it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');

/** Lower imports nothing above it; folders of equal rank do not import each other. */
const RANK: Record<string, number> = {
  io: 0,
  tensor: 0,
  tokenizer: 1,
  autograd: 1,
  model: 2,
  training: 3,
  world: 4,
  measurement: 4,
  interop: 4,
  providers: 5,
  interpret: 5,
  audit: 6,
  recipe: 7,
  pipeline: 7,
  sweep: 8,
  serve: 9,
  web: 10,
  cli: 11,
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|tsx|mts)$/.test(e.name) ? [p] : [];
  });
}

/** The relative specifiers a file imports (static, type-only, re-exports and dynamic import()). */
function relativeImports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g))
    specs.push(m[1]);
  return specs;
}

const folderOf = (file: string) => path.relative(SRC, file).split(path.sep)[0];

describe('source layering', () => {
  const files = sourceFiles(SRC).filter((f) => path.relative(SRC, f).includes(path.sep));

  it('gives every source folder a rank', () => {
    const folders = [...new Set(files.map(folderOf))].sort();
    expect(folders.filter((f) => !(f in RANK))).toEqual([]);
  });

  it('imports only downward: its own folder or a folder of lower rank', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = folderOf(file);
      for (const spec of relativeImports(file)) {
        const target = path.resolve(path.dirname(file), spec);
        if (!target.startsWith(SRC + path.sep)) continue;
        const to = folderOf(target);
        if (to === from || !(to in RANK) || !(from in RANK)) continue;
        if (RANK[to] >= RANK[from])
          upward.push(`${path.relative(SRC, file)} imports ${spec} (${from} -> ${to})`);
      }
    }
    expect(upward).toEqual([]);
  });
});
