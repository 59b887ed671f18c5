/**
 * Two-way choice scoring with a shared prompt: items are batched (model/score.ts `promptBatches`), each batch's
 * prompts run once, left-padded, and all wordings of every item run after them side by side, reading the prompts'
 * keys and values in place. Gives the same P(good) as measurement/choice.ts (to float precision), and reads the last
 * prompt token's activations at any hooks on the way.
 */
import { noGrad } from '../autograd/tensor.ts';
import { logSumExp } from '../measurement/stats.ts';
import { checkHookName, HookSet } from '../model/hooks.ts';
import type { LlamaModel } from '../model/llama.ts';
import {
  promptBatches,
  scorePromptBatch,
  type PromptBatch,
  type PromptBatchResume,
  type PromptContinuations,
} from '../model/score.ts';
import { memoEncode, type Encoder } from '../measurement/choice.ts';

export interface SharedChoiceItem {
  /** Prompt text, separator included when wanted. */
  prompt: string;
  good: readonly string[];
  bad: readonly string[];
}

export interface SharedScoreOptions {
  /**
   * Hooks applied in every pass (e.g. steering); a function of the item index gives per-item hooks (each item is
   * then scored in a batch of its own).
   */
  hooks?: HookSet | ((item: number) => HookSet | undefined);
  /** Hooks whose activation at the last prompt token is returned ([n, dim] per hook). */
  record?: readonly string[];
  /** Padded prompt and wording tokens per batch (default 4096). */
  tokensPerBatch?: number;
}

export interface SharedScoreResult {
  pGood: number[];
  /**
   * Per item, the log probability of its whole option set (every good and bad wording): how much of its mass the
   * model still puts on a valid answer. An intervention that breaks the model lowers it even where P(good),
   * a ratio between the options, looks fine.
   */
  logMass: number[];
  lastToken: Map<string, Float32Array>;
}

const DEFAULT_TOKENS_PER_BATCH = 4096;

/** Items tokenized and checked against the context: a prompt and its wordings, good ones first. */
interface PreparedItems {
  list: PromptContinuations[];
  nGood: number[];
}

function prepareItems(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
): PreparedItems {
  const c = model.config;
  const encode = memoEncode(tokenizer);
  const list = items.map((item, idx) => {
    if (item.good.length === 0 || item.bad.length === 0)
      throw new Error(`choice item ${idx} needs at least one good and one bad wording`);
    const prompt = encode(item.prompt);
    if (prompt.length === 0) throw new Error(`choice item ${idx}: empty prompt`);
    const continuations = [...item.good, ...item.bad].map(encode);
    continuations.forEach((ct, j) => {
      if (ct.length === 0) throw new Error(`choice item ${idx}: wording ${j} is empty`);
    });
    const maxC = Math.max(...continuations.map((ct) => ct.length));
    if (prompt.length + maxC - 1 > c.maxSeqLen)
      throw new Error(
        `choice item ${idx} needs ${prompt.length + maxC - 1} positions, context is ${c.maxSeqLen}`,
      );
    return { prompt, continuations };
  });
  return { list, nGood: items.map((it) => it.good.length) };
}

/** Scores `members` of one batch into pGood and logMass (at each member's item index). */
function collect(
  perMember: number[][][],
  batch: PromptBatch,
  nGood: readonly number[],
  out: { pGood: number[]; logMass: number[] },
): void {
  perMember.forEach((perWording, k) => {
    const idx = batch.members[k];
    const totals = perWording.map((lps) => lps.reduce((a, b) => a + b, 0));
    const lg = logSumExp(totals.slice(0, nGood[idx]));
    const lb = logSumExp(totals.slice(nGood[idx]));
    out.pGood[idx] = 1 / (1 + Math.exp(lb - lg));
    out.logMass[idx] = logSumExp([lg, lb]);
  });
}

function emptyScores(n: number): { pGood: number[]; logMass: number[] } {
  return { pGood: new Array<number>(n), logMass: new Array<number>(n) };
}

export function scoreChoicesShared(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
  opts: SharedScoreOptions = {},
): SharedScoreResult {
  const dim = model.config.dim;
  const record = opts.record ?? [];
  for (const h of record) checkHookName(h, model.config.nLayers);
  const lastToken = new Map(record.map((h) => [h, new Float32Array(items.length * dim)]));
  const { list, nGood } = prepareItems(model, tokenizer, items);
  const perItemHooks = typeof opts.hooks === 'function';
  const batches = promptBatches(
    list,
    perItemHooks ? 1 : (opts.tokensPerBatch ?? DEFAULT_TOKENS_PER_BATCH),
    model.config.maxSeqLen,
  );
  const out = emptyScores(items.length);
  noGrad(() => {
    for (const batch of batches) {
      const userHooks = typeof opts.hooks === 'function' ? opts.hooks(batch.members[0]) : opts.hooks;
      let promptHooks = userHooks;
      if (record.length > 0) {
        promptHooks = new HookSet();
        // Re-apply the user's hooks first so the recorded activation is the edited one.
        if (userHooks)
          for (const name of userHooks.names())
            promptHooks.add(name, (x, ctx) => userHooks.apply(name, x, ctx));
        const P = batch.promptLen;
        for (const h of record) {
          // Left padding puts every prompt's last token in the last column.
          promptHooks.add(h, (x) => {
            batch.members.forEach((idx, b) =>
              lastToken.get(h)!.set(x.data.subarray(((b + 1) * P - 1) * dim, (b + 1) * P * dim), idx * dim),
            );
          });
        }
      }
      const scored = scorePromptBatch(model, batch, list, {
        hooks: { prompt: promptHooks, branches: userHooks },
      });
      collect(scored, batch, nGood, out);
    }
  });
  return { ...out, lastToken };
}

/**
 * Items scored without any intervention, with the residual stream after every block kept, so that `scoreFromTrace`
 * can rescore them under an intervention at one block by running only the blocks after it.
 */
export interface ChoiceTrace {
  /** The unsteered scores (as scoreChoicesShared gives them). */
  base: { pGood: number[]; logMass: number[] };
  prepared: PreparedItems;
  batches: readonly {
    batch: PromptBatch;
    /** Per block: the batch's prompts and its wordings after it (wordings null when all are one token). */
    prompt: Float32Array[];
    branches: (Float32Array | null)[];
  }[];
}

export function traceChoices(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
  opts: { tokensPerBatch?: number } = {},
): ChoiceTrace {
  const nLayers = model.config.nLayers;
  const prepared = prepareItems(model, tokenizer, items);
  const base = emptyScores(items.length);
  const batches: ChoiceTrace['batches'][number][] = [];
  noGrad(() => {
    const budget = opts.tokensPerBatch ?? DEFAULT_TOKENS_PER_BATCH;
    for (const batch of promptBatches(prepared.list, budget, model.config.maxSeqLen)) {
      const prompt: Float32Array[] = [];
      const branches: (Float32Array | null)[] = new Array<Float32Array | null>(nLayers).fill(null);
      const promptHooks = new HookSet();
      const branchHooks = new HookSet();
      for (let l = 0; l < nLayers; l++) {
        promptHooks.add(`blocks.${l}.hook_resid_post`, (x) => {
          prompt[l] = x.data.slice();
        });
        branchHooks.add(`blocks.${l}.hook_resid_post`, (x) => {
          branches[l] = x.data.slice();
        });
      }
      const scored = scorePromptBatch(model, batch, prepared.list, {
        hooks: { prompt: promptHooks, branches: branchHooks },
      });
      collect(scored, batch, prepared.nGood, base);
      batches.push({ batch, prompt, branches });
    }
  });
  return { base, prepared, batches };
}

/**
 * The traced items rescored under `hooks`, which may only act at blocks.{afterLayer}.hook_resid_post or later:
 * the same numbers as scoreChoicesShared with those hooks, for the cost of the blocks after `afterLayer`.
 */
export function scoreFromTrace(
  model: LlamaModel,
  trace: ChoiceTrace,
  afterLayer: number,
  hooks: HookSet,
): { pGood: number[]; logMass: number[] } {
  const out = emptyScores(trace.base.pGood.length);
  noGrad(() => {
    for (const { batch, prompt, branches } of trace.batches) {
      const resume: PromptBatchResume = {
        afterLayer,
        prompt: prompt[afterLayer],
        branches: branches[afterLayer],
      };
      const scored = scorePromptBatch(model, batch, trace.prepared.list, {
        hooks: { prompt: hooks, branches: hooks },
        resume,
      });
      collect(scored, batch, trace.prepared.nGood, out);
    }
  });
  return out;
}
