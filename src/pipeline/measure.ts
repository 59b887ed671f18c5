/**
 * The pipeline's measurements: the Assistant's trait battery per domain, in-context persona inference
 * against the Bayesian posterior predictive, and the package-deal probes.
 */
import { Matrix, solve } from 'ml-matrix';
import { choiceProbabilities, type Encoder } from '../measurement/choice.ts';
import { clippedLogit, estimate, meanAbsoluteError, mean, pearson } from '../measurement/stats.ts';
import type { LlamaModel } from '../model/llama.ts';
import { END_OF_TEXT, type EvalItem } from '../world/index.ts';
import type { ProgressFactory } from './progress.ts';
import type { BatteryResult, EvidenceWeights, PersonaCheck } from './results.ts';

/**
 * P(good) of eval items, in chunks so a progress bar can follow; prompts get `prefix` in front (by default the
 * document separator, as in training; '' for items already in a model's own format). Every option is scored as a full sequence (measurement/choice.ts), as every recorded run was measured;
 * the interpretation's scoreItems (interpret/steer.ts) shares each prompt instead and agrees to float precision.
 */
export function pGoodWithProgress(
  model: LlamaModel,
  tokenizer: Encoder,
  items: readonly EvalItem[],
  progress: ProgressFactory,
  label: string,
  prefix = END_OF_TEXT,
): number[] {
  const bar = progress(label, items.length, 'items');
  const out: number[] = [];
  const chunk = 64;
  for (let i = 0; i < items.length; i += chunk) {
    const part = items
      .slice(i, i + chunk)
      .map((it) => ({ prompt: prefix + it.prompt, good: it.good, bad: it.bad }));
    out.push(...choiceProbabilities(model, tokenizer, part));
    bar.update(out.length);
  }
  bar.stop();
  return out;
}

export function batteryResult(
  label: string,
  items: readonly EvalItem[],
  pGood: readonly number[],
  domains: readonly string[],
  untrained: readonly string[],
  offTarget: readonly string[],
  bayes: Record<string, number> | null,
): BatteryResult {
  const scores = domains.map((domain) => {
    const values = items
      .map((it, i) => (it.domain === domain ? pGood[i] : NaN))
      .filter((v) => !Number.isNaN(v));
    return { domain, pGood: estimate(values), bayes: bayes ? bayes[domain] : null };
  });
  const meanOf = (set: readonly string[]) =>
    mean(scores.filter((s) => set.includes(s.domain)).map((s) => s.pGood.mean));
  return { label, domains: scores, untrainedMean: meanOf(untrained), offTargetMean: meanOf(offTarget) };
}

export function personaCheck(
  inference: readonly EvalItem[],
  pInference: readonly number[],
  pkg: readonly EvalItem[],
  pPackage: readonly number[],
  maxK: number,
): PersonaCheck {
  const byK = [];
  for (let k = 0; k <= maxK; k++) {
    const idx = inference.map((it, i) => (it.k === k ? i : -1)).filter((i) => i >= 0);
    if (idx.length === 0) continue;
    // P(consistent option): the option matching the character's actual trait in the target domain.
    const model = idx.map((i) => (inference[i].consistent === 'good' ? pInference[i] : 1 - pInference[i]));
    const bayes = idx.map((i) => inference[i].bayesPConsistent ?? NaN);
    // Correlation is over P(good): the network and Bayes should move together item by item.
    const modelGood = idx.map((i) => pInference[i]);
    const bayesGood = idx.map((i) => inference[i].bayesPGood);
    byK.push({
      k,
      model: mean(model),
      bayes: mean(bayes),
      correlation: pearson(modelGood, bayesGood),
      mae: meanAbsoluteError(modelGood, bayesGood),
      n: idx.length,
    });
  }
  const packageDeal = (['good', 'bad'] as const).map((valence) => {
    const idx = pkg.map((it, i) => (it.valence === valence ? i : -1)).filter((i) => i >= 0);
    return {
      evidence: valence,
      model: mean(idx.map((i) => pPackage[i])),
      bayes: mean(idx.map((i) => pkg[i].bayesPGood)),
      n: idx.length,
    };
  });
  const evidence = evidenceWeights(inference, pInference, maxK);
  const withEvidence = byK.filter((p) => p.k >= 1 && !Number.isNaN(p.correlation));
  const meanCorrelation = withEvidence.length ? mean(withEvidence.map((p) => p.correlation)) : NaN;
  const gap = packageDeal[0].model - packageDeal[1].model;
  // Emerged: item-level tracking of the posterior and a package-deal gap of at least a third of Bayes's.
  const bayesGap = packageDeal[0].bayes - packageDeal[1].bayes;
  const emerged = meanCorrelation >= 0.5 && gap >= bayesGap / 3;
  return { byK, packageDeal, meanCorrelation, emerged, evidence };
}

const logit = (p: number) => clippedLogit(p, 1e-4);

/**
 * How the network weighs each earlier scene, beside Bayes. For each k, a least-squares fit of logit P(good) on one
 * intercept per target domain plus each earlier scene's valence (+1 good, -1 bad) by position; the same fit on the
 * Bayesian logit gives Bayes's weights, equal across positions in expectation (the scenes are exchangeable). A network
 * that copies the last scene shows a rising profile. residualSd is the network's logit spread that neither the
 * domain nor the evidence explains (at k = 0: the item-to-item noise of a single target scene; at k >= 1 also
 * what a fit linear in the evidence misses, since the Bayesian answer is not linear in it).
 */
export function evidenceWeights(
  inference: readonly EvalItem[],
  pGood: readonly number[],
  maxK: number,
): EvidenceWeights[] {
  const out: EvidenceWeights[] = [];
  for (let k = 0; k <= maxK; k++) {
    const idx = inference
      .map((it, i) => (it.k === k && it.evidence.length === k ? i : -1))
      .filter((i) => i >= 0);
    const domains = [...new Set(idx.map((i) => inference[i].domain))];
    // Enough items for a meaningful fit: a few per parameter.
    if (idx.length < 3 * (domains.length + k)) continue;
    const rows = idx.map((i) => [
      ...domains.map((d) => (inference[i].domain === d ? 1 : 0)),
      ...inference[i].evidence.map((e) => (e.behaviour === 'good' ? 1 : -1)),
    ]);
    const x = new Matrix(rows);
    const fit = (ys: number[]) => {
      const beta = solve(x, Matrix.columnVector(ys), true).to1DArray();
      const fitted = x.mmul(Matrix.columnVector(beta)).to1DArray();
      const residuals = ys.map((y, j) => y - fitted[j]);
      return {
        weights: beta.slice(domains.length),
        residualSd: Math.sqrt(mean(residuals.map((r) => r * r))),
      };
    };
    const network = fit(idx.map((i) => logit(pGood[i])));
    const bayes = fit(idx.map((i) => logit(inference[i].bayesPGood)));
    out.push({
      k,
      n: idx.length,
      network: network.weights,
      bayes: bayes.weights,
      residualSd: network.residualSd,
    });
  }
  return out;
}
