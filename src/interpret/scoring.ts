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
import type { Encoder } from '../measurement/choice.ts';

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

export function scoreChoicesShared(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly SharedChoiceItem[],
  opts: SharedScoreOptions = {},
): SharedScoreResult {
  const c = model.config;
  const dim = c.dim;
  const vocab = c.vocabSize;
  const record = opts.record ?? [];
  for (const h of record) checkHookName(h, c.nLayers);
  const lastToken = new Map(record.map((h) => [h, new Float32Array(items.length * dim)]));
  const enc = new Map<string, number[]>();
  const encode = (t: string) => {
    let ids = enc.get(t);
    if (!ids) enc.set(t, (ids = tokenizer.encode(t)));
    return ids;
  };
  const pGood: number[] = [];
  const logMass: number[] = [];
  noGrad(() => {
    items.forEach((item, idx) => {
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
      const userHooks = typeof opts.hooks === 'function' ? opts.hooks(idx) : opts.hooks;
      const capacity = prompt.length + maxC;
      // Prompt pass (batch 1), recording the last prompt token.
      const cache1 = new KvCache(c, 1, capacity);
      let promptHooks = userHooks;
      if (record.length > 0) {
        promptHooks = new HookSet();
        // Re-apply the user's hooks first so the recorded activation is the edited one.
        if (userHooks)
          for (const name of userHooks.names())
            promptHooks.add(name, (x, ctx) => userHooks.apply(name, x, ctx));
        for (const h of record) {
          promptHooks.add(h, (x) => {
            lastToken.get(h)!.set(x.data.subarray((prompt.length - 1) * dim, prompt.length * dim), idx * dim);
          });
        }
      }
      const hp = model.forwardHidden(Int32Array.from(prompt), 1, { cache: cache1, hooks: promptHooks });
      const lastRow = hp.data.slice((prompt.length - 1) * dim, prompt.length * dim);
      const firstLogits = model.logits(new Tensor(lastRow, [1, dim])).data;
      const logp0 = new Float32Array(vocab);
      logSoftmaxRow(firstLogits, 0, vocab, logp0);
      const totals = conts.map((ct) => logp0[ct[0]]);
      if (maxC > 1) {
        const B = conts.length;
        const cache = new KvCache(c, B, capacity);
        const hkv = c.nKvHeads;
        const hd = dim / c.nHeads;
        for (let l = 0; l < c.nLayers; l++) {
          for (let h = 0; h < hkv; h++) {
            const src = h * capacity * hd;
            const kSrc = cache1.keys[l].subarray(src, src + prompt.length * hd);
            const vSrc = cache1.values[l].subarray(src, src + prompt.length * hd);
            for (let b = 0; b < B; b++) {
              const dst = (b * hkv + h) * capacity * hd;
              cache.keys[l].set(kSrc, dst);
              cache.values[l].set(vSrc, dst);
            }
          }
        }
        cache.length = prompt.length;
        const T = maxC - 1;
        const ids = new Int32Array(B * T);
        conts.forEach((ct, b) => ids.set(ct.slice(0, -1).slice(0, T), b * T));
        const hc = model.forwardHidden(ids, B, { cache, hooks: userHooks });
        const rows: number[] = [];
        conts.forEach((ct, b) => {
          for (let j = 1; j < ct.length; j++) rows.push(b * T + j - 1);
        });
        const picked = new Float32Array(rows.length * dim);
        rows.forEach((r, i) => picked.set(hc.data.subarray(r * dim, (r + 1) * dim), i * dim));
        const logits = model.logits(new Tensor(picked, [rows.length, dim])).data;
        const logp = new Float32Array(vocab);
        let k = 0;
        conts.forEach((ct, b) => {
          for (let j = 1; j < ct.length; j++) {
            logSoftmaxRow(logits, k * vocab, vocab, logp);
            totals[b] += logp[ct[j]];
            k++;
          }
        });
      }
      const ng = item.good.length;
      const lg = logSumExp(totals.slice(0, ng));
      const lb = logSumExp(totals.slice(ng));
      pGood.push(1 / (1 + Math.exp(lb - lg)));
      logMass.push(logSumExp([lg, lb]));
    });
  });
  return { pGood, logMass, lastToken };
}
