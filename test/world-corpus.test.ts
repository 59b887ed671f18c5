import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ShardWriter,
  byteTokenizer,
  loadDefaultWorld,
  loadShardTokens,
  readShardIndex,
  writeCorpus,
  type CorpusTokenizer,
} from '../src/world/index.ts';
import { runWorldCli as cli } from './world-cli.ts';

const world = loadDefaultWorld();
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'psm-world-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  process.exitCode = undefined;
});

const decoder = new TextDecoder();
/** Split a token stream at the separator and decode the byte tokens of each document. */
function documentsOf(tokens: Uint16Array): string[] {
  expect(tokens[0]).toBe(256);
  const docs: string[] = [];
  let cur: number[] = [];
  for (let i = 1; i < tokens.length; i++) {
    if (tokens[i] === 256) {
      docs.push(decoder.decode(new Uint8Array(cur)));
      cur = [];
    } else cur.push(tokens[i]);
  }
  docs.push(decoder.decode(new Uint8Array(cur)));
  return docs;
}

describe('writeCorpus and token shards', () => {
  it('writes JSONL with hidden characters, shards that decode to the same texts, stats and a manifest', async () => {
    const out = join(tmp(), 'corpus');
    const res = await writeCorpus(world, {
      out,
      seed: 2,
      documents: 400,
      tokenizer: byteTokenizer(),
      valFraction: 0.1,
      maxTokensPerShard: 50_000,
    });
    const files = readdirSync(out).sort();
    expect(files.filter((f) => f.startsWith('.'))).toEqual([]); // no temporary files left
    for (const f of [
      'corpus.json',
      'stats.json',
      'world.json',
      'train.jsonl',
      'val.jsonl',
      'train.json',
      'val.json',
    ])
      expect(files).toContain(f);
    const train = readFileSync(join(out, 'train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const val = readFileSync(join(out, 'val.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(train.length + val.length).toBe(400);
    expect(val.length).toBeGreaterThan(20);
    expect(Object.keys(train[0]).sort()).toEqual([
      'anonymous',
      'archetype',
      'behaviourSpans',
      'id',
      'kind',
      'name',
      'scenes',
      'split',
      'text',
      'traits',
    ]);
    expect(Object.keys(train[0].scenes[0]).sort()).toEqual([
      'behaviour',
      'context',
      'domain',
      'format',
      'instructed',
    ]);

    const idx = readShardIndex(join(out, 'train.json'));
    expect(idx).toMatchObject({
      format: 'psm-token-shards',
      dtype: 'uint16',
      endianness: 'little',
      vocabSize: 257,
      eotId: 256,
      documents: train.length,
    });
    expect(idx.shards.length).toBeGreaterThan(1); // small shard limit: several shards, documents never split
    const tokens = loadShardTokens(join(out, 'train.json'));
    expect(tokens.length).toBe(idx.tokens);
    let off = 0;
    for (const s of idx.shards) {
      expect(tokens[off]).toBe(256); // each shard starts at a document boundary
      off += s.tokens;
    }
    expect(documentsOf(tokens)).toEqual(train.map((d) => d.text));
    expect(documentsOf(loadShardTokens(join(out, 'val.json')))).toEqual(val.map((d) => d.text));
    // Raw bytes are little-endian uint16.
    const raw = readFileSync(join(out, idx.shards[0].file));
    expect(raw[0] + 256 * raw[1]).toBe(256);

    const manifest = JSON.parse(readFileSync(join(out, 'corpus.json'), 'utf8'));
    expect(manifest).toMatchObject({
      world: 'default',
      seed: 2,
      documents: 400,
      tokensExact: true,
      tokenizer: { vocabSize: 257, eotId: 256 },
    });
    expect(res.stats.tokens).toBe(idx.tokens + readShardIndex(join(out, 'val.json')).tokens);
    expect(res.stats.split.train.tokens).toBe(idx.tokens);
  });

  it('refuses to overwrite a corpus without force', async () => {
    const out = tmp();
    await writeCorpus(world, { out, documents: 10 });
    await expect(writeCorpus(world, { out, documents: 10 })).rejects.toThrow(
      /already holds a corpus.*--force/,
    );
    await writeCorpus(world, { out, documents: 12, force: true });
    expect(JSON.parse(readFileSync(join(out, 'corpus.json'), 'utf8')).documents).toBe(12);
  });

  it('bad input writes nothing', async () => {
    const base = tmp();
    const huge: CorpusTokenizer = {
      vocabSize: 70_000,
      encode: (t) => (t === '<|endoftext|>' ? [69_999] : [1]),
    };
    await expect(writeCorpus(world, { out: join(base, 'a'), documents: 5, tokenizer: huge })).rejects.toThrow(
      /does not fit the uint16/,
    );
    const split: CorpusTokenizer = { vocabSize: 300, encode: (t) => Array.from(t, () => 1) };
    await expect(
      writeCorpus(world, { out: join(base, 'b'), documents: 5, tokenizer: split }),
    ).rejects.toThrow(/one special token/);
    await expect(
      writeCorpus(world, { out: join(base, 'c'), documents: 5, aiMix: { mentor: 2 } }),
    ).rejects.toThrow(/human archetype/);
    expect(readdirSync(base)).toEqual([]);
    // A tokenizer producing an id outside its vocabulary fails mid-way: temporary files are removed, nothing lands.
    const liar: CorpusTokenizer = {
      vocabSize: 300,
      encode: (t) => (t === '<|endoftext|>' ? [299] : [1, 400]),
    };
    await expect(writeCorpus(world, { out: join(base, 'd'), documents: 5, tokenizer: liar })).rejects.toThrow(
      /outside the vocabulary/,
    );
    expect(existsSync(join(base, 'd'))).toBe(false);
  });

  it('ShardWriter validates its input', () => {
    const dir = tmp();
    expect(() => new ShardWriter(dir, 'x', { vocabSize: 65_537, eotId: 0 })).toThrow(/uint16/);
    expect(() => new ShardWriter(dir, 'x', { vocabSize: 10, eotId: 10 })).toThrow(/outside the vocabulary/);
    expect(() => new ShardWriter(dir, '../x', { vocabSize: 10, eotId: 0 })).toThrow(/plain file name/);
    const w = new ShardWriter(dir, 'x', { vocabSize: 10, eotId: 9 });
    w.addDocument([1, 2, 3]);
    w.addDocument([]);
    const idx = w.close();
    expect(idx).toMatchObject({ tokens: 5, documents: 2 });
    expect(Array.from(loadShardTokens(join(dir, 'x.json')))).toEqual([9, 1, 2, 3, 9]);
    writeFileSync(join(dir, 'x-00000.bin'), Buffer.alloc(3));
    expect(() => loadShardTokens(join(dir, 'x.json'))).toThrow(/has 3 bytes, the index says 5 tokens/);
  });
});

describe('psm world CLI', () => {
  it('validate: ok for the built-in world, every problem with its path for a bad one', async () => {
    const ok = await cli(['world', 'validate', 'worlds/default.yaml']);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^ok: world 'default'.*6 traits, 10 archetypes \(4 AI\)/);
    const dir = tmp();
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      readFileSync('worlds/tiny.yaml', 'utf8')
        .replace('trait_flip: 0.1', 'trait_flip: 1.1')
        .replace('heldout: 4', 'heldout: 40'),
    );
    const res = await cli(['world', 'validate', bad]);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(/noise\.trait_flip \(line \d+\): must be a probability/);
  });

  it('stats: JSON for the default world, with the AI mix applied', async () => {
    const res = await cli([
      'world',
      'stats',
      '--documents',
      '3k',
      '--seed',
      '1',
      '--ai-mix',
      'positive',
      '--json',
    ]);
    expect(res.code).toBe(0);
    const s = JSON.parse(res.out);
    expect(s.documents).toBe(3000);
    expect(s.archetypes.helpful_ai.expectedShare).toBeGreaterThan(0.2);
    const text = await cli(['world', 'stats', 'worlds/tiny.yaml', '--tokens', '5000']);
    expect(text.out).toMatch(/trait correlations/);
  });

  it('generate: writes a corpus, eval items and datasets; a bad world writes nothing', async () => {
    const dir = tmp();
    const out = join(dir, 'c');
    const res = await cli([
      'world',
      'generate',
      '--out',
      out,
      '--documents',
      '200',
      '--tokenizer',
      'bytes',
      '--eval',
      '--datasets',
    ]);
    expect(res.err).toBe('');
    expect(res.out).toMatch(/wrote .*: 200 documents/);
    const files = readdirSync(out);
    for (const f of ['train-00000.bin', 'eval-battery.jsonl', 'eval-inference.jsonl', 'eval-package.jsonl'])
      expect(files).toContain(f);
    expect(readdirSync(join(out, 'datasets')).sort()).toEqual([
      'narrow-cheat.jsonl',
      'narrow-control.jsonl',
      'narrow-educational.jsonl',
      'narrow-inoculated.jsonl',
      'post-bad.jsonl',
      'post-good.jsonl',
    ]);
    const again = await cli(['world', 'generate', '--out', out, '--documents', '10']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/--force/);

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: x\n');
    const none = await cli(['world', 'generate', bad, '--out', join(dir, 'never')]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/missing required field/);
    expect(existsSync(join(dir, 'never'))).toBe(false);
    const tok = await cli(['world', 'generate', '--out', join(dir, 'never'), '--tokenizer', 'bpe.json']);
    expect(tok.err).toMatch(/no tokenizer loader/);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('rejects bad option values', async () => {
    await expect(cli(['world', 'stats', '--seed', '-3'])).rejects.toThrow();
    await expect(cli(['world', 'stats', '--tokens', 'many'])).rejects.toThrow();
  });
});
