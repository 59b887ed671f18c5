/**
 * The `psm` command line. Each command imports its machinery lazily, so `psm --help` is instant and a
 * command pays only for what it uses.
 */
import { Command } from 'commander';
import { registerBayesCommand } from './bayes-command.ts';
import { registerCompareCommand, registerDiffCommand } from './compare-command.ts';
import { registerEngineCommands } from './engine-commands.ts';
import { registerFinetuneCommand } from './finetune-command.ts';
import { registerScreenCommands } from './screen-commands.ts';
import { registerRunCommands } from './run-commands.ts';
import { registerInteropCommands } from './interop-commands.ts';
import { registerLabCommand } from './lab-command.ts';
import { registerInterpretCommand } from './interpret-command.ts';
import { registerMonitorCommand } from './monitor-command.ts';
import { registerPersonaCheckCommand } from './persona-check-command.ts';
import { registerPreventCommand } from './prevent-command.ts';
import { registerProfileCommand } from './profile-command.ts';
import { registerSpaceCommand } from './space-command.ts';
import { registerSteerCommand } from './steer-command.ts';
import { registerSweepCommand } from './sweep-command.ts';
import { registerVectorsCommand } from './vectors-command.ts';
import { registerServeCommands } from './serve-commands.ts';

function main(): Command {
  const program = new Command();
  program
    .name('psm')
    .description(
      'PSM Lab: build a world of characters, train a Llama-family model on it from scratch, and measure the persona selection model against its exact Bayesian answer.',
    )
    .version('0.1.0')
    .showHelpAfterError()
    // A command's options end at its subcommand's name (`psm vectors import --model DIR`: --model is import's).
    .enablePositionalOptions();
  registerRunCommands(program);
  registerCompareCommand(program);
  registerDiffCommand(program);
  registerSweepCommand(program);
  registerBayesCommand(program);
  registerEngineCommands(program);
  registerServeCommands(program);
  registerLabCommand(program);
  registerInteropCommands(program);
  registerVectorsCommand(program);
  registerSteerCommand(program);
  registerMonitorCommand(program);
  registerSpaceCommand(program);
  registerInterpretCommand(program);
  registerPreventCommand(program);
  registerPersonaCheckCommand(program);
  registerFinetuneCommand(program);
  registerScreenCommands(program);
  registerProfileCommand(program);
  return program;
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
