import { Command } from 'commander';
import { registerWorldCommands } from './cli.ts';
const p = new Command('psm'); registerWorldCommands(p); await p.parseAsync(process.argv);
