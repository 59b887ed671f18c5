/**
 * Fuzzing the vectors-file readers: persona-vector bundles (loadVectorBundle: safetensors tensors plus a JSON
 * provenance in the metadata) and the named steering vectors of `psm serve --vectors` (loadVectorLibrary: JSON
 * or safetensors). Structural edits of the JSON parts and byte edits of the files; every malformed file is
 * answered by an Error naming the file, in bounded time and memory (fuzz-support.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadVectorBundle, saveVectorBundle, type VectorBundle } from '../src/interpret/index.ts';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.ts';
import { loadVectorLibrary } from '../src/providers/interventions.ts';
import {
  applyStructuralEdits,
  byteMutation,
  expectCleanOutcome,
  fuzzParams,
  mutate,
  structuralEdit,
} from './fuzz-support.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-fuzz-vectors-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const DIM = 4;
const vec = (seed: number) => Float32Array.from({ length: DIM }, (_, i) => Math.sin(seed + i));
const bundle: VectorBundle = {
  format: 'psm-persona-vectors',
  version: 1,
  modelHash: 'abc123',
  model: 'tiny',
  dim: DIM,
  nLayers: 2,
  hookKind: 'hook_resid_post',
  method: 'response',
  span: 'response',
  date: '2025-01-01T00:00:00.000Z',
  itemsPerTrait: 4,
  selection: { alpha: 4, items: 8 },
  traits: ['kind', 'brave'].map((trait, t) => ({
    trait,
    method: 'response' as const,
    byLayer: [0, 1].map((layer) => ({
      trait,
      method: 'response' as const,
      hook: `blocks.${layer}.hook_resid_post`,
      layer,
      vector: vec(t * 2 + layer),
      modelHash: 'abc123',
      dim: DIM,
      residualNorm: 1 + layer,
    })),
    bestLayer: 1,
    steeringEffect: [0.1, 0.2],
    steeringMonotone: [true, false],
  })),
};
const bundleFile = path.join(dir, 'bundle.safetensors');
saveVectorBundle(bundleFile, bundle);
const bundleBytes = fs.readFileSync(bundleFile);
const stored = parseSafetensors(bundleBytes, bundleFile);
const provenance = JSON.parse(stored.metadata.provenance) as unknown;

describe('persona-vector bundles under fuzzing', () => {
  it('the valid bundle reads', () => {
    expect(loadVectorBundle(bundleFile).traits.map((t) => t.trait)).toEqual(['kind', 'brave']);
  });

  it('structural edits of the provenance', () => {
    const file = path.join(dir, 'edited.safetensors');
    fc.assert(
      fc.property(fc.array(structuralEdit, { minLength: 1, maxLength: 3 }), (edits) => {
        const metadata = {
          ...stored.metadata,
          provenance: JSON.stringify(applyStructuralEdits(provenance, edits)) ?? '',
        };
        fs.writeFileSync(file, Buffer.concat(serializeSafetensors(stored.tensors, metadata)));
        expectCleanOutcome(() => loadVectorBundle(file), { source: file });
      }),
      fuzzParams(300),
    );
  });

  it('byte edits of the file', () => {
    const file = path.join(dir, 'bytes.safetensors');
    fc.assert(
      fc.property(fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (ms) => {
        fs.writeFileSync(file, mutate(bundleBytes, ms));
        expectCleanOutcome(() => loadVectorBundle(file), { source: file });
      }),
      fuzzParams(300),
    );
  });
});

describe('named steering vectors (psm serve --vectors) under fuzzing', () => {
  const library = {
    evil: [0.5, -1, 2, 0],
    refusal: { vector: [1, 0, 0, 1], hook: 'blocks.1.hook_resid_mid' },
  };
  const st = Buffer.concat(
    serializeSafetensors(
      { evil: { data: vec(1), shape: [DIM] }, kind: { data: vec(2), shape: [DIM] } },
      { 'hook.evil': 'blocks.0.hook_resid_post' },
    ),
  );

  it('the valid files read', () => {
    const json = path.join(dir, 'lib.json');
    fs.writeFileSync(json, JSON.stringify(library));
    expect([...loadVectorLibrary(json, DIM).keys()]).toEqual(['evil', 'refusal']);
    const file = path.join(dir, 'lib.safetensors');
    fs.writeFileSync(file, st);
    expect(loadVectorLibrary(file, DIM).get('evil')?.hook).toBe('blocks.0.hook_resid_post');
  });

  it('structural edits of the JSON file, byte edits of both kinds', () => {
    const json = path.join(dir, 'fuzz.json');
    const file = path.join(dir, 'fuzz.safetensors');
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .array(structuralEdit, { minLength: 1, maxLength: 3 })
            .map((e) => ({ json: JSON.stringify(applyStructuralEdits(library, e)) ?? '' })),
          fc
            .array(byteMutation, { minLength: 1, maxLength: 3 })
            .map((ms) => ({ json: mutate(Buffer.from(JSON.stringify(library)), ms) })),
          fc.array(byteMutation, { minLength: 1, maxLength: 3 }).map((ms) => ({ st: mutate(st, ms) })),
        ),
        (c) => {
          const target = 'st' in c ? file : json;
          fs.writeFileSync(target, 'st' in c ? c.st : c.json);
          expectCleanOutcome(() => loadVectorLibrary(target, DIM), { source: target });
        },
      ),
      fuzzParams(300),
    );
  });
});
