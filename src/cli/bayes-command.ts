/** `psm bayes`: what the exact Bayesian persona model predicts for an experiment's config, without running it. */
import type { Command } from 'commander';
import { intOption } from './options.ts';

export function registerBayesCommand(program: Command): void {
  program
    .command('bayes')
    .description(
      "Print the Bayesian persona model's predictions for an experiment (the Assistant's P(good) per domain: prior, post-trained, after each narrow arm) from the config's world, AI mix and transform",
    )
    .option('--preset <name>', 'default | quick')
    .option('--config <file>', 'experiment config (YAML), merged over the preset')
    .option('--world <world>', "a built-in world's name or a world file, instead of the config's")
    .option('--ai-mix <mix>', "an AI mix instead of the config's ('villains', 'positive', name=mult,...)")
    .option('--independent-traits', 'the control world: every trait drawn on its own')
    .option('--seed <n>', "whose datasets (default: the config's first seed)", intOption('--seed', 0))
    .option('--json', 'print the predictions as JSON')
    .action(
      async (o: {
        preset?: string;
        config?: string;
        world?: string;
        aiMix?: string;
        independentTraits?: boolean;
        seed?: number;
        json?: boolean;
      }) => {
        const [{ resolveConfig }, { bayesPredictions, formatPredictions }, { parseAiMix }] =
          await Promise.all([
            import('../pipeline/config.ts'),
            import('../pipeline/predict.ts'),
            import('../world/mix.ts'),
          ]);
        const seed = o.seed;
        const config = resolveConfig({
          preset: o.preset,
          file: o.config,
          overrides: {
            ...(o.world ? { world: o.world } : {}),
            ...(o.aiMix ? { worldAiMix: parseAiMix(o.aiMix) } : {}),
            ...(o.independentTraits ? { worldTransform: 'independent-traits' as const } : {}),
          },
        });
        const p = bayesPredictions(config, seed);
        process.stdout.write(`${o.json ? JSON.stringify(p, null, 2) : formatPredictions(p)}\n`);
      },
    );
}
