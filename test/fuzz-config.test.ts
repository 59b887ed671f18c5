/**
 * Fuzzing the experiment config loader (src/pipeline/config.ts, resolveConfig with a file): structural edits
 * of a complete config (fields replaced by arbitrary values, deleted, unknown or "__proto__" keys added) and
 * byte edits of its YAML text. Every malformed config is answered by an Error naming the file, in bounded time
 * and memory (fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { DEFAULT_CONFIG, resolveConfig } from '../src/pipeline/config.ts';
import {
  applyStructuralEdits,
  byteMutation,
  expectCleanOutcome,
  fuzzParams,
  mutate,
  structuralEdit,
} from './fuzz-support.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-fuzz-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'fuzz-config.yaml');
const TEXT = YAML.stringify(DEFAULT_CONFIG);

describe('experiment config loader under fuzzing', () => {
  it('the complete config reads', () => {
    fs.writeFileSync(file, TEXT);
    expect(resolveConfig({ file }).model.dim).toBe(DEFAULT_CONFIG.model.dim);
  });

  it('structural edits', () => {
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        fs.writeFileSync(file, YAML.stringify(applyStructuralEdits(DEFAULT_CONFIG, edits)) ?? '');
        expectCleanOutcome(() => resolveConfig({ file }), { source: file });
      }),
      fuzzParams(200),
    );
  });

  it('byte edits of the YAML text', () => {
    const bytes = Buffer.from(TEXT);
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (ms) => {
        fs.writeFileSync(file, mutate(bytes, ms));
        expectCleanOutcome(() => resolveConfig({ file }), { source: file });
      }),
      fuzzParams(150),
    );
  });
});
