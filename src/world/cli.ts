// `psm world validate|stats|generate`: the command-line face of the persona world.
//
// registerWorldCommands(program) adds the `world` command group to the main CLI. The default world file is
// worlds/default.yaml of this package, found relative to this module (never a hard-coded absolute path).
// Errors print a clear message (every problem of a world file, with its path and line) and set exit code 1.

import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { WorldError, loadWorld, worldVocabulary, type World } from './schema.ts';
import { parseAiMix, applyAiMix, type AiMix } from './mix.ts';
import { generateDocuments } from './generator.ts';
import { StatsBuilder, expectedWorldStats, formatStats, largestCorrelation } from './stats.ts';
import { INDEPENDENT_TRAITS, applyWorldTransform } from './independent.ts';
import { resolveWorldFile } from './variant.ts';
import { writeCorpus } from './corpus.ts';
import { byteTokenizer, type CorpusTokenizer } from './shards.ts';
import { buildEvalSet } from './eval.ts';
import { NARROW_ARMS, narrowSet, postTrainingSet } from './datasets.ts';

export interface WorldCliDeps {
  /** Turns a `--tokenizer` argument (e.g. a tokenizer file) into a tokenizer. 'bytes' is built in. */
  loadTokenizer?: (spec: string) => Promise<CorpusTokenizer> | CorpusTokenizer;
  /** Where output goes (tests capture it). */
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
}

/** Parse counts like 20000000, 20M, 1.5k, 2e6. */
export function parseCount(value: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]?)\s*$/.exec(value.replace(/_/g, ''));
  if (!m) throw new InvalidArgumentError(`expected a count such as 20000000, 20M or 500k, got '${value}'`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`count out of range: '${value}'`);
  return n;
}

function parseSeed(value: string): number {
  if (!/^\d+$/.test(value.trim()))
    throw new InvalidArgumentError(`seed must be a non-negative integer, got '${value}'`);
  const n = Number(value);
  if (n > 0xffffffff) throw new InvalidArgumentError('seed must be below 2^32');
  return n;
}

function parseFraction(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`expected a fraction in [0, 1), got '${value}'`);
  return n;
}

function parseMixOption(value: string): AiMix {
  try {
    return parseAiMix(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function registerWorldCommands(program: Command, deps: WorldCliDeps = {}): Command {
  const out = deps.stdout ?? ((s: string) => process.stdout.write(s + '\n'));
  const errOut = deps.stderr ?? ((s: string) => process.stderr.write(s + '\n'));

  // Every action goes through this wrapper: one place that turns errors into a message and exit code 1.
  const run =
    <A extends unknown[]>(f: (...args: A) => Promise<void> | void) =>
    async (...args: A) => {
      try {
        await f(...args);
      } catch (err) {
        if (err instanceof WorldError) errOut(`error: ${err.message}`);
        else errOut(`error: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    };

  const resolveFile = (file: string | undefined) => resolveWorldFile(file ?? 'default');
  // The mix first, then the transform: the control world keeps the marginals of the mixed world.
  const worldUsed = (w: World, o: { aiMix?: AiMix; independentTraits?: boolean }) =>
    applyWorldTransform(applyAiMix(w, o.aiMix), o.independentTraits ? INDEPENDENT_TRAITS : undefined);
  const independentOption = [
    '--independent-traits',
    "the control world: every trait drawn on its own with the kind's P(good), no package deals",
  ] as const;

  const world = program
    .command('world')
    .description('the persona world: validate a world file, show corpus statistics, generate a corpus');

  world
    .command('validate')
    .description('check a world file and report every problem with its path and line')
    .argument('[file]', 'world YAML file or built-in world name (default: the built-in world)')
    .action(
      run((given: string | undefined) => {
        const file = given ?? 'default';
        const w = loadWorld(resolveFile(file));
        const ai = w.archetypes.filter((a) => a.kind === 'ai').length;
        out(
          `ok: world '${w.name}' (${file}): ${w.domains.length} traits, ${w.archetypes.length} archetypes (${ai} AI), ` +
            `${w.names.train.length} training + ${w.names.heldout.length} held-out names, ${worldVocabulary(w).length} distinct words`,
        );
        for (const warn of w.warnings) out(`warning: ${warn.path}: ${warn.message}`);
      }),
    );

  world
    .command('stats')
    .description('generate a corpus in memory and print what is in it (nothing is written)')
    .argument('[file]', 'world YAML file or built-in world name (default: the built-in world)')
    .option('--seed <n>', 'corpus seed', parseSeed, 0)
    .option(
      '--tokens <n>',
      'token budget (approximate tokens: words, punctuation, newlines)',
      parseCount,
      1_000_000,
    )
    .option('--documents <n>', 'document budget instead of tokens', parseCount)
    .option(
      '--ai-mix <mix>',
      "re-weight AI archetypes: a preset ('positive', 'villains', ...) or name=mult,...",
      parseMixOption,
    )
    .option(...independentOption)
    .option('--json', 'print the statistics as JSON')
    .action(
      run(
        (
          file: string | undefined,
          o: {
            seed: number;
            tokens: number;
            documents?: number;
            aiMix?: AiMix;
            independentTraits?: boolean;
            json?: boolean;
          },
        ) => {
          const w = loadWorld(resolveFile(file));
          const used = worldUsed(w, o);
          const sb = new StatsBuilder(used);
          const t0 = performance.now();
          const budget = o.documents !== undefined ? { documents: o.documents } : { tokens: o.tokens };
          for (const doc of generateDocuments(used, { seed: o.seed, ...budget })) sb.add(doc);
          const s = sb.finish();
          // Beside a transformed world's correlations, the package deals it removed.
          const before = o.independentTraits
            ? expectedWorldStats(applyAiMix(w, o.aiMix)).correlations
            : undefined;
          if (o.json) out(JSON.stringify(before ? { ...s, untransformedCorrelations: before } : s, null, 2));
          else {
            out(formatStats(s));
            if (before)
              out(
                `\nlargest |correlation| of two traits: ${largestCorrelation(s.correlations.observed).toFixed(3)} observed, ` +
                  `${largestCorrelation(s.correlations.expected).toFixed(3)} expected; ${largestCorrelation(before).toFixed(3)} expected without --independent-traits`,
              );
            out(
              `\n(generated in ${((performance.now() - t0) / 1000).toFixed(2)} s, seed ${o.seed}${o.aiMix ? `, AI mix ${JSON.stringify(o.aiMix)}` : ''}${o.independentTraits ? ', independent traits' : ''})`,
            );
          }
        },
      ),
    );

  world
    .command('generate')
    .description(
      'write a corpus: JSONL with hidden characters, token shards (with --tokenizer), stats and manifest',
    )
    .argument('[file]', 'world YAML file or built-in world name (default: the built-in world)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'corpus seed', parseSeed, 0)
    .option(
      '--tokens <n>',
      'token budget (tokenizer tokens with --tokenizer, else approximate)',
      parseCount,
      12_000_000,
    )
    .option('--documents <n>', 'document budget instead of tokens', parseCount)
    .option(
      '--ai-mix <mix>',
      "re-weight AI archetypes: a preset ('positive', 'villains', ...) or name=mult,...",
      parseMixOption,
    )
    .option(...independentOption)
    .option('--val-fraction <f>', 'share of documents in the validation split', parseFraction, 0.02)
    .option('--tokenizer <spec>', "tokenizer for the shards ('bytes' for a byte-level one)")
    .option('--no-jsonl', 'do not write the JSONL files')
    .option('--eval', 'also write evaluation items (eval-*.jsonl)')
    .option('--datasets', 'also write post-training and narrow fine-tuning sets (datasets/*.jsonl)')
    .option('--force', 'overwrite an existing corpus in the output directory')
    .action(
      run(
        async (
          file: string | undefined,
          o: {
            out: string;
            seed: number;
            tokens: number;
            documents?: number;
            aiMix?: AiMix;
            independentTraits?: boolean;
            valFraction: number;
            tokenizer?: string;
            jsonl: boolean;
            eval?: boolean;
            datasets?: boolean;
            force?: boolean;
          },
        ) => {
          const w = loadWorld(resolveFile(file));
          let tokenizer: CorpusTokenizer | undefined;
          if (o.tokenizer === 'bytes') tokenizer = byteTokenizer();
          else if (o.tokenizer !== undefined) {
            if (!deps.loadTokenizer)
              throw new Error(
                `no tokenizer loader is configured for '${o.tokenizer}' (only 'bytes' is built in)`,
              );
            tokenizer = await deps.loadTokenizer(o.tokenizer);
          }
          const budget = o.documents !== undefined ? { documents: o.documents } : { tokens: o.tokens };
          const bar =
            process.stderr.isTTY && deps.stderr === undefined && budget.tokens !== undefined
              ? new cliProgress.SingleBar(
                  {
                    format:
                      'world generate [{bar}] {percentage}% | {value}/{total} tokens | {docs} documents | ETA {eta}s',
                    hideCursor: true,
                  },
                  cliProgress.Presets.shades_classic,
                )
              : null;
          const extraFiles = evalAndDatasetFiles(worldUsed(w, o), o.seed, o);
          bar?.start(budget.tokens ?? 0, 0, { docs: 0 });
          let result;
          try {
            // A transformed world is mixed before the transform, so it is written as the world used (world.json).
            result = await writeCorpus(o.independentTraits ? worldUsed(w, o) : w, {
              out: o.out,
              extraFiles,
              seed: o.seed,
              aiMix: o.independentTraits ? undefined : o.aiMix,
              valFraction: o.valFraction,
              tokenizer,
              jsonl: o.jsonl,
              force: o.force,
              ...budget,
              onProgress: (p) =>
                bar?.update(Math.min(p.tokens, budget.tokens ?? p.tokens), { docs: p.documents }),
            });
          } finally {
            bar?.stop();
          }
          const s = result.stats;
          out(
            `wrote ${o.out}: ${s.documents} documents, ${s.tokens} ${s.tokensExact ? '' : 'approximate '}tokens ` +
              `(train ${s.split.train.tokens}, val ${s.split.val.tokens}) in ${result.seconds.toFixed(1)} s` +
              (tokenizer ? '' : '; no token shards (give --tokenizer)'),
          );
        },
      ),
    );
  return world;
}

function jsonLines(rows: unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

/** Evaluation items and fine-tuning sets as corpus files (path -> contents), written before the manifest. */
function evalAndDatasetFiles(
  world: World,
  seed: number,
  what: { eval?: boolean; datasets?: boolean },
): Record<string, string> {
  const files: Record<string, string> = {};
  if (what.eval) {
    const set = buildEvalSet(world, { seed });
    files['eval-battery.jsonl'] = jsonLines(set.battery);
    files['eval-inference.jsonl'] = jsonLines(set.inference);
    files['eval-package.jsonl'] = jsonLines(set.package);
  }
  if (what.datasets) {
    files['datasets/post-good.jsonl'] = jsonLines(postTrainingSet(world, { seed }));
    files['datasets/post-bad.jsonl'] = jsonLines(postTrainingSet(world, { seed, behaviour: 'bad' }));
    if (world.datasets.narrow)
      for (const arm of NARROW_ARMS)
        files[`datasets/narrow-${arm}.jsonl`] = jsonLines(narrowSet(world, arm, { seed }));
  }
  return files;
}
