// Writing a corpus to disk: JSONL with each document's hidden character, token shards, statistics, a manifest.
//
// Output directory layout:
//   train.jsonl, val.jsonl     one document per line: {id, split, name, kind, anonymous, archetype, traits, scenes,
//                              text}; the hidden character is there so analyses can condition on it
//   train-00000.bin, train.json, val-00000.bin, val.json
//                              token shards (only when a tokenizer is given; see shards.ts)
//   stats.json                 CorpusStats (see stats.ts)
//   world.json                 the normalised world actually used (after the AI mix)
//   corpus.json                manifest written last: seed, budgets, AI mix, files. Its presence marks a complete
//                              corpus.
// Every file is written to a temporary name and renamed into place; options and the tokenizer are checked before
// anything touches the disk, so bad input writes nothing.

import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { worldHash, type World } from './schema.ts';
import {
  documentTokenCount,
  generateDocuments,
  type GenerateOptions,
  type WorldDocument,
} from './generator.ts';
import { applyAiMix, resolveAiMix } from './mix.ts';
import { atomicWriteJsonSync, tempPathFor } from '../io/atomic-write.ts';
import { ShardWriter, eotIdOf, type ShardIndex } from './shards.ts';
import { StatsBuilder, type CorpusStats } from './stats.ts';

export interface WriteCorpusOptions extends GenerateOptions {
  out: string;
  /** Overwrite the files of an existing corpus in `out`. */
  force?: boolean;
  /** Write the JSONL files (default true). */
  jsonl?: boolean;
  maxTokensPerShard?: number;
  /** Called every `progressEvery` documents and at the end. */
  onProgress?: (p: { documents: number; tokens: number }) => void;
  progressEvery?: number;
}

export interface WriteCorpusResult {
  out: string;
  stats: CorpusStats;
  files: string[];
  shards: { train: ShardIndex; val: ShardIndex } | null;
  seconds: number;
}

export const CORPUS_FILES = [
  'corpus.json',
  'stats.json',
  'world.json',
  'train.jsonl',
  'val.jsonl',
  'train.json',
  'val.json',
];

/** Buffered line writer to a temporary file, renamed into place by commit(). */
class LineFile {
  private readonly fd: number;
  private buf: string[] = [];
  private size = 0;
  readonly tmp: string;
  constructor(readonly path: string) {
    this.tmp = tempPathFor(path);
    this.fd = openSync(this.tmp, 'w');
  }
  write(line: string): void {
    this.buf.push(line);
    this.size += line.length;
    if (this.size > 1 << 20) this.flush();
  }
  private flush(): void {
    if (this.buf.length === 0) return;
    writeSync(this.fd, this.buf.join(''));
    this.buf = [];
    this.size = 0;
  }
  commit(): void {
    this.flush();
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
  }
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    rmSync(this.tmp, { force: true });
  }
}

function documentJson(doc: WorldDocument): string {
  const { tokens: _tokens, text, ...meta } = doc;
  return JSON.stringify({ ...meta, text }) + '\n';
}

export async function writeCorpus(world: World, opts: WriteCorpusOptions): Promise<WriteCorpusResult> {
  const t0 = performance.now();
  // Check everything that can be checked before touching the disk.
  if (opts.documents === undefined && opts.tokens === undefined)
    throw new Error('writeCorpus: give documents or tokens');
  if (opts.aiMix !== undefined) resolveAiMix(world, opts.aiMix);
  const eotId = opts.tokenizer ? eotIdOf(opts.tokenizer) : -1;
  if (opts.tokenizer && opts.tokenizer.vocabSize > 65536) {
    throw new Error(
      `vocabulary of ${opts.tokenizer.vocabSize} tokens does not fit the uint16 shard format (at most 65536)`,
    );
  }
  const out = opts.out;
  const existed = existsSync(out);
  if (existed && !opts.force) {
    const clash = readdirSync(out).filter(
      (f) => CORPUS_FILES.includes(f) || /^(train|val)-\d+\.bin$/.test(f),
    );
    if (clash.length > 0)
      throw new Error(
        `${out} already holds a corpus (${clash.slice(0, 3).join(', ')}${clash.length > 3 ? ', ...' : ''}); use --force to overwrite`,
      );
  }
  mkdirSync(out, { recursive: true });

  const mixed = applyAiMix(world, opts.aiMix);
  const writeJsonl = opts.jsonl ?? true;
  const jsonl = writeJsonl
    ? { train: new LineFile(join(out, 'train.jsonl')), val: new LineFile(join(out, 'val.jsonl')) }
    : null;
  const meta = { world: world.name, seed: opts.seed ?? 0, aiMix: opts.aiMix ?? null };
  const shards = opts.tokenizer
    ? {
        train: new ShardWriter(out, 'train', {
          vocabSize: opts.tokenizer.vocabSize,
          eotId,
          maxTokensPerShard: opts.maxTokensPerShard,
          meta: { ...meta, split: 'train' },
        }),
        val: new ShardWriter(out, 'val', {
          vocabSize: opts.tokenizer.vocabSize,
          eotId,
          maxTokensPerShard: opts.maxTokensPerShard,
          meta: { ...meta, split: 'val' },
        }),
      }
    : null;
  const stats = new StatsBuilder(mixed);
  const every = opts.progressEvery ?? 5000;
  let documents = 0;
  let tokens = 0;
  try {
    for (const doc of generateDocuments(world, opts)) {
      stats.add(doc);
      jsonl?.[doc.split].write(documentJson(doc));
      if (shards && doc.tokens) shards[doc.split].addDocument(doc.tokens);
      documents++;
      tokens += documentTokenCount(doc);
      if (opts.onProgress && documents % every === 0) {
        opts.onProgress({ documents, tokens });
        // Let a progress bar repaint and signals get through on long runs.
        await new Promise((r) => setImmediate(r));
      }
    }
    const files: string[] = [];
    let shardIndex: WriteCorpusResult['shards'] = null;
    if (jsonl) {
      jsonl.train.commit();
      jsonl.val.commit();
      files.push('train.jsonl', 'val.jsonl');
    }
    if (shards) {
      shardIndex = { train: shards.train.close(), val: shards.val.close() };
      for (const s of ['train', 'val'] as const)
        files.push(...shardIndex[s].shards.map((x) => x.file), `${s}.json`);
    }
    const finalStats = stats.finish();
    atomicWriteJsonSync(join(out, 'stats.json'), finalStats);
    atomicWriteJsonSync(join(out, 'world.json'), mixed);
    files.push('stats.json', 'world.json', 'corpus.json');
    atomicWriteJsonSync(join(out, 'corpus.json'), {
      format: 'psm-world-corpus',
      version: 1,
      world: world.name,
      worldSource: world.source,
      worldHash: worldHash(mixed),
      seed: opts.seed ?? 0,
      aiMix: opts.aiMix ?? null,
      budget: { documents: opts.documents ?? null, tokens: opts.tokens ?? null },
      valFraction: opts.valFraction ?? 0.02,
      tokenizer: opts.tokenizer ? { vocabSize: opts.tokenizer.vocabSize, eotId } : null,
      documents: finalStats.documents,
      tokens: finalStats.tokens,
      tokensExact: finalStats.tokensExact,
      files,
    });
    opts.onProgress?.({ documents, tokens });
    return { out, stats: finalStats, files, shards: shardIndex, seconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    jsonl?.train.abort();
    jsonl?.val.abort();
    shards?.train.abort();
    shards?.val.abort();
    if (!existed) {
      try {
        rmdirSync(out); // only succeeds if empty: never removes anything we did not create
      } catch {
        /* not empty or already gone */
      }
    }
    throw err;
  }
}
