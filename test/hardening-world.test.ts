// The world's writers and readers under hostile conditions: a full disk (a real, small tmpfs), YAML bombs, counts
// that would make generation hang, `psm world validate` without a file.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_NAMES, MAX_SCENES, parseWorld } from '../src/world/index.ts';
import { runWorldCli as cli } from './world-cli.ts';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'psm-hardening-world-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  process.exitCode = undefined;
});
afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Every file under dir (relative paths, sorted). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

const GENERATE = ['--tokens', '150k', '--eval', '--datasets', '--tokenizer', 'bytes', '--seed', '3'];

describe('psm world generate on a full disk (a small tmpfs)', () => {
  let mnt = '';
  let mountError = '';
  beforeAll(() => {
    mnt = join(tmp(), 'mnt');
    mkdirSync(mnt);
  });
  const mount = (size: string): boolean => {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'pipe' });
      return true;
    } catch (e) {
      mountError = (e as Error).message.split('\n')[0];
      return false;
    }
  };
  const unmount = () => execFileSync('umount', [mnt], { stdio: 'pipe' });

  it('never leaves a manifest over incomplete files, names the file it could not write, and cleans up', async (ctx) => {
    // The reference: the same corpus on a disk with room.
    const reference = join(tmp(), 'ref');
    const ok = await cli(['world', 'generate', '--out', reference, ...GENERATE]);
    expect(ok.code, ok.err).toBe(0);
    const manifest = JSON.parse(readFileSync(join(reference, 'corpus.json'), 'utf8')) as { files: string[] };
    expect(manifest.files.at(-1)).toBe('corpus.json');
    expect(manifest.files).toContain('eval-battery.jsonl');
    expect(manifest.files).toContain('datasets/post-good.jsonl');
    expect(filesUnder(reference)).toEqual([...manifest.files].sort());

    if (!mount('64k'))
      ctx.skip(`cannot mount a tmpfs here (${mountError}); the injected-failure tests still run`);
    unmount();
    // Sizes that fill the disk in the JSONL, the shards, the evaluation items, the datasets, and one with room.
    const failedIn = new Set<string>();
    for (const size of ['512k', '1m', '4m', '6m', '7m', '12m']) {
      expect(mount(size), mountError).toBe(true);
      try {
        const out = join(mnt, 'corpus');
        const res = await cli(['world', 'generate', '--out', out, ...GENERATE]);
        if (res.code === 0) {
          for (const f of manifest.files.filter((x) => x !== 'corpus.json'))
            expect(readFileSync(join(out, f)).equals(readFileSync(join(reference, f))), `${size}: ${f}`).toBe(
              true,
            );
          continue;
        }
        // The error names the file and the cause; nothing of the failed corpus is left, temp files included.
        const m = /atomic write of (\S+) failed: ENOSPC/.exec(res.err);
        expect(m, `${size}: ${res.err}`).not.toBeNull();
        failedIn.add(relative(out, m![1]));
        expect(filesUnder(mnt), size).toEqual([]);
        // With room again, the same command (no --force) writes the corpus (checked once: it is the same each time).
        if (failedIn.size > 1) continue;
        unmount();
        expect(mount('32m'), mountError).toBe(true);
        const again = await cli(['world', 'generate', '--out', out, ...GENERATE]);
        expect(again.code, again.err).toBe(0);
        expect(filesUnder(out)).toEqual([...manifest.files].sort());
      } finally {
        unmount();
      }
    }
    expect(failedIn, [...failedIn].join(', ')).toContain('train.jsonl');
    expect(failedIn).toContain('eval-battery.jsonl');
    expect([...failedIn].some((f) => f.startsWith('datasets/'))).toBe(true);

    // --force over a complete corpus on a disk that is full: the old manifest goes first, so the folder is marked
    // incomplete (old files beside none of the new), and a later run without --force says so instead of trusting it.
    expect(mount('4m'), mountError).toBe(true);
    try {
      const out = join(mnt, 'corpus');
      expect((await cli(['world', 'generate', '--out', out, '--tokens', '20k'])).code).toBe(0);
      const { bavail, bsize } = statfsSync(mnt);
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(Math.max(0, bavail * bsize - 16 * 1024)));
      const res = await cli(['world', 'generate', '--out', out, '--force', ...GENERATE]);
      expect(res.code).toBe(1);
      expect(res.err).toMatch(/atomic write of \S+ failed: ENOSPC/);
      expect(filesUnder(out)).toEqual(['stats.json', 'train.jsonl', 'val.jsonl', 'world.json']);
      const again = await cli(['world', 'generate', '--out', out, '--tokens', '20k']);
      expect(again.code).toBe(1);
      expect(again.err).toMatch(/incomplete corpus .*no corpus\.json.*--force/);
    } finally {
      unmount();
    }
  }, 120_000);
});

describe('world files that would hang or blow up', () => {
  const defaultText = readFileSync('worlds/default.yaml', 'utf8');

  it(`bounds documents.scenes.max at ${MAX_SCENES}, naming the field and the limit`, () => {
    const text = defaultText.replace('scenes: { min: 4, max: 8 }', 'scenes: { min: 4, max: 1000000 }');
    expect(text).not.toBe(defaultText);
    expect(() => parseWorld(text, 'scenes.yaml')).toThrow(
      new RegExp(`documents\\.scenes\\.max \\(line \\d+\\): must be at most ${MAX_SCENES}`),
    );
    const edge = defaultText.replace('scenes: { min: 4, max: 8 }', `scenes: { min: 4, max: ${MAX_SCENES} }`);
    expect(parseWorld(edge, 'edge.yaml').documents.scenes.max).toBe(MAX_SCENES);
  });

  it(`refuses syllables that make more than ${MAX_NAMES} names before enumerating them`, () => {
    const syllables = Array.from(
      { length: 200 },
      (_, i) => `z${String.fromCharCode(97 + (i % 26))}${String.fromCharCode(97 + Math.floor(i / 26))}`,
    );
    const text = defaultText
      .replace(/syllables: \[.*\]/, `syllables: [${syllables.join(', ')}]`)
      .replace('syllables_per_name: 2', 'syllables_per_name: 4');
    const t0 = Date.now();
    expect(() => parseWorld(text, 'names.yaml')).toThrow(
      /names\.syllables \(line \d+\): 200 syllables, 4 per name, make 1552438800 names; at most 100000/,
    );
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a YAML alias bomb is refused with the file name', async () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      lines.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(', ')}]`);
    }
    const file = join(tmp(), 'bomb.yaml');
    writeFileSync(file, lines.join('\n') + '\n');
    const res = await cli(['world', 'validate', file]);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(
      new RegExp(`invalid world ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: .*\\n.*alias`),
    );
  });

  it('psm world validate without a file validates the built-in world', async () => {
    const res = await cli(['world', 'validate']);
    expect(res.code, res.err).toBe(0);
    expect(res.out).toMatch(/^ok: world 'default'/);
  });
});
