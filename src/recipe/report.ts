/** What a recipe run finds (summary.json) and its Markdown rendering (summary.md). */
import type { LayerStats, Thresholds } from './extract.ts';
import type { PreventionSettings } from './prevent.ts';
import type { Sampling } from './work.ts';

export const SUMMARY_FORMAT = 'psm-persona-recipe';

/** The trait's default system prompt (possibly none), a pair's positive or negative end, or an extra one. */
export type PromptKind = 'default' | 'positive' | 'negative' | 'extra';

export interface MonitorPrompt {
  kind: PromptKind;
  /** Index among the prompts of its kind (the instruction pair for positive / negative). */
  index: number;
  system: string | null;
  /** Mean trait score of its replies, and how many were scored. */
  meanScore: number;
  n: number;
  /** Mean projection of the last prompt token on the unit vector at the chosen layer. */
  projection: number;
}

export interface RecipeSummary {
  format: typeof SUMMARY_FORMAT;
  version: 1;
  trait: { name: string; description: string; source: string; hash: string };
  model: { dir: string; hash: string; chat: string; nLayers: number; dim: number };
  judge: string;
  settings: {
    instructions: number;
    questions: number;
    evalQuestions: number;
    samples: number;
    sampling: Sampling;
    thresholds: Thresholds;
    layers: number[];
  };
  extraction: {
    pairs: number;
    kept: number;
    dropped: { unscored: number; empty: number; positiveLow: number; negativeHigh: number };
    positiveMean: number;
    negativeMean: number;
    byInstruction: {
      index: number;
      pairs: number;
      kept: number;
      positiveMean: number;
      negativeMean: number;
    }[];
    perLayer: LayerStats[];
  };
  layer: { chosen: number; rule: 'given' | 'monitoring' | 'separation'; candidates: number[] };
  monitoring: {
    prompts: MonitorPrompt[];
    /** Per layer: r over replies (projection of the prompt's last token vs the reply's score) and over prompts (means). */
    perLayer: { layer: number; rReplies: number; rPrompts: number; n: number }[];
  } | null;
  steering: {
    layer: number;
    rows: { alpha: number; trait: number; coherence: number; n: number; unscored: number }[];
  } | null;
  prevention: {
    examples: number;
    data: string;
    layer: number;
    settings: PreventionSettings;
    arms: {
      arm: 'before' | 'plain' | 'steered';
      model: string;
      finalLoss: number | null;
      trait: number;
      coherence: number;
      n: number;
    }[];
    /** Share of the plain fine-tune's rise of the trait score that preventative steering kept away. */
    reduction: number;
  } | null;
  files: { vectors: string; serveVectors: string; responses: string; scores: string };
  seconds: number;
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

function table(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

function short(s: string | null, n = 60): string {
  if (s === null) return '(none)';
  const one = s.replace(/\s+/g, ' ').trim();
  return (one.length > n ? `${one.slice(0, n - 1)}…` : one).replace(/\|/g, '\\|');
}

export function renderSummaryMarkdown(s: RecipeSummary): string {
  const e = s.extraction;
  const out: string[] = [
    `# Persona vector of "${s.trait.name}"`,
    '',
    `${s.trait.description}`,
    '',
    `Model \`${s.model.dir}\` (${s.model.hash.slice(0, 12)}, ${s.model.nLayers} layers, chat format ${s.model.chat}); judge \`${s.judge}\`; trait from ${s.trait.source}. The reference recipe of Chen et al. 2025 (docs/interpret.md).`,
    '',
    '## Extraction',
    '',
    `${e.pairs} pairs (${s.settings.instructions} system-prompt pairs x ${s.settings.questions} questions x ${s.settings.samples} samples); kept ${e.kept} (positive reply > ${s.settings.thresholds.positive}, negative reply < ${s.settings.thresholds.negative}). Dropped: ${e.dropped.positiveLow} positive too low, ${e.dropped.negativeHigh} negative too high, ${e.dropped.unscored} unscored, ${e.dropped.empty} empty. Mean trait score: positive ${f(e.positiveMean)}, negative ${f(e.negativeMean)}.`,
    '',
    table(
      ['pair', 'pairs', 'kept', 'positive mean', 'negative mean'],
      e.byInstruction.map((b) => [b.index, b.pairs, b.kept, f(b.positiveMean), f(b.negativeMean)]),
    ),
    '',
    table(
      ['layer', 'vector norm', 'residual norm', 'separation (d)'],
      e.perLayer.map((l) => [l.layer, f(l.norm, 3), f(l.residualNorm, 3), f(l.separation, 2)]),
    ),
    '',
    `Chosen layer: **${s.layer.chosen}** (${s.layer.rule === 'given' ? 'given' : s.layer.rule === 'monitoring' ? 'highest monitoring r among the candidates' : 'largest separation among the candidates'}; candidates ${s.layer.candidates.join(', ')}).`,
  ];
  if (s.monitoring) {
    out.push(
      '',
      '## Monitoring',
      '',
      "Projection of the prompt's last token on the vector against the judged trait score of the reply, over the held-out questions under every system prompt.",
      '',
      table(
        ['layer', 'r (replies)', 'r (prompt means)', 'n'],
        s.monitoring.perLayer.map((l) => [l.layer, f(l.rReplies, 3), f(l.rPrompts, 3), l.n]),
      ),
      '',
      table(
        ['system prompt', 'kind', 'mean score', 'n', `projection (layer ${s.layer.chosen})`],
        s.monitoring.prompts.map((p) => [
          short(p.system),
          `${p.kind} ${p.index}`,
          f(p.meanScore),
          p.n,
          f(p.projection, 3),
        ]),
      ),
    );
  }
  if (s.steering) {
    out.push(
      '',
      '## Steering',
      '',
      `The vector added at layer ${s.steering.layer} (alpha in units of 0.1 x the layer's residual norm, as \`psm steer\`), held-out questions under the default system prompt.`,
      '',
      table(
        ['alpha', 'trait score', 'coherence', 'n', 'unscored'],
        s.steering.rows.map((r) => [r.alpha, f(r.trait), f(r.coherence), r.n, r.unscored]),
      ),
    );
  }
  if (s.prevention) {
    const p = s.prevention;
    out.push(
      '',
      '## Preventative steering',
      '',
      `Fine-tuned (${p.settings.trainable}, ${p.settings.steps} steps of ${p.settings.batchSize}, lr ${p.settings.lr}) on ${p.examples} chats (${p.data}), plainly and with the vector added at layer ${p.layer} with alpha ${p.settings.alpha} while training; held-out questions under the default system prompt.`,
      '',
      table(
        ['model', 'trait score', 'coherence', 'n', 'final loss'],
        p.arms.map((a) => [
          a.arm,
          f(a.trait),
          f(a.coherence),
          a.n,
          a.finalLoss === null ? '-' : f(a.finalLoss, 3),
        ]),
      ),
      '',
      `Preventative steering kept ${f(100 * p.reduction, 0)}% of the plain fine-tune's rise of the trait score away.`,
    );
  }
  out.push(
    '',
    '## Files',
    '',
    `- \`${s.files.vectors}\`: the vectors at every layer (for \`psm steer\`, \`psm monitor\`, \`psm finetune --steer\`, \`psm vectors export\`)`,
    `- \`${s.files.serveVectors}\`: the vector at each layer as a named vector for \`psm serve --vectors\` ("${s.trait.name}" at the chosen layer, "${s.trait.name}.N" at layer N; alpha as \`psm steer\`'s)`,
    `- \`${s.files.responses}\`, \`${s.files.scores}\`: every reply and judge score (the cache a rerun resumes from)`,
    '',
  );
  return out.join('\n');
}
