/**
 * report.md: one function per section, in the report's order. The sentences come from prose.ts; the code here only
 * formats numbers into them and lays out the tables.
 */
import { RISE_Z } from '../../interpret/steer.ts';
import { mean } from '../../measurement/stats.ts';
import type { RunResults } from '../results.ts';
import { fmt, fmtE, fmtShare } from './format.ts';
import { preventativeName, type PreventativeAggregate } from './preventative.ts';
import { prose } from './prose.ts';
import type { ScreeningAggregate } from './screening.ts';
import { summarize } from './summary.ts';
import type { InterpretAggregate, Summary } from './types.ts';

/** A Markdown table row. */
const row = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;

/** The rule under a table's header row. */
const rule = (columns: number) => `|${'---|'.repeat(columns)}`;

/** The whole Markdown report of a run, its summary and its figures (ids and captions). */
export function markdown(results: RunResults, s: Summary, figs: { id: string; caption: string }[]): string {
  const lines: string[] = [
    ...headerSection(results, s),
    ...goalsSection(s),
    ...personaInferenceSection(s),
    ...postTrainingSection(s),
    ...armsSection(results, s),
    ...(s.interpret ? insideTheModelSection(s.interpret) : []),
    ...figuresSection(figs),
    ...perSeedSection(results),
    ...alignmentSection(results, s),
    '',
    prose('reproduce'),
    '',
  ];
  return lines.join('\n');
}

function headerSection(results: RunResults, s: Summary): string[] {
  const w = results.world;
  return [
    prose('title'),
    '',
    prose('world', {
      world: w.name,
      domains: w.domains.join(', '),
      trainedDomains: w.trainedDomains.join(', '),
      finetuneDomain: w.finetuneDomain,
      seeds: s.seeds,
      createdAt: results.createdAt,
    }),
    '',
  ];
}

function goalsSection(s: Summary): string[] {
  const met = (m: boolean | null) =>
    m === null ? prose('goalNotMeasurable') : m ? prose('goalMet') : prose('goalNotMet');
  return [
    prose('goalsHeading'),
    '',
    prose('goalsHeader'),
    rule(3),
    ...s.goals.map((g) => row([`${g.id}: ${g.text}`, met(g.met), g.detail])),
    '',
    ...(s.personaInference.emergedAll ? [] : [prose('notEmergedWarning'), '']),
  ];
}

function personaInferenceSection(s: Summary): string[] {
  const pi = s.personaInference;
  const weights = (w: number[] | null) => (w && w.length ? w.map((x) => fmt(x)).join(' ') : '-');
  return [
    prose('inferenceHeading'),
    '',
    prose('inferenceHeader'),
    rule(7),
    ...pi.byK.map((p) =>
      row([
        p.k,
        fmtE(p.model),
        fmt(p.bayes),
        fmtE(p.correlation),
        weights(p.networkWeights),
        p.bayesWeights && p.bayesWeights.length ? fmt(mean(p.bayesWeights)) : '-',
        p.residualSd ? fmtE(p.residualSd) : '-',
      ]),
    ),
    '',
    prose('inferenceWeightsNote'),
    '',
    prose('packageDeal', {
      good: fmtE(pi.packageGood),
      bayesGood: fmt(pi.packageBayes.good),
      bad: fmtE(pi.packageBad),
      bayesBad: fmt(pi.packageBayes.bad),
    }),
    '',
  ];
}

function postTrainingSection(s: Summary): string[] {
  const pt = s.postTraining;
  return [
    prose('postTrainingHeading'),
    '',
    prose('postTraining', {
      before: fmtE(pt.untrainedBefore),
      after: fmtE(pt.untrainedAfter),
      rise: fmtE(pt.rise),
      bayesRise: fmt(pt.bayesRise),
    }),
    '',
  ];
}

/** The narrow arms' table and how much PSM explains. */
function armsSection(results: RunResults, s: Summary): string[] {
  return [
    prose('armsHeading'),
    '',
    prose('armsHeader', { finetuneDomain: results.world.finetuneDomain }),
    rule(6),
    ...s.arms.map((a) =>
      row([
        a.arm,
        a.trainable,
        fmtE(a.offTarget),
        a.vsControl ? fmtE(a.vsControl) : '-',
        fmtE(a.target),
        fmt(a.bayesOffTarget),
      ]),
    ),
    '',
    prose('psmExplainsHeading'),
    '',
    prose('psmExplains', {
      r2: fmt(s.psmExplains.r2),
      slope: fmt(s.psmExplains.slope),
      points: s.psmExplains.points,
    }),
    '',
  ];
}

/** Monitoring and steering per trait, shift and persona space, the preventative trials and data screening. */
function insideTheModelSection(it: InterpretAggregate): string[] {
  const pct = (x: number) => (Number.isFinite(x) ? prose('shareOfSeeds', { share: fmtShare(x) }) : '-');
  const rows = it.monitoring.map((m) => {
    const st = it.steeringMonotonic.find((x) => x.trait === m.trait);
    return row([
      m.trait,
      fmtE(m.r),
      fmt(m.rRandom),
      fmt(m.pBadSd),
      st ? pct(st.share) : '-',
      st ? pct(st.shareCoherent) : '-',
      st ? pct(st.shareWithinNoise) : '-',
      st ? st.pGood.map((v) => fmt(v)).join(' / ') : '-',
    ]);
  });
  return [
    prose('insideHeading'),
    '',
    prose('insideIntro', { seeds: it.seeds }),
    '',
    prose('insideHeader'),
    rule(8),
    ...rows,
    '',
    prose('monotonicNote', { riseZ: RISE_Z }),
    '',
    prose('shiftAndSpace', {
      traitMean: fmtE(it.shiftRTraitMean),
      pooled: fmtE(it.shiftR),
      traitFinetunes: it.shiftWithTraitFinetunes
        ? prose('shiftWithTraitFinetunes', { traitMean: fmtE(it.shiftWithTraitFinetunes.traitMean) })
        : '',
      components: fmtE(it.componentsFor70),
      axisCos: fmtE(it.axisCosPC1),
      bestPC: it.axisBestPC
        ? prose('axisBestPC', { perSeed: it.axisBestPC.map((b) => `PC${b.pc} ${fmt(b.cos)}`).join(', ') })
        : '',
      inSpace: it.axisInSpace ? prose('axisInSpace', { share: fmtE(it.axisInSpace) }) : '',
      probeTV: fmtE(it.probeTV),
      probeTVPrior: fmtE(it.probeTVPrior),
    }),
    '',
    ...(it.preventative.length > 0 ? [...preventativeTable(it.preventative), ''] : []),
    ...(it.screening ? [...screeningLines(it.screening), ''] : []),
  ];
}

/** The report's table of preventative interventions during the cheat fine-tune, over seeds. */
export function preventativeTable(ps: readonly PreventativeAggregate[]): string[] {
  const axis = ps.some((p) => p.axis);
  return [
    prose('preventativeIntro'),
    '',
    prose('preventativeHeader', { axis: axis ? prose('preventativeAxisColumn') : '' }),
    rule(axis ? 6 : 5),
    ...ps.map((p) =>
      row([
        preventativeName(p.key),
        p.bySeed.map((b) => fmt(b.reduction)).join(' / '),
        fmtE(p.reduction),
        fmt(p.pooled),
        p.targetLearned ? 'yes' : 'no',
        ...(axis ? [p.axis ? `${fmt(p.axis.steered.mean)} (${fmt(p.axis.plain.mean)})` : '-'] : []),
      ]),
    ),
  ];
}

/** The report's lines on data screening: the per-trait AUCs, and the trial as a table with Bayes. */
export function screeningLines(sc: ScreeningAggregate): string[] {
  const auc = prose('screeningAUC', {
    perTrait: sc.aucByTrait.length
      ? prose('screeningAUCPerTrait', {
          aucs: sc.aucByTrait.map((a) => `${a.trait} ${fmtE(a.auc)}`).join(', '),
        })
      : '',
  });
  const t = sc.trial;
  if (!t) return [auc];
  const bayes = t.subsets.some((x) => x.bayes);
  return [
    prose('screeningTrial', {
      auc,
      pool: t.pool,
      perArm: t.pool / t.sources.length,
      vector: t.vector,
      count: t.count,
    }),
    '',
    prose('screeningHeader', { bayes: bayes ? prose('screeningBayesColumn') : '' }),
    rule(bayes ? 4 : 3),
    ...t.subsets.map((x) =>
      row([
        `${x.name} ${t.count}`,
        x.bySeed.map((v) => fmt(v, 3)).join(' / '),
        fmtE(x.offTargetChange),
        ...(bayes ? [x.bayes ? fmt(x.bayes.mean, 3) : '-'] : []),
      ]),
    ),
    '',
    prose('screeningOutcome', {
      worst: t.flaggedWorstSeeds,
      seeds: t.seeds,
      bayesR: t.bayesR !== null ? prose('screeningBayesR', { r: fmt(t.bayesR) }) : '',
      flagged: t.sources.map((x) => `${fmtShare(x.flaggedShare.mean)} ${x.source}`).join(', '),
      meanScores: t.sources.map((x) => `${x.source} ${fmt(x.meanScore.mean)}`).join(', '),
    }),
  ];
}

function figuresSection(figs: { id: string; caption: string }[]): string[] {
  return [
    prose('figuresHeading'),
    '',
    ...figs.flatMap((f) => [`![${f.id}](figures/${f.id}.png)`, '', f.caption, '']),
  ];
}

function perSeedSection(results: RunResults): string[] {
  return [
    prose('perSeedHeading'),
    '',
    ...results.seeds.map((sd) =>
      prose('perSeed', {
        variant: sd.variant,
        seed: sd.seed,
        steps: sd.pretrain.steps,
        tokens: sd.pretrain.tokens,
        seconds: fmt(sd.pretrain.seconds, 0),
        finalLoss: fmt(sd.pretrain.finalLoss, 3),
        valLoss: fmt(sd.pretrain.valLoss, 3),
        r: fmt(sd.personaCheck.meanCorrelation),
        notEmerged: sd.personaCheck.emerged ? '' : prose('perSeedNotEmerged'),
      }),
    ),
  ];
}

/** The alignment pre-training variant's arms beside the standard ones (nothing when it did not run). */
function alignmentSection(results: RunResults, s: Summary): string[] {
  if (!results.seeds.some((x) => x.variant === 'alignment')) return [];
  const a = summarize(results, 'alignment');
  return [
    '',
    prose('alignmentHeading'),
    '',
    prose('alignmentHeader'),
    rule(4),
    ...a.arms.map((arm) => {
      const std = s.arms.find((x) => x.arm === arm.arm && x.trainable === arm.trainable);
      return row([arm.arm, arm.trainable, std ? fmtE(std.offTarget) : '-', fmtE(arm.offTarget)]);
    }),
  ];
}
