/**
 * Preventative steering in the recipe (Chen et al. 2025): the model is fine-tuned (LoRA by default) on replies that
 * express the trait, plainly and with the trait's vector added at the chosen layer while it trains (never after), and
 * each result answers the held-out questions under the trait's default system prompt; the judge scores how much of
 * the trait each fine-tune brought out. The intervention is PSM Lab's own (src/interpret/prevent.ts `fineTuneInterventions`, as
 * `psm finetune --steer` applies it) and the training is the pipeline's recipe (src/training/finetune.ts).
 *
 * Each fine-tuned model is kept as a model folder (<out>/prevent/plain, <out>/prevent/steered-alpha<A>), with a
 * record of how it was made, so a resumed run loads it instead of training again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModelHandle, type ModelHandle } from '../interpret/activations.ts';
import { fineTuneInterventions } from '../interpret/prevent.ts';
import type { VectorBundle } from '../interpret/vectors.ts';
import { writeFolderAtomicallySync } from '../io/atomic-write.ts';
import type { ChatMessage } from '../interop/chat-template.ts';
import { keptTextFiles } from '../interop/chat-template-source.ts';
import { saveModelFolder } from '../model/weights.ts';
import { fineTuneInPlace } from '../training/finetune.ts';
import { trainableSpec } from '../world/trainable-sets.ts';
import type { ProgressFactory } from '../measurement/progress.ts';
import { chatExample, engineFor } from './generate.ts';
import { hashOf } from './journal.ts';
import type { RecipeSummary } from './report.ts';
import { heldOutScores, type Study } from './work.ts';

/** Fine-tune chats: a conversation up to the reply, and the reply. */
export interface TuneChat {
  messages: ChatMessage[];
  reply: string;
}

export interface PreventionSettings {
  /** all, lora<rank> or embedding (src/world/trainable-sets.ts). */
  trainable: string;
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  /** Strength of the vector added while training, in steering units. */
  alpha: number;
}

export const DEFAULT_PREVENTION: PreventionSettings = {
  trainable: 'lora8',
  steps: 40,
  batchSize: 8,
  lr: 2e-3,
  seed: 1,
  alpha: 4,
};

export const PREVENT_RECORD = 'prevent.json';

export interface TunedModel {
  arm: 'plain' | 'steered';
  dir: string;
  handle: ModelHandle;
  finalLoss: number;
  /** Whether this run trained it (false: loaded from an earlier run). */
  trained: boolean;
}

/**
 * The model fine-tuned on `chats`, plainly or with preventative steering at `layer`: loaded from its folder when
 * an earlier run made it with the same inputs, else trained from a fresh copy of `modelDir` and saved there.
 */
export function tunedModel(opts: {
  arm: 'plain' | 'steered';
  modelDir: string;
  chatTemplate?: string;
  outDir: string;
  chats: readonly TuneChat[];
  settings: PreventionSettings;
  bundle: VectorBundle;
  trait: string;
  layer: number;
  onStep?: (step: number, loss: number) => void;
}): TunedModel {
  const { arm, settings } = opts;
  // One folder per strength: trials at several --prevent-alpha values keep each other's models.
  const dir = path.join(opts.outDir, 'prevent', arm === 'plain' ? arm : `${arm}-alpha${settings.alpha}`);
  const inputs = {
    from: opts.bundle.modelHash,
    chats: hashOf(opts.chats),
    settings: { ...settings, alpha: arm === 'steered' ? settings.alpha : 0 },
    steer:
      arm === 'steered'
        ? {
            trait: opts.trait,
            layer: opts.layer,
            vector: hashOf(Array.from(opts.bundle.traits[0].byLayer[opts.layer].vector)),
          }
        : null,
  };
  const inputHash = hashOf(inputs);
  const recordFile = path.join(dir, PREVENT_RECORD);
  if (fs.existsSync(recordFile)) {
    const rec = JSON.parse(fs.readFileSync(recordFile, 'utf8')) as { inputHash?: string; finalLoss?: number };
    if (rec.inputHash === inputHash)
      return {
        arm,
        dir,
        handle: loadModelHandle(dir, { chatTemplate: opts.chatTemplate }),
        finalLoss: rec.finalLoss ?? NaN,
        trained: false,
      };
  }
  const base = loadModelHandle(opts.modelDir, { chatTemplate: opts.chatTemplate });
  const engine = engineFor(base);
  const examples = opts.chats.map((c) => chatExample(engine, c.messages, c.reply));
  const { hooks, interventions } =
    arm === 'steered'
      ? fineTuneInterventions(base, opts.bundle, {
          steer: { trait: opts.trait, alpha: settings.alpha, layer: opts.layer },
        })
      : { hooks: undefined, interventions: [] };
  const { finalLoss } = fineTuneInPlace(base.model, examples, {
    trainable: trainableSpec(settings.trainable, base.tokenizer),
    steps: settings.steps,
    batchSize: settings.batchSize,
    lr: settings.lr,
    seed: settings.seed,
    hooks,
    onStep: opts.onStep,
  });
  const record = {
    format: 'psm-recipe-prevent',
    version: 1,
    arm,
    inputHash,
    from: { dir: path.resolve(opts.modelDir), hash: base.hash },
    examples: examples.length,
    settings,
    interventions,
    finalLoss,
    date: new Date().toISOString(),
  };
  writeFolderAtomicallySync(
    dir,
    (tmp) => {
      // The tokenizer and chat format of the model it was made from; the weights are its own.
      saveModelFolder(tmp, base.model, {
        ...keptTextFiles(opts.modelDir, opts.chatTemplate),
        [PREVENT_RECORD]: `${JSON.stringify(record, null, 2)}\n`,
      });
    },
    { replace: true },
  );
  return {
    arm,
    dir,
    handle: loadModelHandle(dir, { chatTemplate: opts.chatTemplate }),
    finalLoss,
    trained: true,
  };
}

/**
 * The trial: the model before any fine-tune, after the plain one and after the steered one, each answering the
 * held-out questions under the default system prompt, judged; and the share of the plain fine-tune's rise of the trait score
 * that preventative steering kept away.
 */
export async function preventionTrial(
  study: Study,
  opts: {
    modelDir: string;
    chatTemplate?: string;
    outDir: string;
    chats: readonly TuneChat[];
    data: string;
    settings: PreventionSettings;
    bundle: VectorBundle;
    trait: string;
    layer: number;
    progress: ProgressFactory;
    log: (line: string) => void;
  },
): Promise<NonNullable<RecipeSummary['prevention']>> {
  if (opts.chats.length === 0) throw new Error('preventative steering: no chats to fine-tune on');
  const before = await heldOutScores(study, study.base, 'prevent before');
  const arms: NonNullable<RecipeSummary['prevention']>['arms'] = [
    {
      arm: 'before',
      model: study.base.hash,
      finalLoss: null,
      trait: before.trait.mean,
      coherence: before.coherence.mean,
      n: before.trait.n,
    },
  ];
  for (const arm of ['plain', 'steered'] as const) {
    const bar = opts.progress(`prevent ${arm}`, opts.settings.steps, 'steps');
    let tuned: TunedModel;
    try {
      tuned = tunedModel({ ...opts, arm, onStep: (step, loss) => bar.update(step, { loss }) });
    } finally {
      bar.stop();
    }
    opts.log(`${arm} fine-tune ${tuned.trained ? 'trained' : 'loaded'}: ${tuned.dir}`);
    const s = await heldOutScores(
      study,
      { engine: engineFor(tuned.handle), hash: tuned.handle.hash },
      `prevent ${arm}`,
    );
    arms.push({
      arm,
      model: tuned.handle.hash,
      finalLoss: tuned.finalLoss,
      trait: s.trait.mean,
      coherence: s.coherence.mean,
      n: s.trait.n,
    });
  }
  const [b, plain, steered] = arms.map((a) => a.trait);
  return {
    examples: opts.chats.length,
    data: opts.data,
    layer: opts.layer,
    settings: opts.settings,
    arms,
    reduction: plain - b !== 0 ? (plain - steered) / (plain - b) : NaN,
  };
}
