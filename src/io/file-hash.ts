/**
 * Hashes of files too large to hold at once: model weights of several GB are read in 16 MB chunks, so hashing costs
 * no second copy of the model in memory and works past Node's 2 GiB readFileSync limit.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

const CHUNK = 16 << 20;

/** The hex sha256 of a file's bytes. */
export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK);
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, CHUNK, null)) > 0;) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}
