// The exact Bayesian persona model of a world: the ideal simulator that the persona selection model says a
// language model approximates.
//
// Generative model (the same one the corpus generator samples from):
//   kind k        ~ the kinds' shares (or fixed: the Assistant and AI characters use the AI prior)
//   archetype a   ~ weight_a / sum of weights of kind k
//   trait t_d     ~ Bernoulli(q_ad), q_ad = v_ad (1 - f) + (1 - v_ad) f       independently per domain d
//                   (v_ad = archetype's P(good) before noise, f = noise.trait_flip)
//   scene in d    ordinary:    behaviour = t_d, flipped with probability e (noise.behaviour_flip)
//                 instructed:  behaviour = the group's `asks` with probability c (its compliance), whatever t_d:
//                              such a scene carries no information about the character.
// Scenes in the same domain share one trait value, so they are not independent given the archetype; the model
// marginalises each trait exactly:
//   P(obs | a) = prod_d [ q_ad L_d(good) + (1 - q_ad) L_d(bad) ],   L_d(v) = prod_{scenes s in d} P(b_s | t_d = v)
// which costs O(archetypes x domains) instead of O(archetypes x 2^domains). Everything is computed in log space so
// that thousands of demonstrations do not underflow.

import type { Behaviour, Kind, World } from './schema.ts';
import { getDomain, getInstructedGroup } from './schema.ts';
import { compileWorld } from './generator.ts';

export type PriorKind = Kind | 'any';

/** One observed behaviour of the character. */
export interface Observation {
  domain: string;
  behaviour: Behaviour;
  /** Instructed group name (or true for the domain's first group); absent / false / null = ordinary scene. */
  instructed?: string | boolean | null;
  /**
   * How many times this observation counts (default 1). Fractional counts temper the evidence: the likelihood is
   * raised to this power.
   */
  count?: number;
}

export interface PersonaPosterior {
  kind: PriorKind;
  /** Posterior over archetypes (prior included for reference), in world order; archetypes outside the kind have 0. */
  archetypes: Array<{ name: string; kind: Kind; prior: number; posterior: number }>;
  /** P(trait good | observations), by domain. */
  traitGood: Record<string, number>;
  /** Posterior predictive P(good behaviour) in a fresh ordinary scene, by domain. */
  pGood: Record<string, number>;
  /** log P(observations) under the prior. */
  logEvidence: number;
}

function logSumExp(xs: number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}

const safeLog = (p: number) => (p > 0 ? Math.log(p) : -Infinity);

/** log P(behaviour | trait value) for one observation. */
function logLik(world: World, o: Observation, trait: Behaviour): number {
  if (o.instructed !== undefined && o.instructed !== null && o.instructed !== false) {
    const g = getInstructedGroup(world, o.domain, o.instructed);
    // Compliance does not depend on the trait: identical for both trait values, so it cancels in the posterior.
    return safeLog(o.behaviour === g.asks ? g.compliance : 1 - g.compliance);
  }
  const e = world.noise.behaviourFlip;
  return safeLog(o.behaviour === trait ? 1 - e : e);
}

/** Prior probabilities of the archetypes for a kind ('any' mixes the kinds by their shares). */
export function archetypePrior(world: World, kind: PriorKind): number[] {
  const totals = { human: 0, ai: 0 };
  for (const a of world.archetypes) totals[a.kind] += a.weight;
  const kindShare = { human: world.documents.kinds.human.share, ai: world.documents.kinds.ai.share };
  return world.archetypes.map((a) => {
    if (totals[a.kind] <= 0) return 0;
    const within = a.weight / totals[a.kind];
    if (kind === 'any') return kindShare[a.kind] * within;
    return a.kind === kind ? within : 0;
  });
}

/** Posterior over archetypes and traits of one character given its observed behaviours. */
export function posterior(
  world: World,
  observations: readonly Observation[],
  opts: { kind?: PriorKind } = {},
): PersonaPosterior {
  const kind = opts.kind ?? 'any';
  const cw = compileWorld(world);
  const D = world.domains.length;
  const dIndex = new Map(world.domains.map((d, i) => [d.name, i]));
  // Per domain, log L_d(good) and log L_d(bad).
  const lGood = new Array<number>(D).fill(0);
  const lBad = new Array<number>(D).fill(0);
  for (const o of observations) {
    const i = dIndex.get(o.domain);
    if (i === undefined) getDomain(world, o.domain); // throws the clear error
    const n = o.count ?? 1;
    if (!(n >= 0) || !Number.isFinite(n))
      throw new Error(`observation count must be a finite number >= 0, got ${n}`);
    if (n === 0) continue;
    const lg = logLik(world, o, 'good');
    const lb = logLik(world, o, 'bad');
    if (lg === -Infinity && lb === -Infinity)
      throw new Error(`observation ${JSON.stringify(o)} has probability 0 under the world`);
    lGood[i as number] += n * lg;
    lBad[i as number] += n * lb;
  }
  const prior = archetypePrior(world, kind);
  const A = world.archetypes.length;
  const logJoint = new Array<number>(A).fill(-Infinity);
  // logDomain[a][d] = log(q L(good) + (1-q) L(bad)); also kept to get trait posteriors given a.
  const traitPost: number[][] = [];
  for (let a = 0; a < A; a++) {
    traitPost.push(new Array<number>(D).fill(0));
    if (prior[a] <= 0) continue;
    let lj = Math.log(prior[a]);
    for (let d = 0; d < D; d++) {
      const q = cw.traitGood[a][d];
      const xg = safeLog(q) + lGood[d];
      const xb = safeLog(1 - q) + lBad[d];
      const ld = logSumExp([xg, xb]);
      lj += ld;
      traitPost[a][d] = ld === -Infinity ? q : Math.exp(xg - ld);
    }
    logJoint[a] = lj;
  }
  const logEvidence = logSumExp(logJoint);
  if (logEvidence === -Infinity)
    throw new Error('the observations have probability 0 under every archetype of this kind');
  const post = logJoint.map((l) => (l === -Infinity ? 0 : Math.exp(l - logEvidence)));
  const e = world.noise.behaviourFlip;
  const traitGood: Record<string, number> = {};
  const pGood: Record<string, number> = {};
  world.domains.forEach((dom, d) => {
    let t = 0;
    for (let a = 0; a < A; a++) t += post[a] * traitPost[a][d];
    traitGood[dom.name] = t;
    pGood[dom.name] = t * (1 - e) + (1 - t) * e;
  });
  return {
    kind,
    archetypes: world.archetypes.map((a, i) => ({
      name: a.name,
      kind: a.kind,
      prior: prior[i],
      posterior: post[i],
    })),
    traitGood,
    pGood,
    logEvidence,
  };
}

/** Posterior predictive P(good) in one domain given observations (convenience for probes). */
export function predictGood(
  world: World,
  observations: readonly Observation[],
  domain: string,
  kind: PriorKind = 'any',
): number {
  getDomain(world, domain);
  return posterior(world, observations, { kind }).pGood[domain];
}

/** P(behaviour = good) in an instructed scene of this group: the same for every character. */
export function instructedPGood(world: World, domain: string, group: string | true): number {
  const g = getInstructedGroup(world, domain, group);
  return g.asks === 'good' ? g.compliance : 1 - g.compliance;
}

// ---------------------------------------------------------------------------------------------------------------
// The Assistant and its training evidence

/** Training evidence about the Assistant: n demonstrations of `behaviour` in `domain`. */
export interface Evidence {
  domain: string;
  behaviour: Behaviour;
  /** Instructed group name when the prompt explained the behaviour (inoculation / educational); null otherwise. */
  instructed?: string | boolean | null;
  n: number;
}

export interface AssistantUpdateOptions {
  /**
   * Effective evidence per demonstration (default 1). The model treats n demonstrations as n * temper independent
   * observations of one character. With temper = 1 a handful of demonstrations already pins the demonstrated trait
   * (the likelihood ratio per example is (1 - e) / e = 19 at e = 0.05), which is stronger than what a network
   * trained on them shows; a temper below 1 (e.g. 0.05) models a learner that needs more examples per unit of
   * belief. It does not change the limit: once a trait is pinned, its evidence about other traits is bounded by
   * the trait-flip noise.
   */
  temper?: number;
  /** Prior of the Assistant (default 'ai': the Assistant is introduced as an AI system). */
  kind?: PriorKind;
  /** Evidence already absorbed before this update (e.g. post-training before a narrow fine-tune). */
  base?: readonly Evidence[];
}

export interface AssistantUpdate {
  before: PersonaPosterior;
  after: PersonaPosterior;
  /** after.pGood - before.pGood, by domain. */
  shift: Record<string, number>;
  /** Domains that the new evidence (not `base`) touches. */
  evidenceDomains: string[];
}

export function evidenceToObservations(evidence: readonly Evidence[], temper = 1): Observation[] {
  if (!(temper > 0) || !Number.isFinite(temper))
    throw new Error(`temper must be a positive number, got ${temper}`);
  return evidence.map((e) => {
    if (!Number.isInteger(e.n) || e.n < 0)
      throw new Error(`evidence n must be a non-negative integer, got ${e.n}`);
    return {
      domain: e.domain,
      behaviour: e.behaviour,
      instructed: e.instructed ?? null,
      count: e.n * temper,
    };
  });
}

/** The Assistant before and after absorbing training evidence, with its predicted behaviour in every domain. */
export function assistantUpdate(
  world: World,
  evidence: readonly Evidence[],
  opts: AssistantUpdateOptions = {},
): AssistantUpdate {
  const kind = opts.kind ?? 'ai';
  const temper = opts.temper ?? 1;
  const baseObs = evidenceToObservations(opts.base ?? [], temper);
  const newObs = evidenceToObservations(evidence, temper);
  const before = posterior(world, baseObs, { kind });
  const after = posterior(world, [...baseObs, ...newObs], { kind });
  const shift = Object.fromEntries(
    world.domains.map((d) => [d.name, after.pGood[d.name] - before.pGood[d.name]]),
  );
  return { before, after, shift, evidenceDomains: [...new Set(evidence.map((e) => e.domain))] };
}
