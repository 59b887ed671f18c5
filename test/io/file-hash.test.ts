/** sha256File reads in chunks: the digest must equal hashing the whole file at once, at and around chunk edges. */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/io/file-hash.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-file-hash-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('sha256File', () => {
  it('equals the one-shot digest for empty, small, chunk-sized and multi-chunk files', () => {
    const chunk = 16 << 20;
    for (const size of [0, 1, 4097, chunk, chunk + 3, 2 * chunk + 11]) {
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) bytes[i] = (i * 7919) & 255;
      const file = path.join(dir, `f${size}`);
      fs.writeFileSync(file, bytes);
      expect(sha256File(file), `${size} bytes`).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('names the file it cannot open', () => {
    expect(() => sha256File(path.join(dir, 'missing'))).toThrow(/missing/);
  });
});
