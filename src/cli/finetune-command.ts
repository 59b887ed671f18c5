/**
 * `psm finetune`: fine-tune a model folder on chats (a JSON Lines file or one of the world's narrow sets) with the
 * recipe the pipeline's arms use, optionally with preventative steering or concept ablation from a persona-vector
 * file active while training and gone after it; the result is a model folder, written atomically, with a record of
 * how it was made (`finetune.json`), and with `--eval` the world's held-out battery before and after.
 *
 * The chats are trained in the model's chat format (src/interpret/shift.ts supervisedExamples): PSM Lab's format for
 * its own models, an imported model's own template for it; the result keeps the source folder's tokenizer and
 * template files, so it reopens in the format it was trained in.
 */
import * as path from 'node:path';
import type { Command } from 'commander';
import type { ChatLine } from '../world/index.ts';
import { itemSeedOf } from '../interpret/item-seeds.ts';
import {
  CHAT_TEMPLATE_OPTION,
  checkChatSource,
  f,
  handleFor,
  loadWorldOption,
  intOption,
  namesOption,
  narrowArmChats,
  numberOption,
} from './options.ts';

interface FinetuneOpts {
  model: string;
  out: string;
  data?: string;
  arm?: string;
  world?: string;
  examples: number;
  trainable: string;
  steps: number;
  batch: number;
  lr?: number;
  seed: number;
  vectors?: string;
  steer?: string;
  alpha: number;
  layer?: number;
  ablate?: string[];
  allowOtherModel?: boolean;
  eval?: true | number;
  target?: string;
  chatTemplate?: string;
  force?: boolean;
}

export function registerFinetuneCommand(program: Command): void {
  program
    .command('finetune')
    .description(
      "Fine-tune a model folder on chats (a JSON Lines file or the world's narrow sets) with the pipeline's recipe, optionally with preventative steering (--steer) or concept ablation (--ablate) of persona vectors while training; writes a model folder",
    )
    .requiredOption('--model <dir>', 'model folder to start from (e.g. <run>/standard-seed1/posttrain/model)')
    .requiredOption('--out <dir>', 'model folder to write (with finetune.json, how it was made)')
    .option(
      '--data <file>',
      'chats, JSON Lines: {"prompt": "...", "response": "..."} in the world\'s chat format, or {"messages": [{"role", "content"}, ...]}',
    )
    .option('--arm <name>', "or the world's narrow set: cheat, inoculated, control or educational")
    .option('--world <file>', 'world file for --arm and --eval (default: the built-in world)')
    .option('--examples <n>', 'chats drawn for --arm', intOption('--examples'), 400)
    .option(
      '--trainable <set>',
      'all, lora<rank> (e.g. lora1) or embedding (the Assistant token only)',
      'all',
    )
    .option('--steps <n>', 'training steps', intOption('--steps'), 60)
    .option('--batch <n>', 'chats per step', intOption('--batch'), 16)
    .option(
      '--lr <x>',
      "peak learning rate (default: the pipeline's for the set: 3e-4 all, 2e-3 LoRA, 5e-3 embedding)",
      numberOption('--lr', { above: 0 }),
    )
    .option(
      '--seed <n>',
      'seed of the example order, LoRA adapters and the --arm draw',
      intOption('--seed', 0),
      1,
    )
    .option(
      '--vectors <file>',
      'persona vectors of this model (psm vectors, or <seed>/interpret/vectors.safetensors)',
    )
    .option('--steer <trait>', "preventative steering: add this trait's vector while training (never after)")
    .option('--alpha <x>', 'steering strength, in 0.1 x the layer residual norm', numberOption('--alpha'), 4)
    .option(
      '--layer <n>',
      "layer to steer at (default: the trait's chosen layer in the vector file)",
      intOption('--layer', 0),
    )
    .option(
      '--ablate <traits>',
      "concept ablation: project these traits' vectors out at every layer while training",
      namesOption,
    )
    .option('--allow-other-model', 'accept vectors extracted from another model')
    .option(
      '--eval [items]',
      "score the world's held-out battery before and after (items per domain)",
      intOption('--eval'),
    )
    .option(
      '--target <domain>',
      "the domain --data trains, so --eval reports the others' mean change (with --arm: the world's narrow domain)",
    )
    .option(...CHAT_TEMPLATE_OPTION)
    .option('--force', 'replace --out if it exists')
    .action(async (o: FinetuneOpts) => {
      checkChatSource(o);
      if ((o.steer !== undefined || o.ablate !== undefined) !== (o.vectors !== undefined))
        throw new Error(
          o.vectors === undefined
            ? '--steer and --ablate need --vectors <file>'
            : '--vectors given without --steer or --ablate',
        );
      const { steps, batch: batchSize, seed, alpha } = o;
      const evalItems = o.eval === undefined ? 0 : o.eval === true ? 24 : o.eval;
      const [
        world,
        handle,
        { checkFolderTarget, writeFolderAtomicallySync },
        { saveModelFolder },
        { fineTuneInPlace },
        wi,
        { byDomain, fineTuneInterventions, hashModelFolder, loadVectorBundle, pGoodOf, supervisedExamples },
        { DEFAULT_CONFIG },
        { hashInputs },
        { terminalProgress },
        { mean },
        { keptTextFiles },
        { ChatTemplate },
      ] = await Promise.all([
        loadWorldOption(o.world),
        handleFor(o.model, o.chatTemplate),
        import('../io/atomic-write.ts'),
        import('../model/weights.ts'),
        import('../training/finetune.ts'),
        import('../world/index.ts'),
        import('../interpret/index.ts'),
        import('../pipeline/config.ts'),
        import('../pipeline/stage.ts'),
        import('./progress.ts'),
        import('../measurement/stats.ts'),
        import('../interop/chat-template-source.ts'),
        import('../interop/chat-template.ts'),
      ]);
      checkFolderTarget(o.out, { replace: o.force }); // before the training, not after it
      const trainable = wi.trainableSpec(o.trainable, handle.tokenizer);
      const lrDefaults = DEFAULT_CONFIG.finetune.lr;
      const lr =
        o.lr ??
        (trainable.kind === 'all'
          ? lrDefaults.all
          : trainable.kind === 'lora'
            ? lrDefaults.lora1
            : lrDefaults.embedding);

      // The chats.
      let chats: ChatLine[];
      let data: Record<string, unknown>;
      let domain = world.datasets.narrow?.domain;
      if (o.target !== undefined && o.arm !== undefined)
        throw new Error(`--target is for --data; --arm trains the world's narrow domain (${domain})`);
      if (o.target !== undefined && !world.domains.some((d) => d.name === o.target))
        throw new Error(
          `--target: unknown domain "${o.target}" (${world.domains.map((d) => d.name).join(', ')})`,
        );
      if (o.arm !== undefined) {
        const count = o.examples;
        chats = await narrowArmChats(world, o.arm, { seed, count });
        data = { arm: o.arm, world: world.name, count, seed };
      } else {
        chats = wi.readChatJsonl(o.data!);
        data = { file: path.resolve(o.data!), count: chats.length };
        domain = o.target;
      }
      data.hash = hashInputs(chats.map((c) => [c.prompt, c.response]));
      // In the model's chat format; a chat its template cannot train is refused before anything runs.
      const examples = supervisedExamples(handle, chats);
      const chat = handle.chat ?? ChatTemplate.psm();

      // Interventions while training, from a persona-vector file.
      const request = {
        steer: o.steer !== undefined ? { trait: o.steer, alpha, layer: o.layer } : undefined,
        ablate: o.ablate,
        allowOtherModel: o.allowOtherModel,
      };
      const { hooks, interventions } =
        o.vectors !== undefined
          ? fineTuneInterventions(handle, loadVectorBundle(o.vectors), request)
          : { hooks: undefined, interventions: [] };

      const battery = evalItems
        ? byDomain(
            wi.batteryItems(world, {
              seed: itemSeedOf('battery', seed),
              batteryPerDomain: evalItems,
              batteryFormats: ['chat'],
            }),
          )
        : null;
      const score = () =>
        battery ? Object.fromEntries([...battery].map(([d, its]) => [d, mean(pGoodOf(handle, its))])) : null;
      const before = score();

      const bar = terminalProgress('finetune', steps, 'steps');
      const t0 = Date.now();
      const { finalLoss } = fineTuneInPlace(handle.model, examples, {
        trainable,
        steps,
        batchSize,
        lr,
        seed,
        hooks,
        onStep: (step, loss) => bar.update(step, { loss }),
      });
      bar.stop();
      const seconds = (Date.now() - t0) / 1000;
      const after = score();

      const record = {
        format: 'psm-finetune',
        version: 1,
        from: { dir: path.resolve(o.model), hash: handle.hash },
        data,
        recipe: { trainable: o.trainable, steps, batchSize, lr, seed },
        chatTemplate: { kind: chat.kind, id: chat.id, origin: chat.origin },
        vectors: o.vectors !== undefined ? path.resolve(o.vectors) : null,
        interventions,
        finalLoss,
        seconds,
        date: new Date().toISOString(),
        eval:
          before && after ? { itemsPerDomain: evalItems, targetDomain: domain ?? null, before, after } : null,
      };
      writeFolderAtomicallySync(
        o.out,
        (dir) => {
          saveModelFolder(dir, handle.model, {
            // The source folder's tokenizer and template (a --chat-template override written in), so it reopens in
            // the format it was trained in.
            ...keptTextFiles(o.model, o.chatTemplate),
            'finetune.json': JSON.stringify(record, null, 2) + '\n',
          });
        },
        { replace: o.force },
      );
      for (const i of interventions)
        process.stdout.write(
          `while training: ${i.method === 'add' ? `added ${i.vector} at layer ${i.layers.join(',')}, alpha ${i.alpha}` : `ablated ${i.vector} at layers ${i.layers.join(',')}`}\n`,
        );
      if (before && after) {
        process.stdout.write('domain\tP(good) before\tafter\tchange\n');
        for (const d of Object.keys(before))
          process.stdout.write(
            `${d}${d === domain ? ' (trained)' : ''}\t${f(before[d])}\t${f(after[d])}\t${f(after[d] - before[d])}\n`,
          );
        if (domain) {
          const off = Object.keys(before).filter((d) => d !== domain);
          process.stdout.write(
            `off-target mean change: ${f(mean(off.map((d) => after[d] - before[d])))} (${off.join(', ')})\n`,
          );
        }
      }
      process.stdout.write(
        `${o.out}: ${steps} steps in ${seconds.toFixed(1)} s, final loss ${f(finalLoss)}, model ${hashModelFolder(o.out).slice(0, 12)}\n`,
      );
    });
}
