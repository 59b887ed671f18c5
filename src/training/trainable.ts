/**
 * Which parameters a training run may change. The persona notes found this decides whether a narrow
 * fine-tune has to pass through the persona: all parameters, rank-r LoRA on chosen projections, or chosen
 * rows of the embedding (e.g. the Assistant token's vector).
 */
import type { LlamaModel, LoraTarget } from '../model/llama.ts';
import type { TrainableParam } from './optimizer.ts';

export type TrainableSpec =
  | { kind: 'all' }
  | { kind: 'lora'; rank: number; targets: LoraTarget[]; alpha?: number }
  | { kind: 'embeddingRows'; rows: number[] };

function isMatrix(name: string): boolean {
  return name.endsWith('.weight') && !name.endsWith('norm.weight');
}

/**
 * Marks the chosen parameters trainable (and every other parameter frozen, so no gradient is computed for
 * it) and returns them for the optimizer. LoRA adapters are created here, seeded.
 */
export function selectTrainable(model: LlamaModel, spec: TrainableSpec, seed: number): TrainableParam[] {
  for (const t of model.params.values()) t.requiresGrad = false;
  switch (spec.kind) {
    case 'all':
      return [...model.params.values()].map((t) => {
        t.requiresGrad = true;
        return { tensor: t, rows: null, decay: isMatrix(t.name) && t.shape.length === 2 };
      });
    case 'lora': {
      if (!(spec.rank >= 1)) throw new Error(`trainable: LoRA rank must be >= 1, got ${spec.rank}`);
      const adapters =
        model.adapters.size > 0
          ? [...model.adapters.values()]
          : model.addLora(spec.rank, spec.targets, seed, spec.alpha ?? spec.rank);
      return adapters.flatMap((a) => [
        { tensor: a.a, rows: null, decay: false },
        { tensor: a.b, rows: null, decay: false },
      ]);
    }
    case 'embeddingRows': {
      const emb = model.param('model.embed_tokens.weight');
      for (const r of spec.rows) {
        if (!Number.isInteger(r) || r < 0 || r >= emb.shape[0])
          throw new Error(`trainable: embedding row ${r} is outside the vocabulary (${emb.shape[0]})`);
      }
      emb.requiresGrad = true;
      return [{ tensor: emb, rows: [...spec.rows], decay: false }];
    }
  }
}
