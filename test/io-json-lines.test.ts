// Append-only JSON-lines logs: a torn last line (kill mid-append) is dropped on read and closed on the next append;
// a full disk names the file (a real 64 KiB tmpfs where this machine may mount one).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appendJsonLineSync, readJsonLinesSync } from '../src/io/json-lines.ts';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-jsonl-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('JSON-lines logs', () => {
  it('reads every complete record after a kill tore the last one, and the next append starts a fresh line', () => {
    const file = path.join(tmp(), 'probes.jsonl');
    expect(readJsonLinesSync(file)).toEqual([]);
    appendJsonLineSync(file, { step: 0, loss: null });
    appendJsonLineSync(file, { step: 40, loss: 2.5 });
    fs.appendFileSync(file, '{"step": 80, "lo'); // what a SIGKILL mid-write leaves
    expect(readJsonLinesSync(file)).toEqual([
      { step: 0, loss: null },
      { step: 40, loss: 2.5 },
    ]);
    appendJsonLineSync(file, { step: 80, loss: 2.1 });
    expect(readJsonLinesSync(file)).toEqual([
      { step: 0, loss: null },
      { step: 40, loss: 2.5 },
      { step: 80, loss: 2.1 },
    ]);
  });

  it('calls a broken line before the last one corruption, naming the file and line', () => {
    const file = path.join(tmp(), 'metrics.jsonl');
    fs.writeFileSync(file, '{"a":1}\nnot json\n{"a":2}\n');
    expect(() => readJsonLinesSync(file)).toThrow(/metrics\.jsonl, line 2: not JSON/);
  });

  it('names the file an append could not write', () => {
    const file = path.join(tmp(), 'missing-folder', 'metrics.jsonl');
    expect(() => appendJsonLineSync(file, { a: 1 })).toThrow(/appending to .*missing-folder.*metrics\.jsonl failed: ENOENT/);
  });

  it('names the file on a full disk (a 64 KiB tmpfs)', (ctx) => {
    const mnt = path.join(tmp(), 'mnt');
    fs.mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      ctx.skip(`cannot mount a tmpfs here (${(e as Error).message.split('\n')[0]})`);
    }
    try {
      const file = path.join(mnt, 'metrics.jsonl');
      const record = { pad: 'x'.repeat(4000) };
      let error: Error | undefined;
      for (let i = 0; i < 100 && !error; i++) {
        try {
          appendJsonLineSync(file, record);
        } catch (e) {
          error = e as Error;
        }
      }
      expect(error?.message).toMatch(/appending to .*metrics\.jsonl failed: ENOSPC/);
      // Whatever was written whole is still read back.
      expect(readJsonLinesSync(file).every((r) => JSON.stringify(r) === JSON.stringify(record))).toBe(true);
    } finally {
      execFileSync('umount', [mnt], { stdio: 'pipe' });
    }
  });
});
