/**
 * What the exact Bayesian persona model predicts for a config's experiment before anything is trained: the
 * Assistant's P(good) per domain before post-training (its prior), after it, and after each narrow arm, from the
 * same datasets and at the same evidence weight (BAYES_TEMPER) as the Bayes values `psm run` records beside the
 * network's. A world or mix is worth running when these numbers differ; a claim about the network is read beside them.
 */
import { assistantUpdate, datasetEvidence, narrowSet, type Evidence } from '../world/index.ts';
import { ARM_NAMES, type ExperimentConfig } from './config.ts';
import { BAYES_TEMPER, loadExperimentWorld, postTrainingEvidence, trainedDomains } from './experiment.ts';

export interface ArmPrediction {
  arm: string;
  pGood: Record<string, number>;
  /** Mean P(good) over the domains other than the fine-tune's. */
  offTarget: number;
  /** offTarget minus the post-trained Assistant's. */
  offTargetChange: number;
  /** P(good) in the fine-tune's domain. */
  target: number;
}

export interface BayesPrediction {
  world: string;
  /** The config's AI mix of the world (null: as the world file says). */
  aiMix: ExperimentConfig['worldAiMix'] | null;
  seed: number;
  temper: number;
  domains: string[];
  untrained: string[];
  finetuneDomain: string;
  prior: Record<string, number>;
  post: Record<string, number>;
  /** Mean over the untrained domains of post minus prior. */
  rise: number;
  arms: ArmPrediction[];
}

const meanOver = (p: Record<string, number>, domains: readonly string[]) =>
  domains.reduce((s, d) => s + p[d], 0) / domains.length;

/** Bayes's predictions for the experiment of a config (its first seed's datasets unless `seed` is given). */
export function bayesPredictions(config: ExperimentConfig, seed = config.seeds[0]): BayesPrediction {
  const world = loadExperimentWorld(config);
  const domains = world.domains.map((d) => d.name);
  const trained = trainedDomains(config, world);
  const untrained = domains.filter((d) => !trained.includes(d));
  const finetuneDomain = config.finetune.domain || world.datasets.narrow?.domain || '';
  if (!domains.includes(finetuneDomain))
    throw new Error(`the fine-tune domain "${finetuneDomain}" is not a domain of world '${world.name}'`);
  const off = domains.filter((d) => d !== finetuneDomain);
  const after = (evidence: readonly Evidence[], base: readonly Evidence[] = []) =>
    assistantUpdate(world, evidence, { base, temper: BAYES_TEMPER, kind: 'ai' }).after.pGood;
  const postEvidence = postTrainingEvidence(config, world, seed);
  const prior = after([]);
  const post = after(postEvidence);
  // Every narrow arm, in the pipeline's order, whether or not the config runs it: a prediction costs nothing.
  const arms = ARM_NAMES.map((arm) => {
    const examples = narrowSet(world, arm, { seed, count: config.finetune.examples, domain: finetuneDomain });
    const pGood = after(datasetEvidence(examples), postEvidence);
    return {
      arm,
      pGood,
      offTarget: meanOver(pGood, off),
      offTargetChange: meanOver(pGood, off) - meanOver(post, off),
      target: pGood[finetuneDomain],
    };
  });
  return {
    world: world.name,
    aiMix: config.worldAiMix ?? null,
    seed,
    temper: BAYES_TEMPER,
    domains,
    untrained,
    finetuneDomain,
    prior,
    post,
    rise: meanOver(post, untrained) - meanOver(prior, untrained),
    arms,
  };
}

export function formatPredictions(p: BayesPrediction): string {
  const f = (x: number) => x.toFixed(3);
  const w = Math.max(12, ...p.domains.map((d) => d.length + 2));
  const out = [
    `Bayes for world '${p.world}'${p.aiMix === null ? '' : ` with AI mix ${JSON.stringify(p.aiMix)}`} (seed ${p.seed}'s datasets, evidence weight ${p.temper} per example): the Assistant's P(good)`,
    `  ${'stage'.padEnd(14)}${p.domains.map((d) => d.padStart(w)).join('')}${'off-target'.padStart(12)}`,
  ];
  const off = p.domains.filter((d) => d !== p.finetuneDomain);
  const row = (label: string, g: Record<string, number>) =>
    `  ${label.padEnd(14)}${p.domains.map((d) => f(g[d]).padStart(w)).join('')}${f(meanOver(g, off)).padStart(12)}`;
  out.push(row('prior', p.prior), row('post-trained', p.post));
  for (const a of p.arms) out.push(row(a.arm, a.pGood));
  const control = p.arms.find((a) => a.arm === 'control');
  out.push(
    '',
    `post-training: untrained domains (${p.untrained.join(', ')}) ${f(meanOver(p.prior, p.untrained))} -> ${f(meanOver(p.post, p.untrained))}, rise ${f(p.rise)}`,
    ...p.arms.map(
      (a) =>
        `${a.arm.padEnd(12)} off-target change ${f(a.offTargetChange)}${control && a !== control ? `, minus control ${f(a.offTarget - control.offTarget)}` : ''}, ${p.finetuneDomain} ${f(a.target)}`,
    ),
  );
  return out.join('\n');
}
