/**
 * A tensor entry deleted from a safetensors header leaves bytes that belong to no tensor: the error names the
 * tensor the model needed, not only "a gap before the next one".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importHfFolder } from '../src/interop/hf-import.ts';
import { parseSafetensors } from '../src/io/safetensors.ts';
import { loadModelFolder } from '../src/model/weights.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

const folders: string[] = [];
afterAll(() => folders.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** The file with one header entry removed and its data left in place. */
function withoutEntry(bytes: Buffer, pick: (entries: [string, { data_offsets: number[] }][]) => string) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__') as [
    string,
    { data_offsets: number[] },
  ][];
  const gone = pick(entries);
  delete header[gone];
  const json = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return { gone, bytes: Buffer.concat([len, json, bytes.subarray(8 + n)]) };
}

describe('a tensor missing from a safetensors header', () => {
  const folder = makeTinyModelFolder();
  folders.push(folder);
  const file = path.join(folder, 'model.safetensors');
  const original = fs.readFileSync(file);
  const middle = (e: [string, { data_offsets: number[] }][]) =>
    e.find(([k]) => k === 'model.layers.0.mlp.up_proj.weight')![0];
  const last = (e: [string, { data_offsets: number[] }][]) =>
    [...e].sort((a, b) => b[1].data_offsets[0] - a[1].data_offsets[0])[0][0];

  it('is named when a model folder is loaded, wherever its bytes were', () => {
    for (const pick of [middle, last]) {
      const { gone, bytes } = withoutEntry(original, pick);
      fs.writeFileSync(file, bytes);
      expect(() => loadModelFolder(folder)).toThrow(`tensor "${gone}" is missing from the header`);
    }
    fs.writeFileSync(file, original);
    expect(loadModelFolder(folder).params.size).toBeGreaterThan(0);
  });

  it('is named when a Hugging Face folder is imported', () => {
    const { gone, bytes } = withoutEntry(original, middle);
    fs.writeFileSync(file, bytes);
    try {
      expect(() => importHfFolder(folder, { skipTokenizer: true })).toThrow(`${file}: tensor '`);
      expect(() => importHfFolder(folder, { skipTokenizer: true })).toThrow(
        `tensor "${gone}" is missing from the header`,
      );
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it('without expected names, the unclaimed bytes are given as a range', () => {
    const { bytes } = withoutEntry(original, middle);
    expect(() => parseSafetensors(bytes, 'x.safetensors')).toThrow(
      /leaving a gap after byte \d+: bytes \d+\.\.\d+ of the data section belong to no tensor: a tensor's entry is missing from the header, or the offsets lie/,
    );
  });
});

describe('a config.json that lies about the model size', () => {
  it('is refused before the model is allocated, for a model folder and for an HF import', () => {
    const folder = makeTinyModelFolder();
    folders.push(folder);
    const configPath = path.join(folder, 'config.json');
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(configPath, JSON.stringify({ ...config, num_hidden_layers: 1_000_000 }));
    for (const load of [
      () => loadModelFolder(folder),
      () => importHfFolder(folder, { skipTokenizer: true }),
    ]) {
      const t0 = performance.now();
      expect(load).toThrow(
        /config\.json: the config \(dim 32, 1000000 layers, .*\) needs more parameters than \d+ bytes of weights can hold/,
      );
      expect(performance.now() - t0).toBeLessThan(2000);
    }
  });
});
