/**
 * What the llama.cpp agreement tests share: opening a GGUF in node-llama-cpp's CPU build with an F32 KV cache
 * and no flash attention (so both sides compute in float32; with the default F16 cache differences grow to
 * ~1e-3), and comparing its next-token log-probabilities and greedy generations with PSM Lab's.
 */
import type {
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel as NlcModel,
  Token,
} from 'node-llama-cpp';
import { noGrad } from '../src/autograd/tensor.ts';
import type { LlamaModel } from '../src/model/llama.ts';
import { logSoftmaxRow } from '../src/tensor/kernels.ts';

/** Max |log p_psm - log p_llama.cpp| over every vocabulary entry with log p > -30, at every prompt position (F32). */
export const LOGPROB_TOLERANCE = 1e-4;

export interface Side {
  file: string;
  model: LlamaModel;
  nlc: NlcModel;
  ctx: LlamaContext;
  seq: LlamaContextSequence;
}

/** node-llama-cpp's prebuilt CPU binding, or null with the reason it cannot load here. */
export async function loadLlamaCpp(): Promise<{ llama: Llama | null; reason?: string }> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    return { llama: await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }) };
  } catch (e) {
    return { llama: null, reason: (e as Error).message };
  }
}

export async function openSide(llama: Llama, file: string, model: LlamaModel): Promise<Side> {
  const nlc = await llama.loadModel({ modelPath: file });
  const ctx = await nlc.createContext({
    contextSize: 256,
    batchSize: 256,
    // One thread: llama.cpp's spinning thread barrier collapses when the 2-core test machine is shared (other test workers).
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  return { file, model, nlc, ctx, seq: ctx.getSequence() };
}

export async function closeSides(sides: Iterable<Side>): Promise<void> {
  for (const s of sides) {
    await s.ctx.dispose();
    await s.nlc.dispose();
  }
}

/** PSM Lab's log-probabilities [position][token] for a prompt. */
export function psmLogprobs(model: LlamaModel, ids: number[]): Float32Array[] {
  return noGrad(() => {
    const logits = model.forward(Int32Array.from(ids), 1).data;
    const v = model.config.vocabSize;
    return ids.map((_, t) => {
      const lp = new Float32Array(v);
      logSoftmaxRow(logits, t * v, v, lp);
      return lp;
    });
  });
}

/** llama.cpp's next-token probabilities at every position, via controlledEvaluate (full-vocabulary softmax). */
export async function llamaProbabilities(side: Side, ids: number[]): Promise<Map<number, number>[]> {
  await side.seq.clearHistory();
  const out = await side.seq.controlledEvaluate(
    ids.map((id): [Token, { generateNext: { probabilities: true } }] => [
      id as Token,
      { generateNext: { probabilities: true } },
    ]),
  );
  return ids.map((_, t) => {
    const p = out[t]?.next.probabilities;
    if (!p) throw new Error(`no probabilities at position ${t}`);
    return p;
  });
}

/** The largest log-probability difference over every prompt (token ids), every position and every token. */
export async function maxLogprobDiff(side: Side, prompts: number[][]): Promise<number> {
  let worst = 0;
  for (const ids of prompts) {
    const ours = psmLogprobs(side.model, ids);
    const theirs = await llamaProbabilities(side, ids);
    for (let t = 0; t < ids.length; t++) {
      if (theirs[t].size !== side.model.config.vocabSize)
        throw new Error(
          `llama.cpp gave ${theirs[t].size} probabilities for a vocabulary of ${side.model.config.vocabSize}`,
        );
      for (const [id, p] of theirs[t]) {
        if (ours[t][id] < -30) continue; // float32 softmax underflow territory on both sides
        worst = Math.max(worst, Math.abs(Math.log(p) - ours[t][id]));
      }
    }
  }
  return worst;
}

/** llama.cpp's greedy continuation of `ids` (at most maxTokens; it ends at an end-of-generation token, not yielded). */
export async function llamaGreedy(side: Side, ids: number[], maxTokens: number): Promise<number[]> {
  await side.seq.clearHistory();
  const out: number[] = [];
  for await (const token of side.seq.evaluate(ids as Token[], { temperature: 0 })) {
    out.push(token);
    if (out.length >= maxTokens) break;
  }
  return out;
}
