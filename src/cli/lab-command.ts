/**
 * `psm lab`: the web lab over a runs folder (src/web). Takes psm serve's key and limit options; the machinery is
 * imported lazily.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { bytesOption, collectOption, intOption } from './options.ts';
import { apiKeyOption, LOOPBACK } from './serve-commands.ts';

interface LabCommandOptions {
  runs: string;
  host: string;
  port: number;
  apiKey?: string;
  apiKeyEnv?: string;
  maxTokens: number;
  maxConcurrency: number;
  maxQueue: number;
  maxBody: number;
  model?: string[];
  provider?: string[];
  endpointKeyEnv: string;
  quiet?: boolean;
}

/** Imported model folders, each named by its folder (made unique). */
function importedModels(dirs: readonly string[]): { name: string; dir: string }[] {
  const seen = new Set<string>();
  return dirs.map((dir) => {
    const abs = path.resolve(dir);
    if (!fs.existsSync(path.join(abs, 'config.json')))
      throw new Error(`--model ${dir}: not a model folder (no config.json)`);
    let name = path.basename(abs);
    for (let i = 2; seen.has(name); i++) name = `${path.basename(abs)}-${i}`;
    seen.add(name);
    return { name, dir: abs };
  });
}

export function registerLabCommand(program: Command): void {
  program
    .command('lab')
    .description(
      'The web lab: runs with live progress, the report as interactive charts, the world and a Bayes calculator, chat with a persona meter and steering, persona space',
    )
    .option('--runs <dir>', 'folder holding run folders', 'runs')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', intOption('--port', 0), 8100)
    .option('--api-key <key>', 'require this key (prefer --api-key-env: argv is visible to other users)')
    .option('--api-key-env <name>', 'read the required API key from this environment variable')
    .option('--max-tokens <n>', 'largest reply a chat may ask for', intOption('--max-tokens', 1), 512)
    .option('--max-concurrency <n>', 'generations in flight per model', intOption('--max-concurrency', 1), 2)
    .option(
      '--max-queue <n>',
      'generations that may wait per model; more get 429',
      intOption('--max-queue', 0),
      64,
    )
    .option('--max-body <size>', 'largest request body (e.g. 1mb)', bytesOption, 1 << 20)
    .option(
      '--model <dir>',
      'also offer this model folder in the chat (e.g. one psm import made); repeatable',
      collectOption,
    )
    .option(
      '--provider <spec>',
      'also offer an endpoint in the chat: openai:<model>[@<base URL>] or gguf:<file>; repeatable',
      collectOption,
    )
    .option(
      '--endpoint-key-env <name>',
      'environment variable with the API key of --provider endpoints',
      'OPENAI_API_KEY',
    )
    .option('--quiet', 'do not log requests')
    .action(async (o: LabCommandOptions) => {
      const apiKey = await apiKeyOption(o);
      if (!LOOPBACK.has(o.host) && !apiKey)
        process.stderr.write(
          `psm lab: warning: listening on ${o.host} without an API key; anyone who can reach this port can use the lab\n`,
        );
      const [{ startLab, DEFAULT_ASSETS }, { createProvider }, { staleAssetsWarning }] = await Promise.all([
        import('../web/lab-server.ts'),
        import('../providers/spec.ts'),
        import('../web/assets.ts'),
      ]);
      const warning = staleAssetsWarning(DEFAULT_ASSETS);
      if (warning) process.stderr.write(`psm lab: ${warning}\n`);
      const endpoints = (o.provider ?? []).map((spec, i) => ({
        name: `${i + 1}-${spec
          .replace(/^[a-z]+:/, '')
          .replace(/@.*/, '')
          .replace(/[^A-Za-z0-9._-]+/g, '_')
          .slice(0, 40)}`,
        provider: createProvider(spec, { apiKey: process.env[o.endpointKeyEnv] }),
      }));
      const log = o.quiet
        ? undefined
        : (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      const lab = await startLab({
        runsDir: o.runs,
        host: o.host,
        port: o.port,
        apiKey,
        maxTokens: o.maxTokens,
        maxConcurrency: o.maxConcurrency,
        maxQueue: o.maxQueue,
        maxBodyBytes: o.maxBody,
        imported: importedModels(o.model ?? []),
        endpoints,
        log,
      });
      if (!fs.existsSync(o.runs))
        process.stderr.write(`psm lab: ${o.runs} does not exist yet; runs appear as they are made\n`);
      process.stdout.write(
        `psm lab: ${lab.url}/ (runs in ${path.resolve(o.runs)}${apiKey ? '; API key required' : ''})\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.stderr.write('psm lab: shutting down\n');
          void Promise.all([lab.close(), ...endpoints.map((e) => e.provider.close?.())]).then(() =>
            resolve(),
          );
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
