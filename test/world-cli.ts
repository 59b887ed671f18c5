/** Running `psm world ...` inside a test: what it printed on stdout and stderr, and its exit code. */
import { Command } from 'commander';
import { registerWorldCommands } from '../src/world/index.ts';

export async function runWorldCli(args: string[]): Promise<{ out: string; err: string; code: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('psm').exitOverride().configureOutput({ writeErr: () => {} });
  registerWorldCommands(program, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
  await program.parseAsync(['node', 'psm', ...args]);
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out: out.join('\n'), err: err.join('\n'), code };
}
