/**
 * Fine-tune shift prediction (Chen et al. 2025), and the fine-tune and preventative trials the interpretation runs.
 *
 * Shift: for each fine-tuned model and trait, the change of the mean projection of the last prompt token onto
 * the trait's vector (taken from the model before the fine-tune) on the trait's held-out Assistant prompts,
 * against the change of trait expression (mean P(bad) on the same items). The correlation across arms and
 * traits says how well the activation shift predicts the behavioural shift. Data screening is in screen.ts.
 */
import { clippedLogit, mean, pearson } from '../measurement/stats.ts';
import type { HookSet } from '../model/hooks.ts';
import { chatFromPrompt, templateChatExample, type ChatMessage } from '../interop/chat-template.ts';
import type { SupervisedExample } from '../training/data.ts';
import { fineTuneInPlace, type FineTuneRecipe } from '../training/finetune.ts';
import { supervisedChats, type ChatLine } from '../world/index.ts';
import { modelHandle, projectRows, unitVector, type ModelHandle } from './activations.ts';
import { checkVector, pGoodOf, scoreItems, type ScoredItem } from './steer.ts';
import type { PersonaVector } from './vectors.ts';

export interface ModelState {
  /** Mean last-prompt projection per trait. */
  projection: Record<string, number>;
  /** Mean P(bad) per trait. */
  pBad: Record<string, number>;
  /**
   * Mean log-odds of the bad option per trait (P clipped to [1e-6, 1 - 1e-6]). A projection acts on the option
   * logits, so near P = 0 or 1 a shift shows in the log-odds long after the probability has stopped moving.
   */
  logOddsBad: Record<string, number>;
}

/** Probabilities are clipped this far from 0 and 1 before taking log-odds. */
const LOG_ODDS_CLIP = 1e-6;

/** Projections and trait expression of one model on each trait's items (vectors may come from another model). */
export function modelState(
  handle: ModelHandle,
  items: Map<string, readonly ScoredItem[]>,
  vectors: readonly PersonaVector[],
): ModelState {
  const projection: Record<string, number> = {};
  const pBad: Record<string, number> = {};
  const logOddsBad: Record<string, number> = {};
  for (const v of vectors) {
    const its = items.get(v.trait);
    if (!its || its.length === 0) throw new Error(`shift: no items for trait "${v.trait}"`);
    checkVector(v, handle, { allowOtherModel: true });
    const { pGood, lastToken } = scoreItems(handle, its, { record: [v.hook] });
    projection[v.trait] = mean(
      projectRows(
        lastToken.get(v.hook)!,
        handle.model.config.dim,
        unitVector(v.vector, `vector "${v.trait}"`),
      ),
    );
    pBad[v.trait] = mean(pGood.map((p) => 1 - p));
    logOddsBad[v.trait] = mean(pGood.map((p) => clippedLogit(1 - p, LOG_ODDS_CLIP)));
  }
  return { projection, pBad, logOddsBad };
}

export interface ShiftPoint {
  model: string;
  trait: string;
  /** Change of the mean projection (after - before). */
  projectionShift: number;
  /** Change of mean P(bad) (after - before). */
  expressionShift: number;
  /** Change of the mean log-odds of the bad option (after - before). */
  logOddsShift: number;
}

export interface ShiftPrediction {
  points: ShiftPoint[];
  /** Correlation over every (model, trait) point. */
  r: number;
  /** Correlation leaving out the traits in `exclude` (e.g. the fine-tune's own domain). */
  rExcluding: number | null;
  excluded: string[];
  /** Per trait, correlation across models (NaN with fewer than 3 models). */
  perTrait: Record<string, number>;
  /** The same against the change in log-odds (a reading that does not saturate; not the goal's measure). */
  perTraitLogOdds: Record<string, number>;
}

export function shiftPrediction(
  before: ModelState,
  afters: readonly { label: string; state: ModelState }[],
  exclude: readonly string[] = [],
): ShiftPrediction {
  const points: ShiftPoint[] = [];
  for (const { label, state } of afters) {
    for (const trait of Object.keys(before.projection)) {
      points.push({
        model: label,
        trait,
        projectionShift: state.projection[trait] - before.projection[trait],
        expressionShift: state.pBad[trait] - before.pBad[trait],
        logOddsShift: state.logOddsBad[trait] - before.logOddsBad[trait],
      });
    }
  }
  const r = pearson(
    points.map((p) => p.projectionShift),
    points.map((p) => p.expressionShift),
  );
  const kept = points.filter((p) => !exclude.includes(p.trait));
  const rExcluding =
    exclude.length > 0 && kept.length > 2
      ? pearson(
          kept.map((p) => p.projectionShift),
          kept.map((p) => p.expressionShift),
        )
      : null;
  const perTrait: Record<string, number> = {};
  const perTraitLogOdds: Record<string, number> = {};
  for (const trait of Object.keys(before.projection)) {
    const ps = points.filter((p) => p.trait === trait);
    const x = ps.map((p) => p.projectionShift);
    perTrait[trait] =
      ps.length >= 3
        ? pearson(
            x,
            ps.map((p) => p.expressionShift),
          )
        : NaN;
    perTraitLogOdds[trait] =
      ps.length >= 3
        ? pearson(
            x,
            ps.map((p) => p.logOddsShift),
          )
        : NaN;
  }
  return { points, r, rExcluding, excluded: [...exclude], perTrait, perTraitLogOdds };
}

// ---------------------------------------------------------------------------------------------------------------
// Fine-tuning with optional preventative steering (the pipeline's supervised recipe, for in-library trials)

/** Mean P(good) per domain of a model on each domain's items. */
export function domainPGood(
  handle: ModelHandle,
  items: Map<string, readonly ScoredItem[]>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [d, its] of items) out[d] = mean(pGoodOf(handle, its));
  return out;
}

/** Mean over the domains other than `targetDomain` of (after - before): the package deal's off-target change. */
export function offTargetChange(
  before: Record<string, number>,
  after: Record<string, number>,
  targetDomain: string,
): number {
  const off = Object.keys(before).filter((d) => d !== targetDomain);
  return mean(off.map((d) => after[d] - before[d]));
}

export type FineTuneOptions = FineTuneRecipe;

/**
 * Fine-tune chats as `handle`'s model is trained on them. PSM Lab's models (the PSM chat format): supervisedChats,
 * the document separator, the prompt as written and the response. A model with its own chat template: each chat's
 * messages (a messages line's, else read from its one-exchange prompt in the world's format) rendered by the template
 * up to the generation prompt, and the reply turn the template writes after it (templateChatExample), the reply
 * without the space the PSM format puts after "Assistant:".
 */
export function supervisedExamples(
  handle: Pick<ModelHandle, 'chat' | 'tokenizer'>,
  chats: readonly ChatLine[],
): SupervisedExample[] {
  const { chat, tokenizer } = handle;
  if (!chat || chat.kind === 'psm') return supervisedChats(tokenizer, chats);
  return chats.map((c, i) => {
    const messages: ChatMessage[] | null = c.messages ?? chatFromPrompt(c.prompt);
    // Earlier turns in the world's one-line format would read as part of the system message.
    if (!messages || (!c.messages && messages.some((m) => /^(User|Assistant):/m.test(m.content))))
      throw new Error(
        `chat ${i + 1}: a model with its own chat template (${chat.origin}) trains on conversations, and this prompt is not one exchange in the world's chat format ("[system line\\n]User: ...\\nAssistant:"); give the chat as {"messages": [...]}`,
      );
    const reply = c.response.startsWith(' ') ? c.response.slice(1) : c.response;
    return templateChatExample(chat, tokenizer, messages, reply);
  });
}

/**
 * Fine-tunes handle.model in place on chat examples in its chat format (supervisedExamples; the shared recipe,
 * training/finetune.ts). Returns a fresh handle, in the same chat format (the old one's hash no longer matches the
 * weights).
 */
export function fineTune(
  handle: ModelHandle,
  examples: readonly ChatLine[],
  opts: FineTuneOptions,
): { finalLoss: number; handle: ModelHandle } {
  const { model, tokenizer } = handle;
  const { finalLoss } = fineTuneInPlace(model, supervisedExamples(handle, examples), opts);
  const tuned = modelHandle(model, tokenizer, `${handle.source} (fine-tuned)`);
  return { finalLoss, handle: handle.chat ? { ...tuned, chat: handle.chat } : tuned };
}

/**
 * What a preventative trial does to the residual stream while the fine-tune trains (and never after it).
 * 'add': a persona vector added at one layer (preventative steering, Chen et al. 2025), so the optimiser need not
 * move the weights along it. 'ablate': directions projected out at every listed layer (concept ablation fine-tuning,
 * Casademunt et al. 2025), so the fine-tune can neither read nor use them.
 */
export interface PreventativeIntervention {
  method: 'add' | 'ablate';
  /** For 'ablate': the name of the subspace projected out. */
  subspace?: string;
  /** What is added or ablated, in words. */
  vector: string;
  layers: number[];
  /** The strength of 'add' in steering units; null for 'ablate'. */
  alpha: number | null;
  hooks: HookSet;
}

/**
 * An intervention built from the plain fine-tune (CAFT's directions come from the activation change it causes):
 * `tuned` is the plainly fine-tuned model, `load` gives a fresh copy of the model before it.
 */
export type DeferredIntervention = (plain: {
  tuned: ModelHandle;
  load: () => ModelHandle;
}) => PreventativeIntervention;

export interface PreventativeTrial {
  method: PreventativeIntervention['method'];
  /** For 'ablate': the subspace projected out (prevent.ts ABLATION_SUBSPACES; absent before version 15: 'traits'). */
  subspace?: string;
  vector: string;
  layers: number[];
  alpha: number | null;
  /** Mean P(good) per domain: before the fine-tune, after it without steering, after it with steering. */
  before: Record<string, number>;
  plain: Record<string, number>;
  steered: Record<string, number>;
  /** Mean over the off-target domains of (after - before), without and with steering. */
  offTargetDrop: { plain: number; steered: number };
  /** P(good) in the fine-tune's own domain after each (the narrow behaviour is learned when it falls). */
  target: { before: number; plain: number; steered: number };
  /** 1 - steered drop / plain drop (>= 0.5: steering cut the drop at least in half). */
  reduction: number;
  /**
   * The Assistant's position on the assistant axis (0: the archetypes' mean, 1: the post-trained Assistant) before
   * the fine-tune and after it without and with the intervention; absent when the trials were not given a persona
   * space (and before interpretation version 17).
   */
  axis?: { before: number; plain: number; steered: number };
}

/** Options of `preventativeTrials`: the fine-tune's recipe, and where to place each model in persona space. */
export type PreventativeTrialOptions = Omit<FineTuneOptions, 'hooks'> & {
  /** A model's position on the assistant axis (placeAssistant's axisPosition), recorded for every trial. */
  axisPosition?: (handle: ModelHandle) => number;
  /** The plain fine-tune, when it exists already (the same examples and recipe from the same model): not retrained. */
  plain?: () => ModelHandle;
};

/**
 * Preventative trials: the same fine-tune from fresh copies of a model, once plain and once under each
 * intervention (removed for evaluation), each evaluated on items of every domain. The plain fine-tune is shared,
 * and deferred interventions are built from it.
 */
export function preventativeTrials(
  load: () => ModelHandle,
  examples: readonly { prompt: string; response: string }[],
  interventions: readonly (PreventativeIntervention | DeferredIntervention)[],
  items: Map<string, readonly ScoredItem[]>,
  targetDomain: string,
  opts: PreventativeTrialOptions,
  onTrial?: (t: PreventativeTrial) => void,
): PreventativeTrial[] {
  const { axisPosition, plain: plainModel, ...recipe } = opts;
  if (interventions.length === 0) throw new Error('preventative trial: no interventions');
  const first = load();
  const before = domainPGood(first, items);
  const axisBefore = axisPosition?.(first);
  const tuned = plainModel ? plainModel() : fineTune(first, examples, recipe).handle;
  const plain = domainPGood(tuned, items);
  const axisPlain = axisPosition?.(tuned);
  const drop = (after: Record<string, number>) => offTargetChange(before, after, targetDomain);
  const dPlain = drop(plain);
  return interventions.map((intervention) => {
    const { hooks, ...what } =
      typeof intervention === 'function' ? intervention({ tuned, load }) : intervention;
    const steeredModel = fineTune(load(), examples, { ...recipe, hooks }).handle;
    const steered = domainPGood(steeredModel, items);
    const dSteered = drop(steered);
    const trial: PreventativeTrial = {
      ...what,
      before,
      plain,
      steered,
      offTargetDrop: { plain: dPlain, steered: dSteered },
      target: { before: before[targetDomain], plain: plain[targetDomain], steered: steered[targetDomain] },
      reduction: dPlain < 0 ? 1 - dSteered / dPlain : NaN,
      ...(axisPosition
        ? { axis: { before: axisBefore!, plain: axisPlain!, steered: axisPosition(steeredModel) } }
        : {}),
    };
    onTrial?.(trial);
    return trial;
  });
}
