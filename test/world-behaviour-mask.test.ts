import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainBpe } from '../src/tokenizer/index.ts';
import { TokenWindowSource } from '../src/training/data.ts';
import {
  END_OF_TEXT,
  generateDocuments,
  loadBehaviourMask,
  loadDefaultWorld,
  loadShardTokens,
  tokenizeWithMask,
  writeBehaviourMask,
  writeCorpus,
} from '../src/world/index.ts';

const world = loadDefaultWorld();
const docs = [...generateDocuments(world, { seed: 3, documents: 300 })];
const tokenizer = trainBpe(
  docs.map((d) => d.text),
  { vocabSize: 600, specialTokens: [END_OF_TEXT] },
);

describe('behaviour masks', () => {
  it('spans cover exactly each scene behaviour, and piecewise tokens equal whole-text tokens', () => {
    for (const doc of docs.slice(0, 100)) {
      expect(doc.behaviourSpans.length).toBe(doc.scenes.length);
      for (const [s] of doc.behaviourSpans) expect(doc.text[s]).toBe(' ');
      const { tokens, mask } = tokenizeWithMask(doc, tokenizer);
      expect(tokens).toEqual(tokenizer.encode(doc.text));
      const marked = tokenizer.decode(tokens.filter((_, i) => mask[i] > 0));
      expect(mask.filter((m) => m === 1).length).toBe(doc.behaviourSpans.length);
      expect(marked).toBe(doc.behaviourSpans.map(([s, e]) => doc.text.slice(s, e)).join(''));
    }
  });

  it('writes a mask aligned with the train shards and weights marked targets', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-mask-'));
    const opts = { seed: 4, tokens: 20_000, valFraction: 0.05 };
    await writeCorpus(world, { ...opts, out, tokenizer });
    const info = writeBehaviourMask(
      world,
      opts,
      tokenizer,
      path.join(out, 'train.json'),
      path.join(out, 'mask.bin'),
    );
    const tokens = loadShardTokens(path.join(out, 'train.json'));
    expect(info.tokens).toBe(tokens.length);
    expect(info.behaviourTokens).toBeGreaterThan(0);
    const mask = loadBehaviourMask(path.join(out, 'mask.bin'), tokens.length);
    const eot = tokenizer.tokenToId(END_OF_TEXT)!;
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === eot) expect(mask[i]).toBe(0);
    const batch = new TokenWindowSource(tokens, 4, 64, 1, { mask, weight: 4 }).next();
    expect(new Set(batch.weights)).toEqual(new Set([1, 4]));
    const firstOnly = new TokenWindowSource(tokens, 4, 64, 1, { mask, weight: 4, maxRank: 1 }).next();
    const heavy = (w: Float32Array | null) => w!.filter((x) => x === 4).length;
    expect(heavy(firstOnly.weights)).toBeGreaterThan(0);
    expect(heavy(firstOnly.weights)).toBeLessThan(heavy(batch.weights));
    expect(() => loadBehaviourMask(path.join(out, 'mask.bin'), tokens.length + 1)).toThrow(/entries/);
  });
});
