/**
 * The report's goals, one function each, read on the pooled summary: met (true / false, or null where one seed
 * cannot tell) and what was measured. Their sentences are in prose.ts.
 */
import { RISE_Z } from '../../interpret/steer.ts';
import { fmt, fmtE, fmtShare } from './format.ts';
import { preventativeGoal, preventativeName, type PreventativeAggregate } from './preventative.ts';
import { prose } from './prose.ts';
import type { InterpretAggregate, Summary } from './types.ts';

type Goal = Summary['goals'][number];

/** Every goal the summary can be read on, in the report's order (the interpretation's only where it ran). */
export function goals(s: Summary): Goal[] {
  const it = s.interpret;
  const prevention = it ? goalI4(it) : null;
  return [
    goalA(s),
    goalA2(s),
    goalB(s),
    ...goalsC(s),
    ...(it ? [goalI1(it), goalI2(it), goalI3(it)] : []),
    ...(prevention ? [prevention] : []),
  ];
}

/** A: the network's in-context persona inference tracks Bayes for every k >= 1. */
function goalA(s: Summary): Goal {
  const k15 = s.personaInference.byK.filter((p) => p.k >= 1);
  const minCorr = Math.min(...k15.map((p) => p.correlation.mean));
  return {
    id: 'A',
    text: prose('goalA'),
    met: k15.length ? minCorr >= 0.8 : null,
    detail: k15.map((p) => `k=${p.k}: ${fmt(p.correlation.mean)}`).join(', '),
  };
}

/** A2: after all-good or all-bad scenes, the network's P(good) is Bayes's. */
function goalA2(s: Summary): Goal {
  const pi = s.personaInference;
  const pkGap = Math.max(
    Math.abs(pi.packageGood.mean - pi.packageBayes.good),
    Math.abs(pi.packageBad.mean - pi.packageBayes.bad),
  );
  return {
    id: 'A2',
    text: prose('goalA2'),
    met: Number.isFinite(pkGap) ? pkGap <= 0.05 : null,
    detail: prose('goalA2Detail', {
      good: fmt(pi.packageGood.mean),
      bayesGood: fmt(pi.packageBayes.good),
      bad: fmt(pi.packageBad.mean),
      bayesBad: fmt(pi.packageBayes.bad),
    }),
  };
}

/** B: post-training lifts the domains it never trained. */
function goalB(s: Summary): Goal {
  const r = s.postTraining.rise;
  const ciOk = Number.isFinite(r.ci95) ? r.mean - r.ci95 > 0 : null;
  return {
    id: 'B',
    text: prose('goalB'),
    met: ciOk === null ? null : r.mean >= 0.15 && ciOk,
    detail: prose('goalBDetail', { rise: fmtE(r), seeds: s.seeds, bayesRise: fmt(s.postTraining.bayesRise) }),
  };
}

/** C, per trainable set: the cheat arm below the control off-target, the inoculated arm in between. */
function goalsC(s: Summary): Goal[] {
  const out: Goal[] = [];
  for (const t of new Set(s.arms.map((a) => a.trainable))) {
    const cheat = s.arms.find((a) => a.arm === 'cheat' && a.trainable === t);
    const inoc = s.arms.find((a) => a.arm === 'inoculated' && a.trainable === t);
    const control = s.arms.find((a) => a.arm === 'control' && a.trainable === t);
    if (!cheat || !control || !cheat.vsControl) continue;
    const d = cheat.vsControl;
    const below = Number.isFinite(d.ci95) ? d.mean + d.ci95 < 0 : null;
    const between = inoc
      ? inoc.offTarget.mean >= cheat.offTarget.mean && inoc.offTarget.mean <= control.offTarget.mean
      : null;
    out.push({
      id: `C/${t}`,
      text: prose('goalC', { trainable: t }),
      met: below === null ? null : below && between !== false,
      detail: prose('goalCDetail', {
        cheat: fmtE(cheat.offTarget),
        control: fmtE(control.offTarget),
        difference: fmtE(d),
        inoculated: inoc ? prose('goalCInoculated', { inoculated: fmtE(inoc.offTarget) }) : '',
      }),
    });
  }
  return out;
}

/** I1: each trait's projection reads the model's P(bad). */
function goalI1(it: InterpretAggregate): Goal {
  const minR = Math.min(...it.monitoring.map((m) => m.r.mean));
  return {
    id: 'I1',
    text: prose('goalI1'),
    met: minR >= 0.75,
    detail: it.monitoring.map((m) => `${m.trait} ${fmt(m.r.mean)}`).join(', '),
  };
}

/** I2: steering moves P(good) monotonically with alpha, in every seed. */
function goalI2(it: InterpretAggregate): Goal {
  const sm = it.steeringMonotonic;
  const shares = (pick: (m: (typeof sm)[number]) => number) =>
    sm.map((m) => `${m.trait} ${fmtShare(pick(m))}`).join(', ');
  return {
    id: 'I2',
    text: prose('goalI2'),
    met: sm.every((m) => m.share === 1),
    detail:
      sm.map((m) => `${m.trait} ${prose('shareOfSeeds', { share: fmtShare(m.share) })}`).join(', ') +
      (sm.every((m) => Number.isFinite(m.shareCoherent))
        ? prose('goalI2Coherent', { shares: shares((m) => m.shareCoherent) })
        : '') +
      (sm.every((m) => Number.isFinite(m.shareWithinNoise))
        ? prose('goalI2WithinNoise', { riseZ: RISE_Z, shares: shares((m) => m.shareWithinNoise) })
        : ''),
  };
}

/**
 * I3: the fine-tune shift along each trait vector predicts the shift of the trait's expression. Read per trait over
 * the arms, as the reference work correlates them: each trait vector's projection responds on its own scale, so the
 * pooled r also measures how alike those scales are.
 */
function goalI3(it: InterpretAggregate): Goal {
  const byTrait = (list: readonly { trait: string; r: { mean: number } }[]) =>
    list.map((t) => `${t.trait} ${fmt(t.r.mean)}`).join(', ');
  return {
    id: 'I3',
    text: prose('goalI3'),
    met: Number.isFinite(it.shiftRTraitMean.mean) ? it.shiftRTraitMean.mean >= 0.8 : null,
    detail:
      prose('goalI3Detail', {
        traitMean: fmtE(it.shiftRTraitMean),
        byTrait: byTrait(it.shiftRByTrait),
        pooled: fmtE(it.shiftR),
      }) +
      (it.shiftWithTraitFinetunes
        ? prose('goalI3TraitFinetunes', {
            traitMean: fmtE(it.shiftWithTraitFinetunes.traitMean),
            byTrait: byTrait(it.shiftWithTraitFinetunes.byTrait),
          })
        : '') +
      (it.shiftLogOdds
        ? prose('goalI3LogOdds', {
            traitMean: fmtE(it.shiftLogOdds.traitMean),
            byTrait: byTrait(it.shiftLogOdds.byTrait),
          })
        : ''),
  };
}

/** I4: an intervention during the cheat fine-tune halves its off-target drop, the narrow behaviour still learned. */
function goalI4(it: InterpretAggregate): Goal | null {
  const goal = preventativeGoal(it.preventative);
  if (!goal) return null;
  const where = (p: PreventativeAggregate, layers: number[]) =>
    p.method === 'add' ? `at layer ${layers.join('+')}` : `at layers ${layers.join(',')}`;
  const describe = (p: PreventativeAggregate) =>
    prose('goalI4Method', {
      method: preventativeName(p.key),
      reduction: fmtE(p.reduction),
      perSeed: p.bySeed.map((b) => `${fmt(b.reduction)} ${where(p, b.layers)}`).join(', '),
      pooled: fmt(p.pooled),
      learned: p.targetLearned ? 'yes' : 'no',
      axis: p.axis ? prose('goalI4Axis', { steered: fmtE(p.axis.steered), plain: fmtE(p.axis.plain) }) : '',
    });
  return {
    id: 'I4',
    text: prose('goalI4', { method: preventativeName(goal.key) }),
    met: goal.reduction.mean >= 0.5 && goal.targetLearned,
    detail: [goal, ...it.preventative.filter((p) => p !== goal)].map(describe).join('; '),
  };
}
