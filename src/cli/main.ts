/**
 * The `psm` command line. Each command imports its machinery lazily, so `psm --help` is instant and a
 * command pays only for what it uses.
 */
import { Command, InvalidArgumentError } from 'commander';
import { registerCompareCommand } from './compare-command.ts';
import { registerEngineCommands } from './engine-commands.ts';
import { registerFinetuneCommand } from './finetune-command.ts';
import { registerScreenCommands } from './screen-commands.ts';
import { registerRunCommands } from './run-commands.ts';
import { registerInteropCommands } from './interop-commands.ts';
import { registerInterpretCommands } from './interpret-commands.ts';
import { registerServeCommands } from './serve-commands.ts';

function main(): Command {
  const program = new Command();
  program
    .name('psm')
    .description(
      'PSM Lab: build a world of characters, train a Llama-family model on it from scratch, and measure the persona selection model against its exact Bayesian answer.',
    )
    .version('0.1.0')
    .showHelpAfterError();
  registerRunCommands(program);
  registerCompareCommand(program);
  registerEngineCommands(program);
  registerServeCommands(program);
  registerInteropCommands(program);
  registerInterpretCommands(program);
  registerFinetuneCommand(program);
  registerScreenCommands(program);
  return program;
}

export function intOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
    return n;
  };
}

export function numberOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    return n;
  };
}

// `psm ... | head` closes stdout early: that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`psm: error: ${msg}\n`);
    if (process.env.PSM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  });
