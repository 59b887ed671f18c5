/** Whether a process is running, told apart from a later process that reuses its pid. */
import * as fs from 'node:fs';

/** The start time of a process (Linux: clock ticks since boot), null where it cannot be read, 'gone' for none. */
export function processStartTime(pid: number): string | null | 'gone' {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync('/proc/self/stat')) return 'gone';
    return null;
  }
  // "pid (command) state ppid ...": the command may hold spaces and parentheses, so split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return 'gone'; // killed, not yet reaped by its parent
  return fields[19] ?? null;
}

/**
 * Whether `pid` is a running process on this host and, given the start time it had, still that process. Where /proc
 * is absent, signal 0 probes it (EPERM: it runs under another user).
 */
export function isProcessRunning(pid: number, started: string | null = null): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  const start = processStartTime(pid);
  if (start === 'gone') return false;
  if (start !== null) return started === null || start === started;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
