/** Running `psm` commands inside a test, with their stdout captured and their stderr (progress) silenced. */
import { Command } from 'commander';
import { vi } from 'vitest';

/** Runs `psm <args>` with the commands `register` adds; returns what it printed on stdout. */
export async function runCli(register: (program: Command) => void, ...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await program.parseAsync(['node', 'psm', ...args]);
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
  return out;
}
