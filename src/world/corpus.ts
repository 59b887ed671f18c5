// Writing a corpus to disk: JSONL with each document's hidden character, token shards, statistics, a manifest.
//
// Output directory layout:
//   train.jsonl, val.jsonl     one document per line: {id, split, name, kind, anonymous, archetype, traits, scenes,
//                              text}; the hidden character is there so analyses can condition on it
//   train-00000.bin, train.json, val-00000.bin, val.json
//                              token shards (only when a tokenizer is given; see shards.ts)
//   stats.json                 CorpusStats (see stats.ts)
//   world.json                 the normalised world actually used (after the AI mix)
//   eval-*.jsonl, datasets/   what the caller adds (extraFiles), e.g. `psm world generate --eval --datasets`
//   corpus.json                manifest written last: seed, budgets, AI mix, files. Its presence marks a complete
//                              corpus.
// Every file is written to a temporary name and renamed into place; options and the tokenizer are checked before
// anything touches the disk, so bad input writes nothing. A rewrite removes the old manifest before the first file
// changes, and a failed write (a full disk) removes what it wrote: a folder never holds a manifest over files it
// does not describe.

import { existsSync, mkdirSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { worldHash, type World } from './schema.ts';
import {
  documentTokenCount,
  generateDocuments,
  type DocumentOptions,
  type WorldDocument,
} from './generator.ts';
import { applyAiMix, resolveAiMix } from './mix.ts';
import { AtomicFileStream, atomicWriteFileSync, atomicWriteJsonSync } from '../io/atomic-write.ts';
import { ShardWriter, eotIdOf, type ShardIndex } from './shards.ts';
import { StatsBuilder, type CorpusStats } from './stats.ts';

export interface WriteCorpusOptions extends DocumentOptions {
  out: string;
  /** Overwrite the files of an existing corpus in `out`. */
  force?: boolean;
  /** Write the JSONL files (default true). */
  jsonl?: boolean;
  maxTokensPerShard?: number;
  /** Called every `progressEvery` documents and at the end. */
  onProgress?: (p: { documents: number; tokens: number }) => void;
  progressEvery?: number;
  /** More files of the corpus (path relative to `out` -> contents), written before the manifest and listed in it. */
  extraFiles?: Record<string, string>;
}

export interface WriteCorpusResult {
  out: string;
  stats: CorpusStats;
  files: string[];
  shards: { train: ShardIndex; val: ShardIndex } | null;
  seconds: number;
}

export const MANIFEST_FILE = 'corpus.json';

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
  private readonly file: AtomicFileStream;
  private buf: string[] = [];
  private size = 0;
  constructor(path: string) {
    this.file = new AtomicFileStream(path);
  }
  write(line: string): void {
    this.buf.push(line);
    this.size += line.length;
    if (this.size > 1 << 20) this.flush();
  }
  private flush(): void {
    if (this.buf.length === 0) return;
    this.file.write(this.buf.join(''));
    this.buf = [];
    this.size = 0;
  }
  commit(): void {
    this.flush();
    this.file.commit();
  }
  abort(): void {
    this.file.abort();
  }
}

function documentJson(doc: WorldDocument): string {
  const { tokens: _tokens, text, ...meta } = doc;
  return JSON.stringify({ ...meta, text }) + '\n';
}

/** Checks what can be checked before touching the disk; returns the tokenizer's separator id (-1 without one). */
function checkCorpusOptions(world: World, opts: WriteCorpusOptions): number {
  if (opts.documents === undefined && opts.tokens === undefined)
    throw new Error('writeCorpus: give documents or tokens');
  if (opts.aiMix !== undefined) resolveAiMix(world, opts.aiMix);
  for (const rel of Object.keys(opts.extraFiles ?? {}))
    if (rel === '' || rel.startsWith('/') || rel.split(/[\\/]/).includes('..') || rel === MANIFEST_FILE)
      throw new Error(`writeCorpus: extra file '${rel}' must be a relative path inside the output folder`);
  if (opts.tokenizer && opts.tokenizer.vocabSize > 65536) {
    throw new Error(
      `vocabulary of ${opts.tokenizer.vocabSize} tokens does not fit the uint16 shard format (at most 65536)`,
    );
  }
  return opts.tokenizer ? eotIdOf(opts.tokenizer) : -1;
}

/** Refuses a folder that holds a corpus (complete, or left incomplete by a failed write) unless `force`. */
function checkCorpusTarget(out: string, force: boolean | undefined): void {
  if (!existsSync(out) || force) return;
  const clash = readdirSync(out).filter((f) => CORPUS_FILES.includes(f) || /^(train|val)-\d+\.bin$/.test(f));
  if (clash.length === 0) return;
  const list = `${clash.slice(0, 3).join(', ')}${clash.length > 3 ? ', ...' : ''}`;
  if (!clash.includes(MANIFEST_FILE))
    throw new Error(
      `${out} holds an incomplete corpus (${list}, but no ${MANIFEST_FILE}: an earlier write did not finish); use --force to overwrite`,
    );
  throw new Error(`${out} already holds a corpus (${list}); use --force to overwrite`);
}

function openShardWriters(
  out: string,
  opts: WriteCorpusOptions,
  eotId: number,
  meta: Record<string, unknown>,
) {
  if (!opts.tokenizer) return null;
  const shard = (split: 'train' | 'val') =>
    new ShardWriter(out, split, {
      vocabSize: opts.tokenizer!.vocabSize,
      eotId,
      maxTokensPerShard: opts.maxTokensPerShard,
      meta: { ...meta, split },
    });
  return { train: shard('train'), val: shard('val') };
}

/** The files the caller adds, each atomically, each listed in `files` once it is in place. */
function writeExtraFiles(out: string, extra: Record<string, string>, files: string[]): void {
  for (const [rel, contents] of Object.entries(extra)) {
    mkdirSync(dirname(join(out, rel)), { recursive: true });
    atomicWriteFileSync(join(out, rel), contents);
    files.push(rel);
  }
}

/**
 * Removes what a failed write left: the files it listed, the folders of `files` and `extra` that are now empty, and
 * `out` itself when this write made it.
 */
function removeWritten(out: string, files: string[], extra: string[], existed: boolean): void {
  for (const f of files) rmSync(join(out, f), { force: true });
  const folders = new Set<string>();
  for (const f of [...files, ...extra]) for (let d = dirname(f); d !== '.'; d = dirname(d)) folders.add(d);
  // Deepest first, so a parent is empty by the time it is tried.
  for (const d of [...[...folders].sort().reverse(), ...(existed ? [] : ['.'])]) {
    try {
      rmdirSync(join(out, d)); // only succeeds if empty: never removes anything we did not create
    } catch {
      /* not empty or already gone */
    }
  }
}

export async function writeCorpus(world: World, opts: WriteCorpusOptions): Promise<WriteCorpusResult> {
  const t0 = performance.now();
  const eotId = checkCorpusOptions(world, opts);
  const out = opts.out;
  checkCorpusTarget(out, opts.force);
  const existed = existsSync(out);
  mkdirSync(out, { recursive: true });
  // From here on the folder does not hold a complete corpus until the new manifest is in place.
  rmSync(join(out, MANIFEST_FILE), { force: true });

  const mixed = applyAiMix(world, opts.aiMix);
  const files: string[] = [];
  let jsonl: { train: LineFile; val: LineFile } | null = null;
  let shards: ReturnType<typeof openShardWriters> = null;
  try {
    jsonl =
      (opts.jsonl ?? true)
        ? { train: new LineFile(join(out, 'train.jsonl')), val: new LineFile(join(out, 'val.jsonl')) }
        : null;
    shards = openShardWriters(out, opts, eotId, {
      world: world.name,
      seed: opts.seed ?? 0,
      aiMix: opts.aiMix ?? null,
    });
    const stats = new StatsBuilder(mixed);
    const every = opts.progressEvery ?? 5000;
    let documents = 0;
    let tokens = 0;
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
    let shardIndex: WriteCorpusResult['shards'] = null;
    if (jsonl) {
      for (const split of ['train', 'val'] as const) {
        jsonl[split].commit();
        files.push(`${split}.jsonl`);
      }
    }
    if (shards) {
      shardIndex = { train: shards.train.close(), val: shards.val.close() };
      for (const s of ['train', 'val'] as const)
        files.push(...shardIndex[s].shards.map((x) => x.file), `${s}.json`);
    }
    const finalStats = stats.finish();
    atomicWriteJsonSync(join(out, 'stats.json'), finalStats);
    files.push('stats.json');
    atomicWriteJsonSync(join(out, 'world.json'), mixed);
    files.push('world.json');
    writeExtraFiles(out, opts.extraFiles ?? {}, files);
    files.push(MANIFEST_FILE);
    atomicWriteJsonSync(join(out, MANIFEST_FILE), {
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
    removeWritten(out, files, Object.keys(opts.extraFiles ?? {}), existed);
    throw err;
  }
}
