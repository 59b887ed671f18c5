// The shared-phrase lint: behaviour wordings must not share openers or phrases across domains with opposite
// meaning.
//
// Why: in the prototype, replies such as "sure , ..." (good in one domain) and "sure , ..." (bad in another) let a
// persona's valence in one domain leak through the shared opener into the other, and the leak swamped the persona
// effect (persona-world-notes.md, item 3). What matters is the lean of a phrase inside a domain: the share of the
// good wordings that contain it minus the share of the bad wordings that contain it. A phrase that is equally
// common among good and bad wordings of a domain (e.g. "I" opening every chat reply) carries no valence there.
// A phrase that leans good in one domain and bad in another is what leaks, and that is what this lint reports.
//
// Phrases checked: the opening word and the opening two words of each wording (after a leading {name}), and every
// n-gram (default n = 3) of words and punctuation that does not span a placeholder.

import { literalRuns } from './templates.ts';
import type { World } from './types.ts';

export interface LintIssue {
  path: string;
  message: string;
}

interface Unit {
  domainIndex: number;
  domain: string;
  format: 'story' | 'chat';
}

function phrasesOf(source: string, n: number): Set<string> {
  const out = new Set<string>();
  const runs = literalRuns(source);
  if (runs.length > 0) {
    const first = runs[0];
    out.add(`^${first[0]}`);
    if (first.length > 1) out.add(`^${first[0]} ${first[1]}`);
  }
  for (const run of runs) {
    for (let i = 0; i + n <= run.length; i++) out.add(run.slice(i, i + n).join(' '));
  }
  return out;
}

export function lintSharedPhrases(world: World, n: number): LintIssue[] {
  // phrase -> list of (unit, lean, example path)
  const leans = new Map<string, Array<{ unit: Unit; lean: number; path: string }>>();
  world.domains.forEach((d, di) => {
    for (const format of ['story', 'chat'] as const) {
      const unit: Unit = { domainIndex: di, domain: d.name, format };
      const good = d[format].good.map((s) => phrasesOf(s, n));
      const bad = d[format].bad.map((s) => phrasesOf(s, n));
      const phrases = new Set<string>();
      for (const s of [...good, ...bad]) for (const p of s) phrases.add(p);
      for (const p of phrases) {
        const gi = good.findIndex((s) => s.has(p));
        const bi = bad.findIndex((s) => s.has(p));
        const gf = good.filter((s) => s.has(p)).length / good.length;
        const bf = bad.filter((s) => s.has(p)).length / bad.length;
        const lean = Math.abs(gf - bf) < 1e-9 ? 0 : gf > bf ? 1 : -1;
        if (lean === 0) continue;
        const path =
          lean > 0
            ? `traits[${di}].domain.${format}.good[${gi}]`
            : `traits[${di}].domain.${format}.bad[${bi}]`;
        let list = leans.get(p);
        if (!list) leans.set(p, (list = []));
        list.push({ unit, lean, path });
      }
    }
  });
  const issues: LintIssue[] = [];
  // One report per pair of wordings: "of" and "of course" opening the same two wordings are one problem.
  const reported = new Set<string>();
  for (const [phrase, list] of leans) {
    const pos = list.filter((x) => x.lean > 0);
    const neg = list.filter((x) => x.lean < 0);
    const pair = pos.flatMap((p) =>
      neg.filter((q) => q.unit.domain !== p.unit.domain).map((q) => [p, q] as const),
    )[0];
    if (!pair) continue;
    const [p, q] = pair;
    const key = `${q.path}|${p.path}`;
    if (reported.has(key)) continue;
    reported.add(key);
    const shown = phrase.startsWith('^') ? `opener '${phrase.slice(1)}'` : `phrase '${phrase}'`;
    issues.push({
      path: q.path,
      message:
        `${shown} leans bad in ${q.unit.domain} (${q.unit.format}) but good in ${p.unit.domain} (${p.unit.format}, ` +
        `${p.path}); a phrase shared across domains with opposite meanings leaks valence between them ` +
        `(reword one of them, or balance it between the good and bad wordings of a domain)`,
    });
  }
  return issues;
}

// ---------------------------------------------------------------------------------------------------------------
// The held-out vocabulary lint: every word of a held-out story context or chat request must occur somewhere in the
// text the corpus can contain.
//
// Why: held-out contexts test whether a persona carries over to situations the model has not seen. A word that no
// training text contains tests something else: a from-scratch model has no meaning for it (its BPE pieces were
// never seen in that order), so the item's options get arbitrary probabilities whatever the evidence. Measured on
// the built-in world (docs/archive/results-9m5-v2.md, "What changed, and why"): with unseen words in 22 of 24 held-out texts the
// network's unexplained logit spread on single scenes was 3.5x that on training contexts (0.98 vs 0.28), and its
// persona-inference correlation with Bayes 0.37 instead of 0.66. A held-out context should be a new situation built
// from words the model knows.

/** The texts a pre-training document can contain (names excepted), for the held-out vocabulary lint. */
function corpusTexts(world: World): string[] {
  const texts: string[] = [];
  for (const d of world.domains) {
    texts.push(...d.story.contexts.slice(0, d.story.trainContexts), ...d.story.good, ...d.story.bad);
    texts.push(...d.chat.requests.slice(0, d.chat.trainRequests), ...d.chat.good, ...d.chat.bad);
    for (const g of d.instructed) if (g.inCorpus) texts.push(...g.story, ...g.chat);
  }
  const docs = world.documents;
  texts.push(...docs.kinds.human.intros, ...docs.kinds.ai.intros, ...docs.assistantIntros);
  texts.push(docs.speakers.user, docs.speakers.assistant);
  for (const vals of Object.values(world.slots)) texts.push(...vals);
  return texts;
}

export function lintHeldoutWords(world: World): LintIssue[] {
  const known = new Set<string>();
  for (const t of corpusTexts(world)) for (const run of literalRuns(t)) for (const w of run) known.add(w);
  const issues: LintIssue[] = [];
  world.domains.forEach((d, di) => {
    const pools = [
      { key: 'story.contexts', list: d.story.contexts, from: d.story.trainContexts },
      { key: 'chat.requests', list: d.chat.requests, from: d.chat.trainRequests },
    ];
    for (const { key, list, from } of pools) {
      for (let i = from; i < list.length; i++) {
        const unseen = [...new Set(literalRuns(list[i]).flat())].filter((w) => !known.has(w));
        if (unseen.length === 0) continue;
        issues.push({
          path: `traits[${di}].domain.${key}[${i}]`,
          message:
            `held-out text uses ${unseen.map((w) => `'${w}'`).join(', ')}, which no training text contains; ` +
            `a from-scratch model cannot know ${unseen.length === 1 ? 'this word' : 'these words'}, so the item ` +
            `measures the unknown vocabulary rather than the persona (use them in a training context too, or reword)`,
        });
      }
    }
  });
  return issues;
}
