/** Running `psm` commands inside a test, with their stdout captured and their stderr (progress) silenced. */
import { Command } from 'commander';
import { vi } from 'vitest';

/** Runs `psm <args>` with the commands `register` adds; returns what it printed on stdout. */
export async function runCli(register: (program: Command) => void, ...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  return captureStdout(() => program.parseAsync(['node', 'psm', ...args]));
}

/** Runs `fn` (e.g. a command's runX) with stdout captured and stderr silenced; returns what it printed. */
export async function captureStdout(fn: () => Promise<unknown>): Promise<string> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await fn();
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
  return out;
}
