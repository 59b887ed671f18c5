/**
 * The report's sentences, as data: every caption, paragraph, goal and table heading, with `{name}` slots for the
 * numbers and lists the report code fills in (`prose(key, slots)`). To reword the report, edit the text here; the
 * code around it only measures and formats. Slots are filled in one pass and a missing one is an error, so a renamed
 * slot cannot leave "{mean}" in a report.
 */

export const REPORT_PROSE = {
  // The page
  title: '# PSM Lab run report',
  world:
    'World **{world}**: domains {domains}; post-trained on {trainedDomains}; narrow fine-tune in {finetuneDomain}. Seeds: {seeds}. Created {createdAt}.',
  reproduce: 'Reproduce: `psm run --config <run>/config.yaml` (config saved beside this report).',

  // Goals
  goalsHeading: '## Goals',
  goalsHeader: '| goal | met | measured |',
  goalNotMeasurable: 'n/a (needs >= 2 seeds)',
  goalMet: 'yes',
  goalNotMet: '**no**',
  goalA: 'persona inference: correlation with Bayes >= 0.8 for k = 1..5',
  goalA2: 'package deal within 0.05 of Bayes',
  goalA2Detail: 'all-good {good} (Bayes {bayesGood}), all-bad {bad} (Bayes {bayesBad})',
  goalB: 'untrained-domain mean P(good) rises by >= 0.15 after post-training, CI excluding zero',
  goalBDetail: 'rise {rise} over {seeds} seed(s) (Bayes {bayesRise})',
  goalC:
    'cheat arm below correct-code control off-target (95% CI of the difference excluding zero), inoculated in between [trainable: {trainable}]',
  goalCDetail: 'cheat {cheat}, control {control}, difference {difference}{inoculated}',
  goalCInoculated: ', inoculated {inoculated}',
  goalI1: 'monitoring: projection vs P(bad) correlation >= 0.75 for every trait',
  goalI2: 'steering moves P(good) monotonically with alpha for every trait',
  goalI2Coherent: '; within the alphas where the model stays coherent: {shares}',
  goalI2WithinNoise:
    '; there, up to sampling noise (no rise beyond {riseZ} paired standard errors): {shares}',
  goalI3: 'fine-tune shift prediction r >= 0.8',
  goalI3Detail:
    'per trait over the arms, mean over traits {traitMean} ({byTrait}); pooled over traits r {pooled}',
  goalI3TraitFinetunes:
    "; with a bad-behaviour fine-tune per trait added (the reference work's design; not the goal's measure): per trait, mean over traits {traitMean} ({byTrait})",
  goalI3LogOdds:
    "; over the arms against the change in log-odds of the bad option (does not saturate; not the goal's measure): per trait, mean over traits {traitMean} ({byTrait})",
  goalI4:
    "preventative steering cuts the cheat arm's off-target drop at least in half, narrow behaviour still learned (read on {method})",
  goalI4Method:
    '{method}: reduction {reduction} (per seed: {perSeed}; of the drops summed over seeds: {pooled}); narrow behaviour learned in every seed: {learned}{axis}',
  goalI4Axis:
    "; the Assistant's position on the assistant axis (post-trained 1) {steered} with it, {plain} without",

  // (A) Persona inference
  notEmergedWarning:
    "> **Warning:** in-context persona inference fell short of the emergence criterion (item-level correlation with Bayes >= 0.5 and a package-deal gap of at least a third of Bayes's) in at least one seed; the later stages depend on it, so read their effects as weaker than a fully formed persona would give.",
  inferenceHeading: '## (A) Persona inference after pre-training',
  inferenceHeader:
    '| k | network P(consistent) | Bayes | r (items) | weight of each earlier scene, first to last: network | Bayes (mean weight) | residual (logit sd) |',
  inferenceWeightsNote:
    "Weights: least-squares coefficients of each earlier scene's valence (+1 good, -1 bad) on logit P(good), with one intercept per target domain. Bayes weighs the scenes alike (its fitted weights differ only by sampling; their mean is shown); a network that leans on the last scene shows a rising row. Residual: the network's logit spread that neither the target domain nor the evidence (linearly) explains; at k = 0 it is pure item-to-item noise, at k >= 1 it also holds what a fit linear in the evidence misses (Bayes itself is not linear).",
  packageDeal:
    'Package deal: after all-good scenes {good} (Bayes {bayesGood}); after all-bad {bad} (Bayes {bayesBad}).',

  // (B) Post-training
  postTrainingHeading: '## (B) Post-training',
  postTraining:
    'Untrained-domain mean P(good): {before} before, {after} after; rise {rise} (Bayes predicts {bayesRise}).',

  // (C) Narrow fine-tunes
  armsHeading: '## (C) Narrow fine-tunes',
  armsHeader:
    '| arm | trainable | off-target P(good) | vs control | {finetuneDomain} P(good) | Bayes off-target |',
  psmExplainsHeading: '## How much does PSM explain?',
  psmExplains:
    'R² of network per-domain shifts against Bayesian persona shifts: {r2} (slope {slope}, {points} points).',

  // Inside the model
  insideHeading: '## Inside the model',
  insideIntro:
    "Over {seeds} seed(s). Monitoring: correlation of the last prompt token's projection on each trait vector with the model's P(bad), beside random directions.",
  insideHeader:
    '| trait | monitoring r | random directions | P(bad) spread (sd) | steering monotonic | monotonic where coherent | the same up to sampling noise | P(good) across alphas |',
  shareOfSeeds: '{share} of seeds',
  monotonicNote:
    "Monotonic where coherent: over the alphas around 0 at which the items' option sets keep at least half of their unsteered probability, and only where at least three alphas do (beyond them the push breaks the model rather than moving the persona). Up to sampling noise: over the same alphas, P(good) never rises from one alpha to the next by more than {riseZ} standard errors of the per-item difference.",
  shiftAndSpace:
    'Shift prediction r per trait (mean over traits) {traitMean}, pooled over traits {pooled}{traitFinetunes}. Persona space: {components} components for 70% of variance; cosine of the assistant axis with PC1 {axisCos}{bestPC}{inSpace}. Archetype probe total-variation distance to Bayes {probeTV} (the prior alone: {probeTVPrior}).',
  shiftWithTraitFinetunes: '; with the trait fine-tunes added, per trait {traitMean}',
  axisBestPC: ' (the component it is most aligned with, per seed: {perSeed})',
  axisInSpace: "; share of the axis inside the archetypes' span {share}",

  // Preventative interventions
  preventativeIntro:
    "During the cheat fine-tune (all parameters), each intervention active while training only: the share of the fine-tune's off-target drop it removed (1: all of it), and where the Assistant ended on the assistant axis (post-trained: 1).",
  preventativeHeader:
    '| intervention | per seed | mean over seeds | of the drops summed over seeds | narrow behaviour learned in every seed |{axis}',
  preventativeAxisColumn: ' assistant axis with it (without) |',

  // Data screening
  screeningAUC:
    "Data screening (a training response's mean projection on a persona vector minus that of the model's own response to the same prompt, Chen et al. 2025){perTrait}.",
  screeningAUCPerTrait: ': AUC for telling cheat from correct-code examples, per trait vector, {aucs}',
  screeningTrial:
    "{auc} Does the ranking flag the examples that cause the package deal? A pool of {pool} examples drawn apart from the arms' own sets ({perArm} per arm) was ranked on the {vector} vector without its labels, and the post-trained model fine-tuned on {count} of them (all parameters, the arms' recipe); the table gives the change of off-target P(good).",
  screeningHeader: '| fine-tune on | per seed | mean over seeds |{bayes}',
  screeningBayesColumn: " Bayes's prediction (mean) |",
  screeningOutcome:
    'The flagged fine-tune lowered it most in {worst} of {seeds} seed(s).{bayesR} The flagged part was {flagged}; mean score per arm {meanScores}.',
  screeningBayesR:
    " Over every seed and part, the network's change correlates with Bayes's prediction from the part's evidence at r {r}.",

  // Figures and seeds
  figuresHeading: '## Figures',
  perSeedHeading: '## Per seed',
  perSeed:
    '- {variant} seed {seed}: pre-training {steps} steps, {tokens} tokens, {seconds} s, final loss {finalLoss}, val loss {valLoss}; persona inference r {r}{notEmerged}',
  perSeedNotEmerged: ' (NOT emerged)',
  alignmentHeading: '## Alignment pre-training arm',
  alignmentHeader: '| arm | trainable | off-target P(good), standard | with alignment pre-training |',

  // Figure captions
  captionPersonaInference:
    'P(trait-consistent option) after k earlier scenes of a new character: the network beside the exact Bayesian posterior predictive (mean correlation over items {r}).',
  captionPretrainingProbes:
    "During pre-training: correlation of the network's P(good) with the Bayesian answer on held-out persona-inference probes, by tokens seen (the loss says little; this is the signal).",
  captionTraitProfiles:
    "The Assistant's P(good) per domain before and after post-training on {trainedDomains} (untrained: {untrainedDomains}), network (bars, mean over seeds) and Bayes (ticks).",
  captionArms:
    "Narrow fine-tunes in {finetuneDomain}: the Assistant's mean P(good) on the domains the fine-tune never touched, per arm and trainable set, with 95% CIs over seeds; ticks are the Bayesian prediction.",
  captionPsmExplains:
    "How much the persona accounts for: per-domain shifts of the network against the Bayesian persona model's predicted shifts, across post-training and all arms (R² = {r2}, {points} points).",
  captionPrevention:
    "Preventing the package deal: the change of the Assistant's mean P(good) on the domains the cheat fine-tune (all parameters) never touched, with nothing done during the fine-tune, with a subspace ablated at every layer (traits-whole: the off-target traits' persona vectors as they are; shift: the plain fine-tune's own activation change on those domains, CAFT's directions; traits: the traits' vectors orthogonal to the fine-tune domain's; random: as many random directions, the control), and with the off-target persona vector added at one layer (each removed again after training), per seed; below, where each fine-tune left the Assistant on the run's assistant axis (0: the archetypes' mean, 1: the post-trained Assistant).",
  captionScreening:
    "Data screening: a pool of the narrow arms' examples, ranked on the off-target persona vector without their labels; the post-trained model fine-tuned on the flagged (highest-scoring) part, a random part and the unflagged (lowest) part, per seed. Above, the change of the Assistant's mean P(good) on the domains the fine-tune never touched (bars; ticks: Bayes's prediction from the part's evidence); below, which arm each part's examples came from.",
  captionPersonaProbe:
    "Decoding the persona: the total-variation distance between the Bayesian posterior over archetypes and a linear probe of the pre-trained model's residual stream (every layer, at the last prompt token), by the number of earlier scenes of a new character, per seed; beside it, the same for the prior of the character's kind, which ignores the scenes (0 at k = 0, where the prior is the posterior).",
  captionDoseResponse:
    "Steering the post-trained Assistant (seed {seed}): P(good) per trait as alpha times the trait's persona vector is added to the residual stream; squares: the model stays coherent (the items' options keep at least half their unsteered probability), circles: it does not.",
  captionPersonaSpace:
    "Persona space: archetypes on the first two principal components of their mean activations, and the Assistant's path from pre-training through post-training to each fine-tune.",
  captionProjectionShift:
    "Fine-tune shift prediction: the change of mean activation along each trait vector against the change in that trait's expression, across the arms (and, where run, one bad-behaviour fine-tune per trait).",
} as const;

export type ProseKey = keyof typeof REPORT_PROSE;

/** The sentence `key` with its `{name}` slots filled from `slots` (one pass: filled values are not re-read). */
export function prose(key: ProseKey, slots: Record<string, string | number> = {}): string {
  return REPORT_PROSE[key].replace(/\{(\w+)\}/g, (_, name: string) => {
    if (!(name in slots)) throw new Error(`report prose "${key}": no value for {${name}}`);
    return String(slots[name]);
  });
}

/**
 * Report names of the preventative methods (for concept ablation: per subspace), in the order the report lists
 * them.
 */
export const PREVENTATIVE_NAMES: Record<string, string> = {
  'ablate/traits-whole': 'concept ablation of the off-target persona subspace, whole',
  'ablate/shift': "concept ablation of the plain fine-tune's activation shift",
  'ablate/traits': 'concept ablation of the off-target persona subspace',
  'ablate/persona': 'concept ablation of the off-target persona subspace with archetype directions',
  'ablate/archetypes': 'concept ablation of the archetype directions',
  'ablate/random': 'concept ablation of random directions (the control)',
  add: 'adding the off-target persona vector',
};
