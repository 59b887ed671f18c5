/**
 * Atomic file writes: data goes to a temp file in the destination folder, is fsynced, then renamed
 * over the destination. A crash or failed write therefore never leaves a half-written file under the
 * final name; readers see either the old contents or the new ones.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isProcessRunning } from './process.ts';

/** Temp name in the same folder as `target`, so the final rename never crosses file systems. */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** The names tempPathFor makes (and older checkpoint folders' `.tmp-<pid>-<ms>`), with the writer's pid. */
const TEMP_NAME = /\.tmp-(\d+)-(?:[0-9a-f]{12}|\d{13})$/;

/** The pid of the writer that made a temp name, or null for any other name. */
export function tempNameWriter(name: string): number | null {
  const m = TEMP_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Removes the temp files and folders that killed writers left in `dir` (and, with `recursive`, in its sub-folders);
 * returns their paths. Only names made by tempPathFor are touched, and only those of a writer that no longer runs
 * (or of this process, which is not writing there: call it before resuming the folder's writer). With a reused pid
 * a temp stays until a later resume: a leak of disk, never a removed file in use.
 */
export function removeOrphanTemps(dir: string, opts: { recursive?: boolean } = {}): string[] {
  const removed: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return removed; // no folder, nothing left behind
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    const writer = tempNameWriter(e.name);
    if (writer !== null) {
      if (writer !== process.pid && isProcessRunning(writer)) continue;
      fs.rmSync(full, { recursive: true, force: true });
      removed.push(full);
    } else if (opts.recursive && e.isDirectory()) removed.push(...removeOrphanTemps(full, opts));
  }
  return removed;
}

function toChunks(data: Uint8Array | string | readonly Uint8Array[]): readonly Uint8Array[] {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  return data;
}

/** Chunks come from callers' code at runtime; a non-byte chunk would otherwise be skipped silently. */
function checkChunk(chunk: unknown): void {
  if (!(chunk instanceof Uint8Array))
    throw new TypeError(`data chunk is ${typeof chunk}, expected a Uint8Array`);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Every failed write names its destination: "ENOSPC: no space left on device, write" alone names nothing. */
function writeError(target: string, err: unknown): Error {
  return new Error(`atomic write of ${target} failed: ${describe(err)}`, { cause: err });
}

/** Writes all of `bytes`: writeSync may write fewer bytes than asked (a nearly full disk) without failing. */
function writeAllSync(fd: number, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.byteLength) written += fs.writeSync(fd, bytes, written, bytes.byteLength - written);
}

/** Best-effort fsync of the folder so the rename itself survives a power cut; not all platforms allow it. */
async function syncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Directory fsync is unsupported on some platforms (e.g. Windows); the file itself is already synced.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function syncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // See syncDir.
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Nothing useful to do if closing a read-only directory handle fails.
      }
    }
  }
}

/**
 * Atomically writes `data` (bytes, a UTF-8 string, or a list of byte chunks written in order) to `target`.
 * The temp file is removed if anything fails, and the error names the destination.
 */
export async function atomicWriteFile(
  target: string,
  data: Uint8Array | string | readonly Uint8Array[],
): Promise<void> {
  const tmp = tempPathFor(target);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx');
    for (const chunk of toChunks(data)) {
      checkChunk(chunk);
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, target);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw writeError(target, err);
  }
  await syncDir(path.dirname(path.resolve(target)));
}

/** Synchronous twin of {@link atomicWriteFile}, for call sites that cannot await (e.g. exit handlers). */
export function atomicWriteFileSync(target: string, data: Uint8Array | string | readonly Uint8Array[]): void {
  const tmp = tempPathFor(target);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx');
    for (const chunk of toChunks(data)) {
      checkChunk(chunk);
      writeAllSync(fd, chunk);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Already failing; the original error is the one worth reporting.
      }
    }
    fs.rmSync(tmp, { force: true });
    throw writeError(target, err);
  }
  syncDirSync(path.dirname(path.resolve(target)));
}

/**
 * A file written piece by piece (a corpus, a token shard) under a temp name: commit() makes it appear whole under
 * its final name, abort() leaves nothing. Every failure names the final file.
 */
export class AtomicFileStream {
  readonly tmp: string;
  private fd: number | null;
  private committed = false;

  constructor(readonly target: string) {
    this.tmp = tempPathFor(target);
    try {
      this.fd = fs.openSync(this.tmp, 'wx');
    } catch (err) {
      throw writeError(target, err);
    }
  }

  write(data: Uint8Array | string): void {
    if (this.fd === null) throw new Error(`atomic write of ${this.target}: the file is already closed`);
    try {
      writeAllSync(this.fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    } catch (err) {
      throw writeError(this.target, err);
    }
  }

  /** Flushes the data to disk and closes the file, still under its temp name. */
  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    } catch (err) {
      throw writeError(this.target, err);
    }
  }

  /** Closes the file and renames it into place. */
  commit(): void {
    this.close();
    try {
      fs.renameSync(this.tmp, this.target);
    } catch (err) {
      throw writeError(this.target, err);
    }
    this.committed = true;
    syncDirSync(path.dirname(path.resolve(this.target)));
  }

  /** Gives up: closes and deletes the temp file. Safe after an error and after commit() (then it does nothing). */
  abort(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already failing; the original error is the one worth reporting.
      }
      this.fd = null;
    }
    if (!this.committed) fs.rmSync(this.tmp, { force: true });
  }
}

/** Atomically writes `value` as pretty-printed JSON with a trailing newline. */
export async function atomicWriteJson(target: string, value: unknown): Promise<void> {
  await atomicWriteFile(target, serializeJson(target, value));
}

export function atomicWriteJsonSync(target: string, value: unknown): void {
  atomicWriteFileSync(target, serializeJson(target, value));
}

function serializeJson(target: string, value: unknown): string {
  const text = JSON.stringify(value, null, 2);
  // JSON.stringify returns undefined for undefined/functions; writing "undefined" would corrupt the file.
  if (text === undefined) throw new Error(`atomic write of ${target} failed: value is not JSON-serializable`);
  return `${text}\n`;
}

/** Refuses an existing `target` unless `replace`: callers with long work before the write check first. */
export function checkFolderTarget(target: string, opts: { replace?: boolean } = {}): void {
  if (fs.existsSync(target) && !opts.replace)
    throw new Error(`${target} already exists (replace it on purpose with --force)`);
}

/**
 * Writes a whole folder atomically: `write` fills a temp folder beside `target`, which then takes its place, so a
 * crash never leaves a half-written folder under the final name. An existing `target` is replaced only with
 * `replace` (it is moved aside first and removed once the new folder is in place).
 */
export function writeFolderAtomicallySync(
  target: string,
  write: (dir: string) => void,
  opts: { replace?: boolean } = {},
): void {
  checkFolderTarget(target, opts);
  const parent = path.dirname(path.resolve(target));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = tempPathFor(target);
  fs.mkdirSync(tmp);
  try {
    write(tmp);
    syncDirSync(tmp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const old = fs.existsSync(target) ? tempPathFor(`${target}.old`) : null;
  if (old) fs.renameSync(target, old);
  fs.renameSync(tmp, target);
  syncDirSync(parent);
  if (old) fs.rmSync(old, { recursive: true, force: true });
}
