/**
 * `psm screen` and `psm screen-trial`: data screening with persona vectors (Chen et al. 2025). `screen` ranks the
 * examples of a fine-tune set (a JSON Lines file or one of the world's narrow sets) by how far each one's response
 * pulls a model along each trait vector beyond the model's own response to the same prompt, before any training;
 * `screen-trial` tests on a finished run's seed that the ranking flags the examples that cause the package deal.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import {
  checkChatSource,
  f,
  handleFor,
  intOption,
  loadWorldOption,
  namesOption,
  narrowArmChats,
  numberOption,
  runOfSeedFolder,
  seedOfFolder,
  writeJson,
} from './options.ts';

/** An example's text, shortened for a terminal line. */
const clip = (text: string, n = 70) => {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
};

export function registerScreenCommands(program: Command): void {
  program
    .command('screen')
    .description(
      "Rank a fine-tune set's examples by projection difference on persona vectors (training response minus the model's own response to the same prompt), before training on it: the highest flag the examples that pull the Assistant toward a trait's bad pole",
    )
    .requiredOption(
      '--model <dir>',
      'the model that would be fine-tuned (e.g. <run>/standard-seed1/posttrain/model)',
    )
    .requiredOption(
      '--vectors <file>',
      'persona vectors of this model (psm vectors, or <seed>/interpret/vectors.safetensors)',
    )
    .option(
      '--data <file>',
      'chats, JSON Lines: {"prompt": "...", "response": "..."} in the world\'s chat format, or {"messages": [{"role", "content"}, ...]}',
    )
    .option('--arm <name>', "or the world's narrow set: cheat, inoculated, control or educational")
    .option('--world <file>', 'world file for --arm (default: the built-in world)')
    .option('--examples <n>', 'chats drawn for --arm', intOption('--examples'), 100)
    .option('--seed <n>', 'seed of the --arm draw', intOption('--seed', 0), 1)
    .option(
      '--traits <list>',
      'comma-separated traits (default: every trait in the vector file)',
      namesOption,
    )
    .option(
      '--layer <n>',
      "layer of every vector (default: each trait's chosen layer in the file)",
      intOption('--layer', 0),
    )
    .option('--max-new-tokens <n>', "length of the model's own responses", intOption('--max-new-tokens'), 16)
    .option('--top <n>', 'examples to print per trait, highest first', intOption('--top', 0), 5)
    .option('--allow-other-model', 'accept vectors extracted from another model')
    .option('--out <file>', 'write every example with its scores as JSON Lines')
    .action(
      async (o: {
        model: string;
        vectors: string;
        data?: string;
        arm?: string;
        world?: string;
        examples: number;
        seed: number;
        traits?: string[];
        layer?: number;
        maxNewTokens: number;
        top: number;
        allowOtherModel?: boolean;
        out?: string;
      }) => {
        checkChatSource(o);
        const { top, maxNewTokens, layer } = o;
        const [handle, wi, { bundleVector, loadVectorBundle, screenExamplesMulti }, { atomicWriteFileSync }] =
          await Promise.all([
            handleFor(o.model),
            import('../world/index.ts'),
            import('../interpret/index.ts'),
            import('../io/atomic-write.ts'),
          ]);
        let chats: { prompt: string; response: string; id?: string }[];
        if (o.arm !== undefined)
          chats = await narrowArmChats(await loadWorldOption(o.world), o.arm, {
            seed: o.seed,
            count: o.examples,
          });
        else chats = wi.readChatJsonl(o.data!);
        const bundle = loadVectorBundle(o.vectors);
        const traits = o.traits ?? bundle.traits.map((t) => t.trait);
        const vectors = traits.map((t) => bundleVector(bundle, t, layer));
        const t0 = Date.now();
        const { terminalProgress } = await import('./progress.ts');
        const bar = terminalProgress('own replies', chats.length, 'replies');
        const { baseResponses, ranked } = screenExamplesMulti(handle, chats, vectors, {
          maxNewTokens,
          allowOtherModel: o.allowOtherModel,
          onReply: (done) => bar.update(done),
        });
        bar.stop();
        process.stdout.write(
          `${chats.length} examples screened on ${traits.length} vector(s) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
        );
        const scores = chats.map(() => ({}) as Record<string, number>);
        ranked.forEach((r, i) => {
          for (const e of r) scores[e.index][traits[i]] = e.score;
          const all = r.map((e) => e.score);
          process.stdout.write(
            `\n${traits[i]} (layer ${vectors[i].layer}): mean score ${f(all.reduce((a, b) => a + b, 0) / all.length)}, highest ${f(all[0])}, lowest ${f(all[all.length - 1])}\n`,
          );
          for (const e of r.slice(0, top))
            process.stdout.write(
              `  ${f(e.score)}  #${e.index}  ${clip(chats[e.index].response)}  (own: ${clip(e.baseResponse, 40)})\n`,
            );
        });
        if (o.out) {
          fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
          atomicWriteFileSync(
            o.out,
            chats
              .map((c, i) =>
                JSON.stringify({
                  index: i,
                  ...(c.id ? { id: c.id } : {}),
                  prompt: c.prompt,
                  response: c.response,
                  ownResponse: baseResponses[i],
                  scores: scores[i],
                }),
              )
              .join('\n') + '\n',
          );
          process.stdout.write(`\n${o.out}\n`);
        }
      },
    );

  program
    .command('screen-trial <seedDir>')
    .description(
      "Does the screening ranking flag the examples that cause the package deal? On a seed folder whose interpretation has run: rank a pool of the world's narrow arms on the off-target persona vector, fine-tune the post-trained model on the flagged, a random and the unflagged part, and compare the off-target change",
    )
    .option(
      '--world <file>',
      "world file (default: the run's, from <run>/config.yaml, else the built-in world)",
    )
    .option('--arms <list>', "narrow arms mixed into the pool (default: the run's arms)", namesOption)
    .option(
      '--per-arm <n>',
      "pool examples per arm (default: the run's interpret.screeningPerArm)",
      intOption('--per-arm'),
    )
    .option(
      '--count <n>',
      'examples per fine-tune, at most half the pool (default: --per-arm)',
      intOption('--count'),
    )
    .option(
      '--items <n>',
      "held-out items per domain, the trial scores half (default: the run's)",
      intOption('--items', 4),
    )
    .option('--steps <n>', "fine-tune steps (default: the run's)", intOption('--steps'))
    .option('--batch <n>', "fine-tune batch size (default: the run's)", intOption('--batch'))
    .option(
      '--lr <x>',
      "fine-tune learning rate, all parameters (default: the run's)",
      numberOption('--lr', { above: 0 }),
    )
    .option(
      '--seed <n>',
      'seed of the fine-tunes and the random part (default: the N of <run>/standard-seed<N>)',
      intOption('--seed', 0),
    )
    .option(
      '--orthogonal',
      "rank on the off-target vector with the fine-tune domain's component removed (the one preventative steering adds)",
    )
    .option('--out <file>', 'write the trial as JSON')
    .action(
      async (
        seedDir: string,
        o: {
          world?: string;
          arms?: string[];
          perArm?: number;
          count?: number;
          items?: number;
          steps?: number;
          batch?: number;
          lr?: number;
          seed?: number;
          orthogonal?: boolean;
          out?: string;
        },
      ) => {
        // The run's own config, when the folder sits in one: its world, its trial's settings (so that the trial is
        // the pipeline's, bit for bit) and its post-training for Bayes; else the default config's settings.
        const [{ runConfig, world }, { DEFAULT_CONFIG }, experiment] = await Promise.all([
          runOfSeedFolder(seedDir, o.world),
          import('../pipeline/config.ts'),
          import('../pipeline/experiment.ts'),
        ]);
        const c = runConfig ?? DEFAULT_CONFIG;
        const lr = o.lr ?? c.finetune.lr.all;
        const seed = o.seed ?? seedOfFolder(seedDir);
        if (seed === undefined)
          throw new Error(`${seedDir} does not end in seed<N>: pass --seed (the run's seed of that folder)`);
        const arms = o.arms ?? c.finetune.arms;
        const [{ configureBackend }, { screeningStudy, SCREENING_SUBSETS }, { NARROW_ARMS }] =
          await Promise.all([
            import('../tensor/backend.ts'),
            import('../interpret/screen.ts'),
            import('../world/index.ts'),
          ]);
        for (const a of arms)
          if (!(NARROW_ARMS as readonly string[]).includes(a))
            throw new Error(`--arms: unknown narrow arm "${a}" (${NARROW_ARMS.join(', ')})`);
        const perArm = o.perArm ?? c.interpret.screeningPerArm;
        configureBackend();
        const t0 = Date.now();
        process.stdout.write(
          'fine-tune on\texamples per arm\tmean score\toff-target change\ttarget P(good)\n',
        );
        const { terminalProgress } = await import('./progress.ts');
        // The model's own replies to the pool first, then the three fine-tunes.
        const poolSize = perArm * arms.length;
        const replies = terminalProgress('own replies', poolSize, 'replies');
        // A bar shows from its first update, so this one appears once the replies are done.
        const parts = terminalProgress('screen-trial fine-tunes', SCREENING_SUBSETS.length, 'fine-tunes');
        const trial = screeningStudy(seedDir, {
          world,
          arms: arms as (typeof NARROW_ARMS)[number][],
          perArm,
          count: o.count ?? perArm,
          orthogonal: o.orthogonal,
          itemsPerDomain: o.items ?? c.interpret.itemsPerDomain,
          finetune: {
            trainable: { kind: 'all' },
            steps: o.steps ?? c.finetune.steps,
            batchSize: o.batch ?? c.finetune.batchSize,
            lr,
            seed,
          },
          onReply: (done) => {
            replies.update(done);
            if (done === poolSize) replies.stop();
          },
          onSubset: (s) => {
            parts.update(SCREENING_SUBSETS.indexOf(s.name) + 1);
            process.stdout.write(
              `${s.name}\t${Object.entries(s.sources)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')}\t${f(s.meanScore)}\t${f(s.offTargetChange)}\t${f(s.target)}\n`,
            );
          },
        });
        parts.stop();
        process.stdout.write(
          `\nranked on ${trial.vector} (layer ${trial.layer}); pool ${trial.pool}; before: target P(good) ${f(trial.before[trial.targetDomain])}\n`,
        );
        for (const s of trial.sources)
          process.stdout.write(
            `  ${s.source}: mean score ${f(s.meanScore)}, AUC against the rest ${f(s.auc, 2)}\n`,
          );
        process.stdout.write(`(${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
        // Bayes's prediction for each part, from its evidence on top of the run's post-training (the report's ticks).
        const bayes = runConfig
          ? experiment.screeningBayesChanges(world, trial.subsets, {
              postEvidence: experiment.postTrainingEvidence(runConfig, world, seed),
              seed,
              finetuneDomain: trial.targetDomain,
            })
          : null;
        if (bayes)
          process.stdout.write(
            `  Bayes's off-target change from each part's evidence: ${bayes.map((b) => `${b.part} ${f(b.offTargetChange)}`).join(', ')}\n`,
          );
        writeJson(o.out, bayes ? { ...trial, bayes } : trial);
      },
    );
}
