// Writers under injected write failures: node:fs's writeSync is wrapped so that the disk "fills" after a byte
// budget (a short write, then ENOSPC, as Linux does) or writes only part of what it is asked (a short write alone).
import * as realFs from 'node:fs';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';

const disk = vi.hoisted(() => ({ budget: Infinity, halfWrites: false, written: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const writeSync = ((fd: number, data: Uint8Array | string, offset?: number, length?: number) => {
    if (typeof data === 'string') data = Buffer.from(data, 'utf8');
    const off = offset ?? 0;
    let len = length ?? data.byteLength - off;
    if (disk.budget <= 0)
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    if (disk.halfWrites && len > 1) len = Math.ceil(len / 2);
    len = Math.min(len, disk.budget);
    disk.budget -= len;
    disk.written += len;
    return real.writeSync(fd, data, off, len);
  }) as typeof real.writeSync;
  return { ...real, writeSync, default: { ...real, writeSync } };
});

const { writeCorpus, byteTokenizer, loadDefaultWorld } = await import('../src/world/index.ts');
const { AtomicFileStream, atomicWriteFileSync, removeOrphanTemps } =
  await import('../src/io/atomic-write.ts');
const { FolderLockedError, LOCK_FILE, lockFolder } = await import('../src/io/folder-lock.ts');

const world = loadDefaultWorld();
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'psm-hardening-io-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  disk.budget = Infinity;
  disk.halfWrites = false;
  disk.written = 0;
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function filesUnder(dir: string): string[] {
  if (!realFs.existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as realFs.Dirent[])
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

const corpusOptions = (out: string) => ({
  out,
  seed: 4,
  documents: 300,
  tokenizer: byteTokenizer(),
  maxTokensPerShard: 40_000,
  extraFiles: {
    'eval-battery.jsonl': 'x\n'.repeat(20_000),
    'datasets/post-good.jsonl': 'y\n'.repeat(20_000),
  },
});

describe('writers on a disk that fills up (injected)', () => {
  it('writeCorpus: every budget either writes the whole corpus or fails naming the file, leaving nothing', async () => {
    const reference = join(tmp(), 'ref');
    const ok = await writeCorpus(world, corpusOptions(reference));
    const total = disk.written;
    expect(filesUnder(reference)).toEqual([...ok.files].sort());
    expect(ok.files.at(-1)).toBe('corpus.json');
    const named = new Set<string>();
    // Budgets spread over the whole write, the manifest's last bytes included.
    const budgets = [...Array.from({ length: 24 }, (_, i) => Math.floor((total * i) / 24)), total - 10];
    for (const budget of budgets) {
      const out = join(tmp(), 'c');
      disk.budget = budget;
      const failure = await writeCorpus(world, corpusOptions(out)).then(
        () => null,
        (e: Error) => e,
      );
      disk.budget = Infinity;
      expect(failure, `budget ${budget} of ${total}`).not.toBeNull();
      const m = /^atomic write of (\S+) failed: ENOSPC: no space left on device/.exec(failure!.message);
      expect(m, failure!.message).not.toBeNull();
      named.add(relative(out, m![1]));
      // No manifest, no temp file, no half a corpus: the folder it made is gone.
      expect(filesUnder(out), `budget ${budget}`).toEqual([]);
      expect(realFs.existsSync(out)).toBe(false);
    }
    for (const f of ['train.jsonl', 'train-00000.bin', 'eval-battery.jsonl', 'datasets/post-good.jsonl'])
      expect([...named], f).toContain(f);
    expect([...named]).toContain('corpus.json');
  });

  it('short writes lose nothing: the corpus is byte for byte the same', async () => {
    const reference = join(tmp(), 'ref');
    await writeCorpus(world, corpusOptions(reference));
    disk.halfWrites = true;
    const out = join(tmp(), 'half');
    const res = await writeCorpus(world, corpusOptions(out));
    for (const f of res.files.filter((x) => x !== 'corpus.json'))
      expect(readFileSync(join(out, f)).equals(readFileSync(join(reference, f))), f).toBe(true);
  });

  it('AtomicFileStream and atomicWriteFileSync name the file, keep the old contents, leave no temp file', () => {
    const dir = tmp();
    const target = join(dir, 'state.json');
    atomicWriteFileSync(target, 'old');
    disk.budget = 3;
    expect(() => atomicWriteFileSync(target, 'new contents')).toThrow(
      `atomic write of ${target} failed: ENOSPC: no space left on device, write`,
    );
    disk.budget = 5;
    const stream = new AtomicFileStream(target);
    stream.write('abc');
    expect(() => stream.write('defgh')).toThrow(`atomic write of ${target} failed: ENOSPC`);
    stream.abort();
    expect(readFileSync(target, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['state.json']);
  });
});

describe('run-folder lock', () => {
  const deadPid = (): number => {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    return Number(child.stdout.toString());
  };
  const writeLock = (dir: string, holder: Record<string, unknown>) => {
    realFs.mkdirSync(dir, { recursive: true });
    realFs.writeFileSync(join(dir, LOCK_FILE), JSON.stringify(holder));
  };

  it('refuses a second holder naming pid, host and since; releases; a folder it made and left empty goes', () => {
    const dir = join(tmp(), 'run');
    const release = lockFolder(dir);
    const holder = JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'));
    expect(holder).toMatchObject({ pid: process.pid, host: hostname() });
    let refused: Error | null = null;
    try {
      lockFolder(dir);
    } catch (e) {
      refused = e as Error;
    }
    expect(refused).toBeInstanceOf(FolderLockedError);
    expect(refused!.message).toBe(
      `${dir} is in use by another psm run: pid ${process.pid} on this host since ${holder.since}. ` +
        'Wait for it to finish, or choose another folder.',
    );
    release();
    expect(realFs.existsSync(dir)).toBe(false);
    // A folder that existed, or that the holder wrote into, stays.
    const kept = join(tmp(), 'kept');
    const again = lockFolder(kept);
    realFs.writeFileSync(join(kept, 'config.json'), '{}');
    again();
    expect(readdirSync(kept)).toEqual(['config.json']);
  });

  it('takes over a lock whose process is gone or whose pid now belongs to another process', () => {
    const dir = tmp();
    const since = '2020-01-01T00:00:00.000Z';
    writeLock(dir, { pid: deadPid(), host: hostname(), since, started: null, token: 'dead' });
    lockFolder(dir)();
    // This pid, but a start time that is not this process's: the pid was reused after the holder died.
    writeLock(dir, { pid: process.pid, host: hostname(), since, started: '1', token: 'reused' });
    const release = lockFolder(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).token).not.toBe('reused');
    release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("cannot check another host's process: refuses, saying how to clear it", () => {
    const dir = tmp();
    writeLock(dir, {
      pid: 4242,
      host: 'elsewhere',
      since: '2020-01-01T00:00:00.000Z',
      started: null,
      token: 'x',
    });
    expect(() => lockFolder(dir)).toThrow(
      `${dir} is in use by another psm run: pid 4242 on host elsewhere since 2020-01-01T00:00:00.000Z. Wait for it ` +
        `to finish, or choose another folder; if no such process runs on elsewhere, delete ${join(dir, LOCK_FILE)}.`,
    );
  });
});

describe('orphan temp files', () => {
  it('removes temp names of writers that are gone, keeps live writers and other names', () => {
    const dir = tmp();
    const gone = spawnSync(process.execPath, [
      '-e',
      'process.stdout.write(String(process.pid))',
    ]).stdout.toString();
    const live = spawn('sleep', ['30']);
    try {
      const names = {
        orphanFile: `latest.json.tmp-${gone}-0123456789ab`,
        orphanFolder: `step-00000100.tmp-${gone}-0123456789ab`,
        oldStyle: `step-00000200.tmp-${gone}-1700000000000`,
        nested: `model/model.safetensors.tmp-${gone}-abcdef012345`,
        live: `stage.json.tmp-${live.pid}-0123456789ab`,
        other: 'notes.tmp-backup',
      };
      realFs.mkdirSync(join(dir, names.orphanFolder));
      realFs.mkdirSync(join(dir, 'model'));
      for (const [k, n] of Object.entries(names))
        if (k !== 'orphanFolder') realFs.writeFileSync(join(dir, n), 'x');
      expect(removeOrphanTemps(dir).sort()).toEqual(
        [names.oldStyle, names.orphanFile, names.orphanFolder].map((n) => join(dir, n)).sort(),
      );
      expect(removeOrphanTemps(dir, { recursive: true })).toEqual([join(dir, names.nested)]);
      expect(filesUnder(dir)).toEqual([names.live, names.other].sort());
    } finally {
      live.kill('SIGKILL');
    }
  });
});
