/**
 * The sampler at the edges: temperatures too small for float32 to divide by are greedy (the T -> 0 limit),
 * non-finite logits are an error rather than text, and `psm generate` refuses option values that are not numbers.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerEngineCommands } from '../src/cli/engine-commands.ts';
import { descendingOrder, generate, NonFiniteLogitsError, sampleFromLogits } from '../src/model/generate.ts';
import { loadModelFolder } from '../src/model/weights.ts';
import { Rng } from '../src/tensor/random.ts';
import { loadTokenizerSync } from '../src/tokenizer/index.ts';
import { runCli } from './cli-run.ts';
import { makeTinyModelFolder } from './serve-fixture.ts';

const draws = (logits: Float32Array, t: number, seed = 1, n = 12) => {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => sampleFromLogits(logits, t, 1, rng));
};

describe('sampleFromLogits', () => {
  const logits = Float32Array.from([1.5, 3.2, -2, 3.1, 0, -Infinity]);

  it('is greedy at every temperature whose scaled logits overflow float32, down to the smallest double', () => {
    const greedy = draws(logits, 0);
    expect(new Set(greedy)).toEqual(new Set([1]));
    for (const t of [1e-30, 1e-38, 1e-39, 1e-40, 1e-45, 1e-300, Number.MIN_VALUE])
      expect(draws(logits, t), `temperature ${t}`).toEqual(greedy);
  });

  it('samples as before where the scaled logits stay finite', () => {
    // Temperatures around 1 spread the draws over the top tokens; the masked token is never drawn.
    const spread = draws(logits, 1, 3, 200);
    expect(new Set(spread).size).toBeGreaterThan(2);
    expect(spread).not.toContain(5);
    // A huge temperature is the uniform limit over the unmasked tokens, still never the masked one.
    expect(draws(logits, 1e300, 3, 200)).not.toContain(5);
    // Reproducible for a seed.
    expect(draws(logits, 0.7, 9)).toEqual(draws(logits, 0.7, 9));
  });

  it('ranks tokens exactly as the comparison sort does: descending, ties by lower index, -0 as +0', () => {
    // The sampled token depends on this order (the top-p cut and the cumulative sums run along it).
    const rng = new Rng(4);
    const special = [0, -0, -Infinity, Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1];
    const scores = new Float32Array(5000);
    for (let j = 0; j < scores.length; j++)
      scores[j] =
        rng.next() < 0.3 ? special[Math.floor(rng.next() * special.length)] : (rng.next() - 0.5) * 20;
    for (let j = 0; j < 300; j++) scores[Math.floor(rng.next() * scores.length)] = scores[17];
    const expected = Array.from({ length: scores.length }, (_, j) => j).sort(
      (a, b) => scores[b] - scores[a] || a - b,
    );
    expect(Array.from(descendingOrder(scores))).toEqual(expected);
    expect(Array.from(descendingOrder(scores.subarray(100, 110)))).toEqual(
      Array.from({ length: 10 }, (_, j) => j).sort((a, b) => scores[100 + b] - scores[100 + a] || a - b),
    );
  });

  it('refuses NaN or +Infinity logits and temperatures that are not finite numbers >= 0', () => {
    const rng = new Rng(1);
    expect(() => sampleFromLogits(Float32Array.from([1, NaN, 2]), 1, 1, rng)).toThrow(NonFiniteLogitsError);
    expect(() => sampleFromLogits(Float32Array.from([1, Infinity, 2]), 0, 1, rng)).toThrow(/not finite/);
    expect(() => sampleFromLogits(Float32Array.from([-Infinity, -Infinity]), 1, 1, rng)).toThrow(/-Infinity/);
    for (const t of [NaN, -1, Infinity])
      expect(() => sampleFromLogits(logits, t, 1, rng)).toThrow(/temperature must be a finite number >= 0/);
  });
});

describe('generate and psm generate at tiny temperatures', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTinyModelFolder();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('generate() at 1e-40 gives the greedy text', () => {
    const model = loadModelFolder(dir);
    const tok = loadTokenizerSync(`${dir}/tokenizer.json`);
    const prompt = tok.encode('User: hey I feel bored\nAssistant:');
    const greedy = generate(model, prompt, { maxNewTokens: 12, temperature: 0 });
    for (const seed of [1, 2, 3])
      expect(generate(model, prompt, { maxNewTokens: 12, temperature: 1e-40, seed })).toEqual(greedy);
    expect(() => generate(model, prompt, { maxNewTokens: 2, temperature: NaN })).toThrow(/temperature/);
  });

  it('psm generate --temperature 1e-40 prints the greedy text and refuses non-numbers', async () => {
    const run = (...a: string[]) =>
      runCli(
        registerEngineCommands,
        'generate',
        '--model',
        dir,
        '--prompt',
        'Mara lived',
        '--max-tokens',
        '10',
        ...a,
      );
    const greedy = await run('--temperature', '0');
    expect(greedy.trim().length).toBeGreaterThan(0);
    expect(await run('--temperature', '1e-40', '--seed', '5')).toBe(greedy);
    await expect(run('--temperature', 'hot')).rejects.toThrow(/--temperature must be a number/);
    await expect(run('--max-tokens', '-3')).rejects.toThrow(/--max-tokens/);
    await expect(run('--top-p', '0')).rejects.toThrow(/--top-p/);
  });
});
