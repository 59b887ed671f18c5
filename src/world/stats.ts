// Corpus statistics: what is actually in the generated data, next to what the world says should be there.
//
// The "expected" numbers are exact consequences of the world file (kind shares x archetype weights, trait-flip
// noise); the "observed" ones are counted over the generated characters. Their agreement is a check on the
// generator, and the trait correlations are the package deals the network can learn from this data.

import type { Behaviour, World } from './schema.ts';
import { compileWorld, documentTokenCount, type WorldDocument } from './generator.ts';
import { worldVocabulary } from './schema.ts';

export interface CorpusStats {
  world: string;
  documents: number;
  /** Tokens including one separator per document. */
  tokens: number;
  /** False when counted with approxTokenCount (no tokenizer). */
  tokensExact: boolean;
  meanTokensPerDocument: number;
  maxTokensPerDocument: number;
  split: { train: { documents: number; tokens: number }; val: { documents: number; tokens: number } };
  kinds: Record<string, { documents: number; share: number; expectedShare: number }>;
  anonymousAssistant: { documents: number; share: number; expectedShare: number };
  archetypes: Record<string, { kind: string; documents: number; share: number; expectedShare: number }>;
  /** P(trait good) over generated characters, by domain. */
  traits: Record<string, { goodShare: number; expectedGoodShare: number }>;
  /** Pearson (phi) correlations of the characters' binary trait values; rows/columns in `domains` order. */
  correlations: { domains: string[]; observed: number[][]; expected: number[][] };
  scenes: {
    total: number;
    perDocument: number;
    chatShare: number;
    byDomain: Record<string, { scenes: number; goodShare: number; instructed: number; chat: number }>;
  };
  /** Distinct words in the world's texts (names excluded) and the name pools. */
  vocabulary: { words: number; trainNames: number; heldoutNames: number };
}

/** Exact prior quantities of a world: archetype shares, P(trait good) and trait correlations. */
export function expectedWorldStats(world: World): {
  archetypeShare: Record<string, number>;
  traitGood: Record<string, number>;
  correlations: number[][];
} {
  const cw = compileWorld(world);
  const kinds = world.documents.kinds;
  const totals = { human: 0, ai: 0 };
  for (const a of world.archetypes) totals[a.kind] += a.weight;
  const share = world.archetypes.map((a) =>
    totals[a.kind] > 0 ? (kinds[a.kind].share * a.weight) / totals[a.kind] : 0,
  );
  const T = world.domains.length;
  const p = new Array<number>(T).fill(0);
  const pp = Array.from({ length: T }, () => new Array<number>(T).fill(0));
  world.archetypes.forEach((_, a) => {
    const q = cw.traitGood[a];
    for (let i = 0; i < T; i++) {
      p[i] += share[a] * q[i];
      // Traits are independent given the archetype, so E[x_i x_j | a] = q_i q_j (and q_i on the diagonal).
      for (let j = 0; j < T; j++) pp[i][j] += share[a] * (i === j ? q[i] : q[i] * q[j]);
    }
  });
  return {
    archetypeShare: Object.fromEntries(world.archetypes.map((a, i) => [a.name, share[i]])),
    traitGood: Object.fromEntries(world.domains.map((d, i) => [d.name, p[i]])),
    correlations: pp.map((row, i) => row.map((e, j) => phi(e, p[i], p[j]))),
  };
}

/** The largest |correlation| between two different traits of a correlation matrix (0 with fewer than two). */
export function largestCorrelation(m: readonly (readonly number[])[]): number {
  let max = 0;
  m.forEach((row, i) => row.forEach((r, j) => i !== j && (max = Math.max(max, Math.abs(r)))));
  return max;
}

function phi(eij: number, pi: number, pj: number): number {
  const v = pi * (1 - pi) * pj * (1 - pj);
  return v > 0 ? (eij - pi * pj) / Math.sqrt(v) : 0;
}

/** Accumulates statistics over a stream of documents. */
export class StatsBuilder {
  private readonly world: World;
  private readonly domains: string[];
  private docs = 0;
  private tokens = 0;
  private maxTokens = 0;
  private exact = true;
  private split = { train: { documents: 0, tokens: 0 }, val: { documents: 0, tokens: 0 } };
  private kinds = new Map<string, number>();
  private anonymous = 0;
  private archetypes = new Map<string, number>();
  private good: number[];
  private both: number[][];
  private scenes = 0;
  private chat = 0;
  private byDomain: Map<string, { scenes: number; good: number; instructed: number; chat: number }>;

  constructor(world: World) {
    this.world = world;
    this.domains = world.domains.map((d) => d.name);
    const T = this.domains.length;
    this.good = new Array<number>(T).fill(0);
    this.both = Array.from({ length: T }, () => new Array<number>(T).fill(0));
    this.byDomain = new Map(this.domains.map((d) => [d, { scenes: 0, good: 0, instructed: 0, chat: 0 }]));
  }

  add(doc: WorldDocument): void {
    const n = documentTokenCount(doc);
    if (!doc.tokens) this.exact = false;
    this.docs++;
    this.tokens += n;
    this.maxTokens = Math.max(this.maxTokens, n);
    this.split[doc.split].documents++;
    this.split[doc.split].tokens += n;
    this.kinds.set(doc.kind, (this.kinds.get(doc.kind) ?? 0) + 1);
    if (doc.anonymous) this.anonymous++;
    this.archetypes.set(doc.archetype, (this.archetypes.get(doc.archetype) ?? 0) + 1);
    const T = this.domains.length;
    const x: Behaviour[] = this.domains.map((d) => doc.traits[d]);
    for (let i = 0; i < T; i++) {
      if (x[i] !== 'good') continue;
      this.good[i]++;
      for (let j = 0; j < T; j++) if (x[j] === 'good') this.both[i][j]++;
    }
    for (const s of doc.scenes) {
      this.scenes++;
      const b = this.byDomain.get(s.domain);
      if (!b) continue;
      b.scenes++;
      if (s.behaviour === 'good') b.good++;
      if (s.instructed !== null) b.instructed++;
      if (s.format === 'chat') {
        b.chat++;
        this.chat++;
      }
    }
  }

  finish(): CorpusStats {
    const world = this.world;
    const expected = expectedWorldStats(world);
    const N = Math.max(1, this.docs);
    const T = this.domains.length;
    const p = this.good.map((g) => g / N);
    const observed = this.both.map((row, i) =>
      row.map((b, j) => (i === j ? (p[i] > 0 && p[i] < 1 ? 1 : 0) : phi(b / N, p[i], p[j]))),
    );
    const vocab = worldVocabulary(world);
    const kindShare = { human: world.documents.kinds.human.share, ai: world.documents.kinds.ai.share };
    return {
      world: world.name,
      documents: this.docs,
      tokens: this.tokens,
      tokensExact: this.docs > 0 ? this.exact : false,
      meanTokensPerDocument: this.tokens / N,
      maxTokensPerDocument: this.maxTokens,
      split: this.split,
      kinds: Object.fromEntries(
        (['human', 'ai'] as const).map((k) => [
          k,
          {
            documents: this.kinds.get(k) ?? 0,
            share: (this.kinds.get(k) ?? 0) / N,
            expectedShare: kindShare[k],
          },
        ]),
      ),
      anonymousAssistant: {
        documents: this.anonymous,
        share: this.anonymous / N,
        expectedShare: kindShare.ai * world.documents.kinds.ai.anonymousShare,
      },
      archetypes: Object.fromEntries(
        world.archetypes.map((a) => [
          a.name,
          {
            kind: a.kind,
            documents: this.archetypes.get(a.name) ?? 0,
            share: (this.archetypes.get(a.name) ?? 0) / N,
            expectedShare: expected.archetypeShare[a.name],
          },
        ]),
      ),
      traits: Object.fromEntries(
        this.domains.map((d, i) => [d, { goodShare: p[i], expectedGoodShare: expected.traitGood[d] }]),
      ),
      correlations: {
        domains: this.domains.slice(),
        observed: observed.slice(0, T),
        expected: expected.correlations,
      },
      scenes: {
        total: this.scenes,
        perDocument: this.scenes / N,
        chatShare: this.scenes > 0 ? this.chat / this.scenes : 0,
        byDomain: Object.fromEntries(
          [...this.byDomain].map(([d, b]) => [
            d,
            {
              scenes: b.scenes,
              goodShare: b.scenes > 0 ? b.good / b.scenes : 0,
              instructed: b.instructed,
              chat: b.chat,
            },
          ]),
        ),
      },
      vocabulary: {
        words: vocab.length,
        trainNames: world.names.train.length,
        heldoutNames: world.names.heldout.length,
      },
    };
  }
}

/** Human-readable summary of corpus statistics (the `psm world stats` output). */
export function formatStats(s: CorpusStats): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const f2 = (x: number) => x.toFixed(2);
  const lines: string[] = [];
  const tok = s.tokensExact ? 'tokens' : 'tokens (approx.: words, punctuation, newlines)';
  lines.push(
    `world ${s.world}: ${s.documents.toLocaleString('en-US')} documents, ${s.tokens.toLocaleString('en-US')} ${tok}`,
  );
  lines.push(
    `  mean ${s.meanTokensPerDocument.toFixed(1)} tokens per document (max ${s.maxTokensPerDocument}), ${s.scenes.perDocument.toFixed(2)} scenes per document, ${pct(s.scenes.chatShare)} of scenes in chat format`,
  );
  lines.push(
    `  split: train ${s.split.train.documents} documents / ${s.split.train.tokens} tokens, val ${s.split.val.documents} / ${s.split.val.tokens}`,
  );
  lines.push(
    `  vocabulary: ${s.vocabulary.words} distinct words; names: ${s.vocabulary.trainNames} training, ${s.vocabulary.heldoutNames} held out`,
  );
  lines.push('');
  lines.push('kinds                    share   expected');
  for (const [k, v] of Object.entries(s.kinds))
    lines.push(`  ${k.padEnd(22)} ${pct(v.share).padStart(6)}   ${pct(v.expectedShare).padStart(6)}`);
  lines.push(
    `  ${'(anonymous Assistant)'.padEnd(22)} ${pct(s.anonymousAssistant.share).padStart(6)}   ${pct(s.anonymousAssistant.expectedShare).padStart(6)}`,
  );
  lines.push('');
  lines.push('archetypes               share   expected');
  for (const [k, v] of Object.entries(s.archetypes)) {
    lines.push(
      `  ${`${k} (${v.kind})`.padEnd(22)} ${pct(v.share).padStart(6)}   ${pct(v.expectedShare).padStart(6)}`,
    );
  }
  lines.push('');
  lines.push('traits: P(good) of characters (expected) | scenes: count, good share, instructed, chat');
  for (const [d, v] of Object.entries(s.traits)) {
    const b = s.scenes.byDomain[d];
    lines.push(
      `  ${d.padEnd(14)} ${f2(v.goodShare)} (${f2(v.expectedGoodShare)}) | ${String(b.scenes).padStart(8)} ${f2(b.goodShare)} ${String(b.instructed).padStart(7)} ${String(b.chat).padStart(7)}`,
    );
  }
  lines.push('');
  lines.push(
    'trait correlations of the generated characters, observed (expected): the package deals in the data',
  );
  const ds = s.correlations.domains;
  const w = 14;
  lines.push(`  ${''.padEnd(w)}${ds.map((d) => d.slice(0, 12).padStart(w)).join('')}`);
  ds.forEach((d, i) => {
    const cells = ds.map((_, j) =>
      `${s.correlations.observed[i][j].toFixed(2)} (${s.correlations.expected[i][j].toFixed(2)})`.padStart(w),
    );
    lines.push(`  ${d.slice(0, 12).padEnd(w)}${cells.join('')}`);
  });
  return lines.join('\n');
}
