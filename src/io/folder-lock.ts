/**
 * One writer per folder. The holder of a folder's lock file is recorded in it ({pid, host, since, started}); a second
 * writer is refused with that record. A lock whose process is gone is stale and taken over, so a killed writer never
 * blocks the folder for ever: on the same host the pid no longer runs, or runs but started at another moment (the
 * pid was reused). A lock from another host cannot be checked and is reported with the way to remove it.
 *
 * Liveness is checked, not refreshed: a holder that computes for minutes without yielding (training is synchronous)
 * could not keep an expiry fresh, so a timestamp-refreshed lock (proper-lockfile's design) would be lost mid-run.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tempPathFor } from './atomic-write.ts';
import { isProcessRunning, processStartTime } from './process.ts';

export const LOCK_FILE = 'run.lock';

export interface LockHolder {
  pid: number;
  host: string;
  /** When the lock was taken (ISO time). */
  since: string;
  /** The process's start time as the OS records it (Linux: clock ticks since boot), to tell a reused pid. */
  started: string | null;
  /** Tells this holder's lock from a later one by the same pid. */
  token: string;
}

export class FolderLockedError extends Error {
  constructor(
    message: string,
    readonly holder: LockHolder,
  ) {
    super(message);
    this.name = 'FolderLockedError';
  }
}

function readHolder(file: string): LockHolder | null {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.token === 'string' ? h : null;
  } catch {
    return null; // gone, or not a lock this code wrote
  }
}

function lockedMessage(dir: string, file: string, h: LockHolder, what: string): string {
  const local = h.host === os.hostname();
  return (
    `${dir} is in use by another ${what}: pid ${h.pid} on ${local ? 'this host' : `host ${h.host}`} since ${h.since}. ` +
    (local
      ? 'Wait for it to finish, or choose another folder.'
      : `Wait for it to finish, or choose another folder; if no such process runs on ${h.host}, delete ${file}.`)
  );
}

/** Creates `file` holding `holder` only if it does not exist: written to a temp name, then hard-linked in place. */
function tryCreate(file: string, holder: LockHolder): boolean {
  const tmp = tempPathFor(file);
  fs.writeFileSync(tmp, JSON.stringify(holder, null, 2) + '\n', { flag: 'wx' });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`cannot create the lock ${file}: ${(e as Error).message}`, { cause: e });
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Moves a stale lock aside and removes it. Another process may have replaced it meanwhile (it saw the same stale
 * lock and took over first): then its live lock is put back and false is returned.
 */
function breakStale(file: string, stale: LockHolder | null): boolean {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return true; // already gone: try again
  }
  const moved = readHolder(aside);
  if (stale === null || moved === null || moved.token === stale.token) {
    fs.rmSync(aside, { force: true });
    return true;
  }
  try {
    fs.linkSync(aside, file);
  } catch {
    // A third process took the folder meanwhile; the lock now in place is the one that counts.
  }
  fs.rmSync(aside, { force: true });
  return false;
}

/**
 * Takes `dir`'s lock (making `dir` when needed) or throws FolderLockedError naming the holder. Returns the release
 * function: it removes the lock (only this one's) and `dir` itself when the lock made it and it is still empty, so a
 * run refused before it wrote anything leaves no folder behind. The lock is also released when the process exits.
 */
export function lockFolder(dir: string, what = 'psm run'): () => void {
  const made = !fs.existsSync(dir);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const started = processStartTime(process.pid);
  const mine: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    since: new Date().toISOString(),
    started: started === 'gone' ? null : started,
    token: randomBytes(8).toString('hex'),
  };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(file, mine)) break;
    const holder = readHolder(file);
    const local = holder !== null && holder.host === mine.host;
    const live = holder === null ? false : local ? isProcessRunning(holder.pid, holder.started) : true;
    // An unreadable lock is taken over only after a moment: its writer may be between create and write.
    const unreadableYoung = holder === null && fs.existsSync(file) && Date.now() - mtimeOf(file) < 5_000;
    if (live || unreadableYoung || attempt >= 3) {
      const h = holder ?? { ...mine, pid: 0, since: '(unreadable lock file)', token: '' };
      throw new FolderLockedError(lockedMessage(dir, file, h, what), h);
    }
    breakStale(file, holder);
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    if (readHolder(file)?.token === mine.token) fs.rmSync(file, { force: true });
    if (made) {
      try {
        fs.rmdirSync(dir); // only succeeds if empty
      } catch {
        /* the run wrote something: keep the folder */
      }
    }
  };
  process.on('exit', release);
  return release;
}

function mtimeOf(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
