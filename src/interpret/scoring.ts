/**
 * Two-way choice scoring with a shared prompt: each item's prompt runs once into a KV cache, which is copied
 * for all of its wordings, and only the wordings run after it. Gives the same P(good) as
 * measurement/choice.ts (to float precision) at a fraction of the cost when prompts are long (persona probes
 * with several earlier scenes), and reads the last prompt token's activations at any hooks on the way.
 */
import { noGrad, Tensor } from '../autograd/tensor.ts';
import { logSumExp } from '../measurement/stats.ts';
import { checkHookName, HookSet } from '../model/hooks.ts';
import { KvCache, type LlamaModel } from '../model/llama.ts';
import { logSoftmaxRow } from '../tensor/kernels.ts';
import { memoEncode, type Encoder } from '../measurement/choice.ts';

export interface SharedChoiceItem {
  /** Prompt text, separator included when wanted. */
  prompt: string;
  good: readonly string[];
  bad: readonly string[];
}

export interface SharedScoreOptions {
  /** Hooks applied in every pass (e.g. steering); a function of the item index gives per-item hooks. */
  hooks?: HookSet | ((item: number) => HookSet | undefined);
  /** Hooks whose activation at the last prompt token is returned ([n, dim] per hook). */
  record?: readonly string[];
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

/** An item tokenized and checked against the context. */
interface PreparedItem {
  prompt: number[];
  conts: number[][];
  nGood: number;
  maxC: number;
  capacity: number;
}

function prepareItems(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
): PreparedItem[] {
  const c = model.config;
  const encode = memoEncode(tokenizer);
  return items.map((item, idx) => {
    if (item.good.length === 0 || item.bad.length === 0)
      throw new Error(`choice item ${idx} needs at least one good and one bad wording`);
    const prompt = encode(item.prompt);
    if (prompt.length === 0) throw new Error(`choice item ${idx}: empty prompt`);
    const conts = [...item.good, ...item.bad].map(encode);
    conts.forEach((ct, j) => {
      if (ct.length === 0) throw new Error(`choice item ${idx}: wording ${j} is empty`);
    });
    const maxC = Math.max(...conts.map((ct) => ct.length));
    if (prompt.length + maxC - 1 > c.maxSeqLen)
      throw new Error(
        `choice item ${idx} needs ${prompt.length + maxC - 1} positions, context is ${c.maxSeqLen}`,
      );
    return { prompt, conts, nGood: item.good.length, maxC, capacity: prompt.length + maxC };
  });
}

/** Where one item's passes start: from the tokens, or from the recorded stream after a block. */
interface ItemStart {
  afterLayer: number;
  /** [prompt length, dim] after that block. */
  prompt: Float32Array;
  /** [wordings x (longest wording - 1), dim] after that block (null when every wording is one token). */
  words: Float32Array | null;
  /** The prompt pass's cache (layers up to afterLayer are read from it). */
  cache: KvCache;
}

/**
 * Scores one item: the prompt pass (batch 1) into a cache, the next-token distribution at its last token, then all
 * wordings in one batch over copies of the prompt cache. Returns the item's P(good) and the log mass of its options.
 */
function scoreItem(
  model: LlamaModel,
  p: PreparedItem,
  hooks: { prompt?: HookSet; words?: HookSet },
  start?: ItemStart,
): { pGood: number; logMass: number; promptCache: KvCache } {
  const c = model.config;
  const dim = c.dim;
  const vocab = c.vocabSize;
  const T0 = p.prompt.length;
  // Resuming, the cache starts as the recorded pass's: the skipped layers keep their keys and values, and the pass
  // overwrites the later ones.
  const cache1 = start ? start.cache.expand([1]) : new KvCache(c, 1, p.capacity);
  cache1.length = 0;
  const hp = model.forwardHidden(Int32Array.from(p.prompt), 1, {
    cache: cache1,
    hooks: hooks.prompt,
    resume: start && { afterLayer: start.afterLayer, hidden: new Tensor(start.prompt, [1, T0, dim]) },
  });
  const lastRow = hp.data.slice((T0 - 1) * dim, T0 * dim);
  const firstLogits = model.logits(new Tensor(lastRow, [1, dim])).data;
  const logp0 = new Float32Array(vocab);
  logSoftmaxRow(firstLogits, 0, vocab, logp0);
  const totals = p.conts.map((ct) => logp0[ct[0]]);
  if (p.maxC > 1) {
    const B = p.conts.length;
    const T = p.maxC - 1;
    const cache = cache1.expand([B]);
    const ids = new Int32Array(B * T);
    p.conts.forEach((ct, b) => ids.set(ct.slice(0, -1).slice(0, T), b * T));
    const hc = model.forwardHidden(ids, B, {
      cache,
      hooks: hooks.words,
      resume: start && { afterLayer: start.afterLayer, hidden: new Tensor(start.words!, [B, T, dim]) },
    });
    const rows: number[] = [];
    p.conts.forEach((ct, b) => {
      for (let j = 1; j < ct.length; j++) rows.push(b * T + j - 1);
    });
    const picked = new Float32Array(rows.length * dim);
    rows.forEach((r, i) => picked.set(hc.data.subarray(r * dim, (r + 1) * dim), i * dim));
    const logits = model.logits(new Tensor(picked, [rows.length, dim])).data;
    const logp = new Float32Array(vocab);
    let k = 0;
    p.conts.forEach((ct, b) => {
      for (let j = 1; j < ct.length; j++) {
        logSoftmaxRow(logits, k * vocab, vocab, logp);
        totals[b] += logp[ct[j]];
        k++;
      }
    });
  }
  const lg = logSumExp(totals.slice(0, p.nGood));
  const lb = logSumExp(totals.slice(p.nGood));
  return { pGood: 1 / (1 + Math.exp(lb - lg)), logMass: logSumExp([lg, lb]), promptCache: cache1 };
}

export function scoreChoicesShared(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
  opts: SharedScoreOptions = {},
): SharedScoreResult {
  const c = model.config;
  const dim = c.dim;
  const record = opts.record ?? [];
  for (const h of record) checkHookName(h, c.nLayers);
  const lastToken = new Map(record.map((h) => [h, new Float32Array(items.length * dim)]));
  const prepared = prepareItems(model, tokenizer, items);
  const pGood: number[] = [];
  const logMass: number[] = [];
  noGrad(() => {
    prepared.forEach((p, idx) => {
      const userHooks = typeof opts.hooks === 'function' ? opts.hooks(idx) : opts.hooks;
      let promptHooks = userHooks;
      if (record.length > 0) {
        promptHooks = new HookSet();
        // Re-apply the user's hooks first so the recorded activation is the edited one.
        if (userHooks)
          for (const name of userHooks.names())
            promptHooks.add(name, (x, ctx) => userHooks.apply(name, x, ctx));
        const T0 = p.prompt.length;
        for (const h of record) {
          promptHooks.add(h, (x) => {
            lastToken.get(h)!.set(x.data.subarray((T0 - 1) * dim, T0 * dim), idx * dim);
          });
        }
      }
      const r = scoreItem(model, p, { prompt: promptHooks, words: userHooks });
      pGood.push(r.pGood);
      logMass.push(r.logMass);
    });
  });
  return { pGood, logMass, lastToken };
}

/**
 * Items scored without any intervention, with the residual stream after every block and the prompt caches kept, so
 * that `scoreFromTrace` can rescore them under an intervention at one block by running only the blocks after it.
 */
export interface ChoiceTrace {
  /** The unsteered scores (as scoreChoicesShared gives them). */
  base: { pGood: number[]; logMass: number[] };
  items: readonly {
    prepared: PreparedItem;
    cache: KvCache;
    /** Per block: [prompt length, dim] and [wordings x (longest - 1), dim] after it (words null if all are 1 token). */
    prompt: Float32Array[];
    words: (Float32Array | null)[];
  }[];
}

export function traceChoices(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
): ChoiceTrace {
  const nLayers = model.config.nLayers;
  const prepared = prepareItems(model, tokenizer, items);
  const base = { pGood: [] as number[], logMass: [] as number[] };
  const out: ChoiceTrace['items'][number][] = [];
  noGrad(() => {
    for (const p of prepared) {
      const prompt: Float32Array[] = [];
      const words: (Float32Array | null)[] = new Array<Float32Array | null>(nLayers).fill(null);
      const promptHooks = new HookSet();
      const wordHooks = new HookSet();
      for (let l = 0; l < nLayers; l++) {
        promptHooks.add(`blocks.${l}.hook_resid_post`, (x) => {
          prompt[l] = x.data.slice();
        });
        wordHooks.add(`blocks.${l}.hook_resid_post`, (x) => {
          words[l] = x.data.slice();
        });
      }
      const r = scoreItem(model, p, { prompt: promptHooks, words: wordHooks });
      base.pGood.push(r.pGood);
      base.logMass.push(r.logMass);
      out.push({ prepared: p, cache: r.promptCache, prompt, words });
    }
  });
  return { base, items: out };
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
  const pGood: number[] = [];
  const logMass: number[] = [];
  noGrad(() => {
    for (const it of trace.items) {
      const r = scoreItem(
        model,
        it.prepared,
        { prompt: hooks, words: hooks },
        { afterLayer, prompt: it.prompt[afterLayer], words: it.words[afterLayer], cache: it.cache },
      );
      pGood.push(r.pGood);
      logMass.push(r.logMass);
    }
  });
  return { pGood, logMass };
}
