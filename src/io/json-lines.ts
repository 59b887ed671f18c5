/**
 * Append-only JSON-lines logs (a run's metrics.jsonl, a pre-training stage's probes.jsonl).
 *
 * Contract: each record is one line ending in '\n', appended whole by one write. A kill or a full disk can leave
 * only the last line torn (no final '\n'); readers drop that line, and the next append cuts it off, so a resume
 * reads every complete record. Every failed append names its file ("ENOSPC ... write" alone names nothing).
 */
import * as fs from 'node:fs';

/** Appends one record as a line; a torn last line left by a kill is cut off first, so every line stays whole. */
export function appendJsonLineSync(file: string, record: unknown): void {
  try {
    if (endsTorn(file)) cutTornLine(file);
    fs.appendFileSync(file, JSON.stringify(record) + '\n');
  } catch (err) {
    throw new Error(`appending to ${file} failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}

/**
 * The complete records of a JSON-lines file ([] when it does not exist). A torn last line is dropped; a broken
 * line anywhere else is corruption and an error naming the file and line.
 */
export function readJsonLinesSync<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  // The piece after the last '\n' is '' for a whole file, or the torn record a kill left.
  lines.pop();
  const records: T[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      records.push(JSON.parse(line) as T);
    } catch (err) {
      throw new Error(`${file}, line ${i + 1}: not JSON (${err instanceof Error ? err.message : String(err)})`, {
        cause: err,
      });
    }
  });
  return records;
}

/** True when the file's last byte is not a newline (a record cut by a kill or a full disk). */
function endsTorn(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return false; // no file yet: the append creates it
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    fs.readSync(fd, last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } finally {
    fs.closeSync(fd);
  }
}

/** Truncates the file after its last newline (the rare path: only after a kill or a full disk). */
function cutTornLine(file: string): void {
  const bytes = fs.readFileSync(file);
  fs.truncateSync(file, bytes.lastIndexOf(0x0a) + 1);
}
