/**
 * The supervised fine-tune recipe that post-training, the narrow fine-tune arms, the interpretation's trials and
 * `psm finetune` share: AdamW without weight decay, a short warmup (a fifth of the steps, at most 5) and cosine decay
 * to a tenth of the peak rate, loss on the responses only, one example per row. LoRA adapters are merged at the end,
 * so the result is a plain model that saves and loads like any other.
 */
import type { HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import { SupervisedSource, type SupervisedExample } from './data.ts';
import { Trainer } from './trainer.ts';
import type { TrainableSpec } from './trainable.ts';

export interface FineTuneRecipe {
  trainable: TrainableSpec;
  steps: number;
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Seeds the example order and any LoRA adapters. */
  seed: number;
  /** Active while training only (preventative steering, concept ablation): the saved weights carry no hook. */
  hooks?: HookSet;
  onStep?: (step: number, loss: number) => void;
}

/** Fine-tunes `model` in place; returns the last step's loss. */
export function fineTuneInPlace(
  model: LlamaModel,
  examples: readonly SupervisedExample[],
  recipe: FineTuneRecipe,
): { finalLoss: number } {
  for (const [name, v] of [
    ['steps', recipe.steps],
    ['batch size', recipe.batchSize],
  ] as const)
    if (!(Number.isInteger(v) && v >= 1))
      throw new Error(`fine-tune: ${name} must be an integer >= 1, got ${v}`);
  if (!(Number.isFinite(recipe.lr) && recipe.lr > 0))
    throw new Error(`fine-tune: learning rate must be a positive number, got ${recipe.lr}`);
  const source = new SupervisedSource([...examples], recipe.batchSize, model.config.maxSeqLen, recipe.seed);
  const trainer = new Trainer(model, source, {
    schedule: {
      peakLr: recipe.lr,
      minLr: recipe.lr / 10,
      warmupSteps: Math.min(5, Math.floor(recipe.steps / 5)),
      totalSteps: recipe.steps,
    },
    trainable: recipe.trainable,
    seed: recipe.seed,
    adamw: { weightDecay: 0 },
    hooks: recipe.hooks,
  });
  let finalLoss = NaN;
  trainer.run((info) => {
    finalLoss = info.loss;
    recipe.onStep?.(info.step, info.loss);
  });
  if (model.adapters.size > 0) model.mergeLora();
  return { finalLoss };
}
