/**
 * Fuzzing the world YAML loader (src/world/schema.ts): structural edits of a valid world (fields replaced by
 * arbitrary values, deleted, unknown or "__proto__" keys added), line edits of its text (deleted, doubled,
 * re-indented lines, YAML anchors and aliases) and byte edits. Every malformed world is answered by a
 * WorldError naming the file, in bounded time and memory (fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseWorld } from '../src/world/schema.ts';
import {
  applyStructuralEdits,
  byteMutation,
  expectCleanOutcome,
  fraction,
  fuzzParams,
  mutate,
  structuralEdit,
} from './fuzz-support.ts';

const TEXT = fs.readFileSync(new URL('../worlds/tiny.yaml', import.meta.url), 'utf8');
const DOC = YAML.parse(TEXT) as unknown;
const SOURCE = 'fuzz-world.yaml';
const LINES = TEXT.split('\n');

type LineEdit = { kind: 'delete' | 'double' | 'indent' | 'dedent' | 'replace'; at: number; text: string };
const lineEdit: fc.Arbitrary<LineEdit> = fc.record({
  kind: fc.constantFrom('delete', 'double', 'indent', 'dedent', 'replace'),
  at: fraction,
  text: fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.constantFrom(
      '&a [1, 2]',
      '*a',
      '<<: *a',
      '- *a',
      'x: !!binary AAAA',
      'x: !!js/function f',
      '? [a]',
      '---',
      '"\\u0000"',
    ),
  ),
});

function applyLineEdits(edits: readonly LineEdit[]): string {
  const lines = [...LINES];
  for (const e of edits) {
    const i = Math.floor(e.at * lines.length);
    if (e.kind === 'delete') lines.splice(i, 1);
    else if (e.kind === 'double') lines.splice(i, 0, lines[i] ?? '');
    else if (e.kind === 'indent') lines[i] = `  ${lines[i] ?? ''}`;
    else if (e.kind === 'dedent') lines[i] = (lines[i] ?? '').replace(/^ {1,2}/, '');
    else lines[i] = (lines[i] ?? '').replace(/:.*$/, `: ${e.text}`);
  }
  return lines.join('\n');
}

describe('world YAML loader under fuzzing', () => {
  it('the valid world reads', () => {
    expect(parseWorld(TEXT, SOURCE).name).toBe('tiny');
  });

  it('structural edits', () => {
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const text = YAML.stringify(applyStructuralEdits(DOC, edits)) ?? '';
        expectCleanOutcome(() => parseWorld(text, SOURCE), { source: SOURCE });
      }),
      fuzzParams(100),
    );
  });

  it('line edits of the text', () => {
    fc.assert(
      fc.property(fc.array(lineEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const text = applyLineEdits(edits);
        expectCleanOutcome(() => parseWorld(text, SOURCE), { source: SOURCE });
      }),
      fuzzParams(100),
    );
  });

  it('byte edits of the text', () => {
    const bytes = Buffer.from(TEXT);
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (ms) => {
        const text = Buffer.from(mutate(bytes, ms)).toString('utf8');
        expectCleanOutcome(() => parseWorld(text, SOURCE), { source: SOURCE });
      }),
      fuzzParams(80),
    );
  });

  it('an alias bomb is refused quickly', () => {
    const bomb = [
      'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]',
      ...Array.from(
        { length: 8 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
            .fill(`*${String.fromCharCode(97 + i)}`)
            .join(', ')}]`,
      ),
      'name: *i',
    ].join('\n');
    expect(expectCleanOutcome(() => parseWorld(bomb, SOURCE), { source: SOURCE, maxMs: 1000 })).toBeDefined();
  });
});
