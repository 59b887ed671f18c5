/**
 * `psm serve` (an OpenAI-compatible server for a model folder), `psm audit` (persona audit of any model a
 * provider reaches) and `psm audit-compare` (side-by-side report of two audits). Machinery is imported lazily.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import { bytesOption, collectOption, intOption, numberOption } from './options.ts';

/** The key of --api-key or --api-key-env (psm serve and psm lab take both), checked; undefined without one. */
export async function apiKeyOption(o: { apiKey?: string; apiKeyEnv?: string }): Promise<string | undefined> {
  const { checkApiKey } = await import('../serve/server.ts');
  let apiKey = o.apiKey;
  if (apiKey !== undefined) checkApiKey(apiKey, '--api-key');
  if (o.apiKeyEnv) {
    apiKey = process.env[o.apiKeyEnv];
    if (apiKey === undefined) throw new Error(`--api-key-env ${o.apiKeyEnv}: the variable is not set`);
    checkApiKey(apiKey, `--api-key-env ${o.apiKeyEnv} (the variable's value)`);
  }
  return apiKey;
}

export const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function slug(s: string): string {
  return (
    s
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 80) || 'model'
  );
}

/**
 * Checks the GGUF files among provider specs with PSM Lab's own reader before an audit starts (a progress bar
 * for large files): a corrupt file fails the command at once with its name and the problem, instead of every
 * unit failing in llama.cpp and the audit asking for a re-run that cannot help.
 */
async function checkGgufSpecs(specs: string[]): Promise<void> {
  const [{ parseProviderSpec }, { checkGgufModel }, { terminalProgress }] = await Promise.all([
    import('../providers/spec.ts'),
    import('../providers/gguf.ts'),
    import('./progress.ts'),
  ]);
  for (const spec of specs) {
    const s = parseProviderSpec(spec);
    if (s.kind !== 'gguf') continue;
    let bar: ReturnType<typeof terminalProgress> | undefined;
    try {
      checkGgufModel(s.file, (done, total) => {
        if (total < 64 << 20) return; // a small file is checked in a moment
        bar ??= terminalProgress(
          `check ${path.basename(s.file)}`.slice(0, 22),
          Math.ceil(total / 2 ** 20),
          'MB',
        );
        bar.update(Math.floor(done / 2 ** 20));
      });
    } catch (e) {
      throw new Error(`${spec}: not a usable GGUF model: ${(e as Error).message}`);
    } finally {
      bar?.stop();
    }
  }
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description(
      'Serve a model folder over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions)',
    )
    .requiredOption('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer.json)')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', intOption('--port', 0), 8000)
    .option('--id <name>', 'model id clients use (default: the folder name)')
    .option(
      '--api-key <key>',
      'require "Authorization: Bearer <key>" (prefer --api-key-env: argv is visible to other users)',
    )
    .option('--api-key-env <name>', 'read the required API key from this environment variable')
    .option('--max-tokens <n>', 'largest max_tokens a request may ask for', intOption('--max-tokens', 1), 512)
    .option(
      '--max-concurrency <n>',
      'generations in flight at once, decoded together in one batch (a request arriving joins at the next step)',
      intOption('--max-concurrency', 1),
      8,
    )
    .option(
      '--max-queue <n>',
      'requests that may wait for a slot; more get 429',
      intOption('--max-queue', 0),
      64,
    )
    .option('--max-body <size>', 'largest request body (e.g. 1mb)', bytesOption, 1 << 20)
    .option(
      '--max-connections <n>',
      'open connections at most (more are dropped)',
      intOption('--max-connections', 1),
      256,
    )
    .option(
      '--vectors <file>',
      'named steering vectors (JSON {name: [numbers] | {vector, hook}} or .safetensors)',
    )
    .option(
      '--chat-stop <text...>',
      "strings that end a chat reply (default: a newline for the PSM chat format, none for a model's own template)",
    )
    .option(
      '--chat-template <file|psm>',
      "chat template instead of the model's own (a .jinja file or a tokenizer_config.json), or psm for PSM Lab's format",
    )
    .option('--quiet', 'do not log requests')
    .action(
      async (o: {
        model: string;
        host: string;
        port: number;
        id?: string;
        apiKey?: string;
        apiKeyEnv?: string;
        maxTokens: number;
        maxConcurrency: number;
        maxQueue: number;
        maxBody: number;
        maxConnections: number;
        vectors?: string;
        chatStop?: string[];
        chatTemplate?: string;
        quiet?: boolean;
      }) => {
        const [{ LocalEngine }, { startServer }] = await Promise.all([
          import('../providers/local-engine.ts'),
          import('../serve/server.ts'),
        ]);
        const apiKey = await apiKeyOption(o);
        if (!LOOPBACK.has(o.host) && !apiKey)
          process.stderr.write(
            `psm serve: warning: listening on ${o.host} without an API key; anyone who can reach this port can use the model\n`,
          );
        const engine = LocalEngine.load(o.model, {
          id: o.id,
          maxTokens: o.maxTokens,
          maxConcurrency: o.maxConcurrency,
          maxQueue: o.maxQueue,
          chatStop: o.chatStop,
          chatTemplateFile: o.chatTemplate,
          vectorsFile: o.vectors,
        });
        const vectors = engine.vectors.size ? engine.vectors : undefined;
        const log = o.quiet
          ? undefined
          : (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
        const running = await startServer(engine, {
          host: o.host,
          port: o.port,
          apiKey,
          maxBodyBytes: o.maxBody,
          maxConnections: o.maxConnections,
          log,
        });
        const c = engine.model.config;
        process.stderr.write(
          `psm serve: model "${engine.id}" (${c.nLayers} layers, dim ${c.dim}, context ${c.maxSeqLen}, chat: ${engine.chat.kind === 'psm' ? 'PSM format' : engine.chat.origin}${vectors ? `, ${vectors.size} named vectors` : ''}) at ${running.url}/v1${apiKey ? ' (API key required)' : ''}\n`,
        );
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.stderr.write('psm serve: shutting down\n');
            void running.close().then(resolve);
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      },
    );

  program
    .command('audit')
    .description(
      'Persona audit of any model: trait battery (log-probabilities or a judge) and the eight emergent-misalignment questions scored by a judge; two --provider flags give a side-by-side report',
    )
    .requiredOption(
      '--provider <spec>',
      'model to audit: local:<dir> | gguf:<file> | openai:<model>[@<base URL>] (give twice to compare two models)',
      collectOption,
    )
    .option('--label <name>', 'label of each provider in the reports (in --provider order)', collectOption)
    .option(
      '--judge <spec>',
      'judge model (same spec forms); needed for the EM questions and for providers without log-probabilities',
    )
    .requiredOption('--out <dir>', 'output folder (journal, report.json, report.md; resumable)')
    .option(
      '--samples <n>',
      'answers sampled per EM question (the paper used 100)',
      intOption('--samples', 1),
      10,
    )
    .option('--max-tokens <n>', 'longest EM answer in tokens', intOption('--max-tokens', 1), 200)
    .option('--temperature <t>', 'sampling temperature of EM answers', numberOption('--temperature'), 1)
    .option(
      '--questions <file>',
      'EM questions file (default: the eight questions of Betley et al. 2025 that ship in data/em-first-plot-questions.json)',
    )
    .option('--no-em', 'skip the EM questions')
    .option('--no-battery', 'skip the trait battery')
    .option(
      '--battery-items <file>',
      'battery items as JSON [{domain, prompt, good[], bad[]}] (default: from the persona world)',
    )
    .option(
      '--battery-per-domain <n>',
      'items per domain and format from the persona world',
      intOption('--battery-per-domain', 1),
      50,
    )
    .option('--world <file>', 'persona world file for the battery (default worlds/default.yaml)')
    .option('--battery-mode <mode>', 'auto | logprob | judge', 'auto')
    .option(
      '--chat-template <file|psm>',
      "chat template of local: and gguf: providers instead of the model's own (a .jinja file or a tokenizer_config.json), or psm",
    )
    .option('--concurrency <n>', 'units in flight at once', intOption('--concurrency', 1), 4)
    .option('--cache-dir <dir>', 'on-disk answer cache (default <out>/cache)')
    .option('--no-cache', 'do not cache answers')
    .option(
      '--api-key-env <name>',
      'environment variable with the API key of openai: providers',
      'OPENAI_API_KEY',
    )
    .option(
      '--judge-api-key-env <name>',
      'environment variable with the judge API key (default: --api-key-env)',
    )
    .option('--timeout <ms>', 'per-request timeout for HTTP endpoints', intOption('--timeout', 1), 120_000)
    .option(
      '--max-retries <n>',
      'retries on 429/5xx/timeouts for HTTP endpoints',
      intOption('--max-retries', 0),
      5,
    )
    .option(
      '--http-concurrency <n>',
      'requests in flight per HTTP endpoint',
      intOption('--http-concurrency', 1),
      4,
    )
    .option('--restart', "discard this folder's journal and start over")
    .action(
      async (o: {
        provider: string[];
        label?: string[];
        judge?: string;
        out: string;
        samples: number;
        maxTokens: number;
        temperature: number;
        questions?: string;
        em: boolean;
        battery: boolean;
        batteryItems?: string;
        batteryPerDomain: number;
        world?: string;
        batteryMode: string;
        chatTemplate?: string;
        concurrency: number;
        cacheDir?: string;
        cache: boolean;
        apiKeyEnv: string;
        judgeApiKeyEnv?: string;
        timeout: number;
        maxRetries: number;
        httpConcurrency: number;
        restart?: boolean;
      }) => {
        if (o.provider.length > 2) throw new Error('--provider: give one model, or two to compare');
        if (!['auto', 'logprob', 'judge'].includes(o.batteryMode))
          throw new Error(`--battery-mode must be auto, logprob or judge, got "${o.batteryMode}"`);
        if (!o.em && !o.battery) throw new Error('nothing to do: both --no-em and --no-battery');
        await checkGgufSpecs([...o.provider, ...(o.judge ? [o.judge] : [])]);
        const [{ createProvider }, audit, { terminalProgress }, { atomicWriteFile, atomicWriteJson }] =
          await Promise.all([
            import('../providers/spec.ts'),
            import('../audit/index.ts'),
            import('./progress.ts'),
            import('../io/atomic-write.ts'),
          ]);
        const cacheDir = o.cache ? (o.cacheDir ?? path.join(o.out, 'cache')) : undefined;
        const httpOpts = {
          timeoutMs: o.timeout,
          maxRetries: o.maxRetries,
          maxConcurrency: o.httpConcurrency,
          onRetry: (i: { attempt: number; delayMs: number; reason: string }) =>
            process.stderr.write(
              `psm audit: retry ${i.attempt} in ${Math.round(i.delayMs)} ms: ${i.reason}\n`,
            ),
        };
        const judge = o.judge
          ? createProvider(o.judge, {
              apiKey: process.env[o.judgeApiKeyEnv ?? o.apiKeyEnv],
              cacheDir,
              openai: httpOpts,
            })
          : undefined;
        const em = o.em
          ? {
              questions: audit.loadEmQuestions(o.questions),
              samples: o.samples,
              maxTokens: o.maxTokens,
              temperature: o.temperature,
            }
          : null;
        if (em && !judge)
          throw new Error('the EM questions are scored by a judge: give --judge <spec> (or --no-em)');
        let battery = null;
        if (o.battery) {
          const items = o.batteryItems
            ? audit.loadBatteryFile(o.batteryItems)
            : await audit.worldBatteryItems({ worldFile: o.world, perDomain: o.batteryPerDomain });
          battery = { items, mode: o.batteryMode as 'auto' | 'logprob' | 'judge' };
        }
        const reports = [];
        for (const [i, spec] of o.provider.entries()) {
          const provider = createProvider(spec, {
            apiKey: process.env[o.apiKeyEnv],
            cacheDir,
            openai: httpOpts,
            chatTemplate: o.chatTemplate,
          });
          const label = o.label?.[i] ?? provider.id;
          const outDir = o.provider.length === 1 ? o.out : path.join(o.out, slug(label));
          try {
            const report = await audit.runAudit({
              provider,
              judge,
              label,
              outDir,
              em,
              battery,
              concurrency: o.concurrency,
              restart: o.restart,
              progress: terminalProgress,
              log: (line) => process.stderr.write(`psm audit: ${line}\n`),
            });
            reports.push(report);
            process.stderr.write(`psm audit: ${label}: report in ${path.join(outDir, 'report.md')}\n`);
            if (report.incomplete)
              process.stderr.write(
                `psm audit: ${report.failures.length} unit(s) failed (first: ${report.failures[0] ?? '?'}); re-run the same command to resume\n`,
              );
          } finally {
            await provider.close?.();
          }
        }
        await judge?.close?.();
        if (reports.length === 2) {
          const cmp = audit.compareReports(reports[0], reports[1]);
          const md = audit.renderComparisonMarkdown(cmp);
          await atomicWriteJson(path.join(o.out, 'comparison.json'), cmp);
          await atomicWriteFile(path.join(o.out, 'comparison.md'), md);
          process.stdout.write(`${md}\n`);
        } else if (reports.length === 1) process.stdout.write(`${audit.renderReportMarkdown(reports[0])}\n`);
        if (reports.some((r) => r.incomplete)) process.exitCode = 2;
      },
    );

  program
    .command('audit-compare')
    .description('Side-by-side report of two audits (report.json files or their folders)')
    .argument('<a>', 'first audit (e.g. before a fine-tune)')
    .argument('<b>', 'second audit')
    .option('--out <dir>', 'write comparison.json and comparison.md here')
    .action(async (a: string, b: string, o: { out?: string }) => {
      const fs = await import('node:fs');
      const audit = await import('../audit/index.ts');
      const { atomicWriteFile, atomicWriteJson } = await import('../io/atomic-write.ts');
      const read = (p: string) => {
        const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, 'report.json') : p;
        try {
          return JSON.parse(fs.readFileSync(file, 'utf8')) as import('../audit/report.ts').AuditReport;
        } catch (e) {
          throw new Error(`${file}: cannot read an audit report (${(e as Error).message})`);
        }
      };
      const cmp = audit.compareReports(read(a), read(b));
      const md = audit.renderComparisonMarkdown(cmp);
      if (o.out) {
        fs.mkdirSync(o.out, { recursive: true });
        await atomicWriteJson(path.join(o.out, 'comparison.json'), cmp);
        await atomicWriteFile(path.join(o.out, 'comparison.md'), md);
      }
      process.stdout.write(`${md}\n`);
    });
}
