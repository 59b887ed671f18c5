/**
 * Inside the model (issue 5): persona vectors, monitoring, steering, fine-tune shift prediction and data
 * screening, persona space and the assistant axis, and a linear probe of the archetype posterior. See
 * docs/interpret.md. `interpretRun` is the one-call entry point the `psm run` pipeline uses for one seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { atomicWriteJsonSync } from '../io/atomic-write.ts';
import { mean, variance } from '../measurement/stats.ts';
import type { ProgressFactory } from '../measurement/progress.ts';
import type { TrainableSpec } from '../training/trainable.ts';
import { batteryItems, narrowSet, type ChatExample, type NarrowArm, type World } from '../world/index.ts';
import { loadModelHandle, type ModelHandle } from './activations.ts';
import { sceneItems } from './contexts.ts';
import { greedyReplies, monitorItems, monitorTraits, type TraitMonitor } from './monitor.ts';
import { archetypeProbe, type Agreement, type ProbeResult } from './probe.ts';
import {
  cheatControlAUC,
  screeningPool,
  screeningTrial,
  SCREENING_REPLY_TOKENS,
  type ScreeningTrial,
} from './screen.ts';
import {
  fineTune,
  modelState,
  preventativeTrials,
  shiftPrediction,
  type PreventativeTrial,
  type ShiftPoint,
  type ShiftPrediction,
} from './shift.ts';
import {
  additiveIntervention,
  checkPreventativeTrait,
  commonLayer,
  preventativeItems,
  preventativeVector,
  ablationInterventions,
} from './prevent.ts';
import {
  checkAblationSubspace,
  DEFAULT_ABLATION_SUBSPACES,
  type AblationSubspace,
} from './ablation-subspaces.ts';
import {
  assistantDrift,
  axisThreshold,
  interpretArchetypeDocuments,
  personaSpace,
  placeAssistant,
  type AssistantPlacement,
  type DriftTrace,
} from './space.ts';
import {
  ablationEffect,
  byDomain,
  cappingHooks,
  DEFAULT_ALPHAS,
  doseResponse,
  pGoodOf,
  traceItems,
  type TracedItems,
  type DoseResponse,
  type ScoredItem,
} from './steer.ts';
import { betterSteering, cosine, personaVectors, saveVectorBundle, type PersonaVector } from './vectors.ts';

export * from './activations.ts';
export * from './contexts.ts';
export * from './scoring.ts';
export * from './vectors.ts';
export * from './steer.ts';
export * from './monitor.ts';
export * from './shift.ts';
export * from './screen.ts';
export * from './prevent.ts';
export * from './ablation-subspaces.ts';
export * from './space.ts';
export * from './probe.ts';

export const INTERPRET_VERSION = 18;

export interface InterpretRunOptions {
  world: World;
  progress?: ProgressFactory;
  log?: (line: string) => void;
  /** Fine-tuned models of this seed. */
  armDirs: { arm: string; trainable: string; dir: string }[];
  /** The post-trained model (vectors, monitoring, steering, persona space). */
  postDir: string;
  /** The pre-trained model (start of the Assistant's path; the probe). */
  baseDir: string;
  /** Held-out items per domain for monitoring and steering (default 48; the shift uses half per model). */
  itemsPerDomain?: number;
  /** Steering strengths in units of 0.1 x the layer's residual norm (default DEFAULT_ALPHAS: [-4, -2, -1, 0, 1, 2, 4]). */
  alphas?: number[];
  /** Where vectors.safetensors and interpret.json go (default <seedDir>/interpret; null: write nothing). */
  outDir?: string | null;
  /** The narrow fine-tune's domain (default the world's datasets.narrow.domain). */
  finetuneDomain?: string;
  /** Item seed (default 1). */
  seed?: number;
  /** Multi-turn drift traces (default true). */
  drift?: boolean;
  /** Vectors used downstream: per trait the method that steers more ('best', default), or one method. */
  vectorMethod?: 'best' | 'response' | 'contrastive';
  /** Examples per arm for data screening when there is no screening trial (cheat vs control; default 32; 0 skips). */
  screeningExamples?: number;
  /**
   * The screening trial (off by default: three more fine-tunes): a pool of `perArm` examples of each of `arms` ranked
   * on the off-target persona vector, and the post-trained model fine-tuned on the `count` flagged, a random `count`
   * and the `count` unflagged examples with the given recipe (screen.ts `screeningTrial`). Its pool also serves the
   * per-trait screening.
   */
  screeningTrial?: {
    arms: NarrowArm[];
    perArm: number;
    count: number;
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
    seed: number;
  };
  /**
   * Trait fine-tunes for the shift prediction (off by default: one more fine-tune per trait): the post-trained model
   * fine-tuned on the Assistant's bad behaviour in each trait's domain, as the reference work fine-tunes on a
   * trait-eliciting dataset per trait, so that every trait moves in some model and its r measures more than noise.
   * Reported beside the arms-only prediction.
   */
  traitFinetunes?: {
    examples: number;
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
  };
  /**
   * Preventative trials (off by default: each runs the fine-tune once more): the given examples (e.g. the cheat arm)
   * from the post-trained model, plainly and under each method: 'add' (preventative steering: a vector added at one
   * layer while training) and 'ablate' (concept ablation: a subspace projected out at every layer while training,
   * once per subspace in `ablate`, default DEFAULT_ABLATION_SUBSPACES). Default: both methods.
   */
  preventative?: {
    examples: ChatExample[];
    trainable: TrainableSpec;
    steps: number;
    batchSize: number;
    lr: number;
    seed: number;
    alpha?: number;
    trait?: string;
    methods?: PreventativeTrial['method'][];
    ablate?: AblationSubspace[];
  };
}

export interface InterpretSummary {
  version: number;
  seedDir: string;
  models: { base: string; post: string; arms: { arm: string; trainable: string; hash: string }[] };
  settings: { itemsPerDomain: number; alphas: number[]; alphaUnit: string; hookKind: string };
  /** Per trait: the method used (best steering effect unless vectorMethod says otherwise), its layer, the
   * steering effect per layer of both methods, and the cosine of the two methods' vectors at that layer. */
  vectors: {
    trait: string;
    method: string;
    bestLayer: number;
    steeringEffect: number[];
    steeringMonotone: boolean[];
    steeringEffectResponse: number[];
    steeringEffectContrastive: number[];
    residualNorm: number;
    methodCosine: number;
  }[];
  traitCosines: { traits: string[]; matrix: number[][] };
  /** Projection vs P(bad) on Assistant chats after good / bad / mixed earlier turns. */
  monitoring: {
    trait: string;
    method: string;
    layer: number;
    r: number;
    rRandom: number;
    n: number;
    pBadSd: number;
  }[];
  /** The same on the world's in-context persona probes (characters in stories and chats). */
  monitoringProbes: { trait: string; layer: number; r: number; rRandom: number; n: number; pBadSd: number }[];
  steering: (DoseResponse & { ablation: { base: number; ablated: number } })[];
  capping: {
    layer: number;
    threshold: number;
    badContext: { base: number; capped: number };
    normal: { base: number; capped: number };
    n: number;
  } | null;
  shift: {
    r: number;
    rExcluding: number | null;
    excluded: string[];
    perTrait: Record<string, number>;
    perTraitLogOdds: Record<string, number>;
    points: ShiftPoint[];
    /** The same over the arms and the trait fine-tunes (models `trait-ft/<trait>`); null when not run. */
    withTraitFinetunes: Omit<ShiftPrediction, 'excluded' | 'rExcluding'> | null;
  };
  /** Per trait vector: the AUC of the screening score for telling the pool's cheat from its control examples. */
  screening: { trait: string; auc: number; topShareCheat: number }[] | null;
  /** The screening trial (interpretation version 18 on): fine-tunes on the flagged, a random and the unflagged part. */
  screeningTrial?: ScreeningTrial | null;
  space: {
    layer: number;
    varianceExplained: number[];
    componentsFor70: number;
    axisCosPC1: number;
    /** The axis's cosine with every component, and the share of it inside the archetypes' span. */
    axisCosPCs: number[];
    axisInSpace: number;
    archetypes: { name: string; kind: string; n: number; pc1: number; pc2: number }[];
    assistant: (AssistantPlacement & { stage: string })[];
    drift: DriftTrace[] | null;
  };
  /** The probe's layer and fit, and its agreement with Bayes (spread in). */
  probe: Pick<ProbeResult, 'layer' | 'layers' | 'l2' | 'trainRows' | 'perLayer'> & Agreement;
  /** One trial per preventative method, sharing the plain fine-tune. */
  preventative: PreventativeTrial[] | null;
  seconds: Record<string, number>;
  figures: { doseResponse: TopLevelSpec; personaSpace: TopLevelSpec; shift: TopLevelSpec };
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/**
 * Everything issue 5 measures, for one seed of a run: persona vectors (post-trained model, layer chosen by
 * steering effect), monitoring correlation per trait, dose-response per trait, fine-tune shift prediction across
 * the arms, data screening, persona space with the Assistant's path (base -> post-trained -> each arm), the
 * assistant axis, capping, drift, and the archetype probe's agreement with Bayes. Returns a JSON-able summary
 * with three Vega-Lite figures, and writes vectors.safetensors and interpret.json to outDir.
 */
export async function interpretRun(seedDir: string, opts: InterpretRunOptions): Promise<InterpretSummary> {
  const world = opts.world;
  const N = opts.itemsPerDomain ?? 48;
  if (!Number.isInteger(N) || N < 4)
    throw new Error(`interpret: itemsPerDomain must be an integer >= 4, got ${N}`);
  const alphas = opts.alphas ?? DEFAULT_ALPHAS;
  const seed = opts.seed ?? 1;
  const outDir = opts.outDir === undefined ? path.join(seedDir, 'interpret') : opts.outDir;
  const log = opts.log ?? (() => {});
  const finetuneDomain = opts.finetuneDomain ?? world.datasets.narrow?.domain ?? '';
  const traits = world.domains.map((d) => d.name);
  // Bad preventative options fail before the long work, not after it.
  checkPreventativeTrait(traits, opts.preventative?.trait);
  for (const sub of opts.preventative?.ablate ?? []) checkAblationSubspace(sub);
  const phases = [
    'vectors',
    'monitor',
    'steer',
    'shift',
    'screen',
    'space',
    'probe',
    ...(opts.preventative ? ['preventative'] : []),
  ];
  const bar = opts.progress?.('interpret', phases.length, 'parts');
  const seconds: Record<string, number> = {};
  let done = 0;
  let t0 = Date.now();
  const lap = (name: string) => {
    seconds[name] = (Date.now() - t0) / 1000;
    t0 = Date.now();
    bar?.update(++done, { part: name });
    log(`interpret: ${name} ${seconds[name].toFixed(1)} s`);
  };

  const post = loadModelHandle(opts.postDir);
  const nLayers = post.model.config.nLayers;

  // 1. Persona vectors of both methods at every layer, each trait's layer chosen by steering effect on separate
  //    selection items (training-pool Assistant chats); with vectorMethod 'best' (default) each trait keeps the
  //    method that steers better: monotonically first, then more. 12 items at N = 48, over the battery's alpha grid.
  const selectItems = Math.max(8, Math.round(N / 4));
  const selectTraces = new Map<string, TracedItems>(); // both methods select on the same chats
  const response = personaVectors(post, world, {
    method: 'response',
    itemsPerTrait: Math.max(8, Math.round(N / 2)),
    selectItems,
    seed,
    selectTraces,
  });
  const contrastive = personaVectors(post, world, {
    method: 'contrastive',
    itemsPerTrait: Math.max(8, Math.round(N / 3)),
    selectItems,
    seed,
    selectTraces,
  });
  const methodChoice = opts.vectorMethod ?? 'best';
  const chosen = traits.map((t, i) => {
    const r = response.traits[i];
    const c = contrastive.traits[i];
    if (methodChoice === 'contrastive') return c;
    if (methodChoice === 'response') return r;
    return betterSteering(r, c);
  });
  const vecs: PersonaVector[] = chosen.map((tv) => tv.byLayer[tv.bestLayer]);
  if (outDir) {
    fs.mkdirSync(outDir, { recursive: true });
    saveVectorBundle(path.join(outDir, 'vectors.safetensors'), response);
    saveVectorBundle(path.join(outDir, 'vectors-contrastive.safetensors'), contrastive);
  }
  const vectorSummary = chosen.map((tv, i) => ({
    trait: tv.trait,
    method: tv.method,
    bestLayer: tv.bestLayer,
    steeringEffect: tv.steeringEffect,
    steeringMonotone: tv.steeringMonotone,
    steeringEffectResponse: response.traits[i].steeringEffect,
    steeringEffectContrastive: contrastive.traits[i].steeringEffect,
    residualNorm: vecs[i].residualNorm,
    methodCosine: cosine(
      response.traits[i].byLayer[tv.bestLayer],
      contrastive.traits[i].byLayer[tv.bestLayer],
    ),
  }));
  const layer = commonLayer(
    chosen.map((t) => t.bestLayer),
    nLayers,
  );
  /** A trait's chosen-method vector at another layer. */
  const atLayer = (trait: string, l: number) => chosen.find((c) => c.trait === trait)!.byLayer[l];
  lap('vectors');

  // 2. Monitoring on in-context persona probes.
  // The spread of P(bad) says how much there is to monitor: a trait the model never varies on gives a noisy r.
  const brief = ({ trait, layer: l, r, rRandom, n, points }: TraitMonitor) => ({
    trait,
    layer: l,
    r,
    rRandom,
    n,
    pBadSd: Math.sqrt(variance(points.map((p) => p.pBad))),
  });
  // Each trait is read with the vector (method and layer) whose projection tracks P(bad) best on training-pool chats,
  // a validation set disjoint from the held-out monitoring items. The layer chosen for steering (where a push moves
  // behaviour most) can be one where the context's persona is not yet represented at the last prompt token.
  const validation = monitorItems(world, Math.max(4, Math.round(N / 2)), 40 + seed, 'assistant', 'train');
  // Both extraction methods compete here too: the vector that steers best need not be the one that reads best
  // (in one seed the response vector won the steering choice for power at layer 0 and monitored at r 0.63).
  const monitorVecs = traits.map((t, i) => {
    const candidates = [response, contrastive].flatMap((b) => b.traits[i].byLayer);
    const rs = monitorTraits(post, new Map([[t, validation.get(t)!]]), candidates, {
      randomDirections: 0,
    }).map((m) => m.r);
    const best = rs.reduce((bi, r, j) => (r > rs[bi] || Number.isNaN(rs[bi]) ? j : bi), 0);
    return candidates[best];
  });
  const monitoring = monitorTraits(post, monitorItems(world, N, 20 + seed, 'assistant'), monitorVecs).map(
    (m, i) => ({ ...brief(m), method: monitorVecs[i].method }),
  );
  const monitoringProbes = monitorTraits(
    post,
    monitorItems(world, Math.max(4, Math.round(N / 2)), 30 + seed, 'probes'),
    monitorVecs,
  ).map(brief);
  lap('monitor');

  // 3. Dose-response of the Assistant's trait battery (held-out chats) under steering, and ablation.
  const battery = byDomain(
    batteryItems(world, { seed: 100 + seed, batteryPerDomain: N, batteryFormats: ['chat'] }),
  );
  const steering = vecs.map((v) => {
    const items = battery.get(v.trait)!;
    const dr = doseResponse(post, items, v, alphas, { trace: traceItems(post, items) });
    const zero = dr.alphas.indexOf(0);
    const ab = ablationEffect(post, items, v, zero >= 0 ? { base: dr.pGood[zero] } : {});
    return { ...dr, ablation: { base: ab.base, ablated: ab.ablated } };
  });
  lap('steer');

  // 4. Fine-tune shift prediction across the arms (post-trained vectors on every model). The shift is a projection of
  //    the last prompt token, the monitoring readout, so it is read at each trait's validated monitoring layer; half
  //    the items per domain (a quarter gave expression shifts of +-0.005 that item noise swamped on floor traits).
  const shiftItems = byDomain(
    batteryItems(world, {
      seed: 200 + seed,
      batteryPerDomain: Math.max(4, Math.round(N / 2)),
      batteryFormats: ['chat'],
    }),
  );
  const before = modelState(post, shiftItems, monitorVecs);
  const armHashes: { arm: string; trainable: string; hash: string }[] = [];
  const placements: { label: string; handle: ModelHandle }[] = [];
  const afters = opts.armDirs.map((a) => {
    const h = loadModelHandle(a.dir);
    armHashes.push({ arm: a.arm, trainable: a.trainable, hash: h.hash });
    placements.push({ label: `${a.arm}/${a.trainable}`, handle: h });
    return { label: `${a.arm}/${a.trainable}`, state: modelState(h, shiftItems, monitorVecs) };
  });
  const armsShift = shiftPrediction(before, afters, finetuneDomain ? [finetuneDomain] : []);
  let withTraitFinetunes: InterpretSummary['shift']['withTraitFinetunes'] = null;
  if (opts.traitFinetunes) {
    const tf = opts.traitFinetunes;
    const traitModels = traits.map((t, i) => {
      const examples = narrowSet(world, 'cheat', { seed: 900 + seed, count: tf.examples, domain: t });
      const { handle } = fineTune(loadModelHandle(opts.postDir), examples, { ...tf, seed: seed + i });
      return { label: `trait-ft/${t}`, state: modelState(handle, shiftItems, monitorVecs) };
    });
    const { points, r, perTrait, perTraitLogOdds } = shiftPrediction(before, [...afters, ...traitModels]);
    withTraitFinetunes = { points, r, perTrait, perTraitLogOdds };
  }
  const shift = { ...armsShift, withTraitFinetunes };
  lap('shift');

  // 5. Data screening: a pool of narrow-arm examples (drawn apart from the arms' sets) ranked by projection difference.
  //    Per trait vector, how well the ranking tells cheat from correct-code examples (when the pool has both); with
  //    the trial, whether the examples it flags on the off-target persona vector cause the package deal (screen.ts).
  const nScreen = opts.screeningExamples ?? 32;
  let screening: InterpretSummary['screening'] = null;
  let screeningTrialResult: ScreeningTrial | null = null;
  if (nScreen > 0 && world.datasets.narrow && finetuneDomain) {
    const st = opts.screeningTrial;
    const pool = screeningPool(world, {
      arms: st?.arms ?? ['cheat', 'control'],
      perArm: st?.perArm ?? nScreen,
      seed: 300 + seed,
      domain: finetuneDomain,
    });
    const baseResponses = greedyReplies(
      post,
      pool.map((e) => e.prompt),
      SCREENING_REPLY_TOKENS,
    );
    screening = cheatControlAUC(post, pool, vecs, baseResponses);
    if (st) {
      // The off-target persona vector at the layer those traits are monitored at, kept whole (prevent.ts).
      const { vector } = preventativeVector({
        traits,
        finetuneDomain,
        monitorLayers: monitorVecs.map((v) => v.layer),
        nLayers,
        atLayer,
        whole: true,
      });
      screeningTrialResult = screeningTrial(
        () => loadModelHandle(opts.postDir),
        pool,
        vector,
        preventativeItems(world, N, seed),
        finetuneDomain,
        { ...st, baseResponses },
      );
    }
  }
  lap('screen');

  // 6. Persona space, the Assistant's path, the axis, capping and drift.
  const space = personaSpace(post, world, layer, { docs: interpretArchetypeDocuments(world, N, seed) });
  const base = loadModelHandle(opts.baseDir);
  const assistant: (AssistantPlacement & { stage: string })[] = [
    { stage: 'base', ...placeAssistant(space, base, world, 'base') },
    { stage: 'post-trained', ...placeAssistant(space, post, world, 'post-trained') },
    ...placements.map((p) => ({ stage: p.label, ...placeAssistant(space, p.handle, world, p.label) })),
  ];
  let capping: InterpretSummary['capping'] = null;
  {
    // Threshold: 25th percentile of the Assistant's token-level projections on the axis in ordinary chats.
    const threshold = axisThreshold(post, world, space.axis, layer, 0.25, 500 + seed);
    const hooks = cappingHooks(post, space.axis, layer, threshold);
    const per = Math.max(4, Math.round(N / 6));
    const bad: ScoredItem[] = traits.flatMap((d, i) =>
      sceneItems(world, d, {
        n: per,
        seed: 600 + seed,
        subjects: ['assistant'],
        pool: 'heldout',
        label: 'cap-bad',
        earlier: { behaviour: 'bad', count: 2, domain: traits[(i + 1) % traits.length] },
      }),
    );
    const ok: ScoredItem[] = traits.flatMap((d) => (battery.get(d) ?? []).slice(0, per));
    capping = {
      layer,
      threshold,
      badContext: { base: mean(pGoodOf(post, bad)), capped: mean(pGoodOf(post, bad, hooks, 'capping')) },
      normal: { base: mean(pGoodOf(post, ok)), capped: mean(pGoodOf(post, ok, hooks, 'capping')) },
      n: bad.length,
    };
  }
  const drift =
    opts.drift === false
      ? null
      : assistantDrift(post, world, space, { turns: 5, perDomain: 2, seed: 700 + seed, maxNewTokens: 16 });
  lap('space');

  // 7. The archetype-posterior probe (pre-trained model: in-context inference is a pre-training skill).
  const pr = archetypeProbe(base, world, {
    // About the probe's default of 2000 persona chains at the default 48 items per domain (six rows each).
    size: Math.max(120, 42 * N),
    seed: 800 + seed,
    evalPerCell: Math.max(2, Math.round(N / 12)),
  });
  lap('probe');

  // 8. Optional: preventative trials (steering and concept ablation).
  let preventative: PreventativeTrial[] | null = null;
  if (opts.preventative) {
    const pv = opts.preventative;
    const methods = pv.methods ?? ['add', 'ablate'];
    const interventions = methods.flatMap((m) => {
      if (m === 'ablate')
        return ablationInterventions(pv.ablate ?? DEFAULT_ABLATION_SUBSPACES, {
          traits,
          finetuneDomain,
          nLayers,
          vectorsAt: (t, l) => [response, contrastive].map((b) => b.traits[traits.indexOf(t)].byLayer[l]),
          seed: pv.seed,
          world,
          post: () => post,
          itemsPerDomain: N,
          itemSeed: seed,
        });
      const { vector, layer: preventLayer } = preventativeVector({
        traits,
        finetuneDomain,
        monitorLayers: monitorVecs.map((v) => v.layer),
        nLayers,
        atLayer,
        trait: pv.trait,
      });
      return [additiveIntervention(vector, preventLayer, pv.alpha ?? 4)];
    });
    preventative = preventativeTrials(
      () => loadModelHandle(opts.postDir),
      pv.examples,
      interventions,
      preventativeItems(world, N, seed),
      finetuneDomain,
      // Where each trial's Assistant ends up in the persona space of step 6 (the post-trained one at 1).
      { ...pv, axisPosition: (h) => placeAssistant(space, h, world, 'trial').axisPosition },
    );
    lap('preventative');
  }
  bar?.stop();

  const summary: InterpretSummary = {
    version: INTERPRET_VERSION,
    seedDir,
    models: { base: base.hash, post: post.hash, arms: armHashes },
    settings: {
      itemsPerDomain: N,
      alphas: [...alphas].sort((a, b) => a - b),
      alphaUnit: '0.1 x mean residual norm at the layer',
      hookKind: response.hookKind,
    },
    vectors: vectorSummary,
    traitCosines: (() => {
      const vs = traits.map((t) => atLayer(t, layer));
      return { traits, matrix: vs.map((a) => vs.map((b) => cosine(a, b))) };
    })(),
    monitoring,
    monitoringProbes,
    steering,
    capping,
    shift,
    screening,
    screeningTrial: screeningTrialResult,
    space: {
      layer,
      varianceExplained: space.pca.explained,
      componentsFor70: space.componentsFor70,
      axisCosPC1: space.axisCosPC1,
      axisCosPCs: space.axisCosPCs,
      axisInSpace: space.axisInSpace,
      archetypes: space.archetypes.map((a) => {
        const c = space.pca.components;
        const v = a.vector.map((x, j) => x - space.center[j]);
        const dotc = (u: Float32Array | undefined) => (u ? u.reduce((s, x, j) => s + x * v[j], 0) : 0);
        return { name: a.name, kind: a.kind, n: a.n, pc1: dotc(c[0]), pc2: dotc(c[1]) };
      }),
      assistant,
      drift,
    },
    probe: {
      layer: pr.layer,
      layers: pr.layers,
      l2: pr.l2,
      trainRows: pr.trainRows,
      ...pr.agreement,
      perLayer: pr.perLayer,
    },
    preventative,
    seconds,
    figures: {
      doseResponse: {} as TopLevelSpec,
      personaSpace: {} as TopLevelSpec,
      shift: {} as TopLevelSpec,
    },
  };
  summary.figures = interpretFigures(summary);
  if (outDir) atomicWriteJsonSync(path.join(outDir, 'interpret.json'), summary);
  return summary;
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** The three figures of the report section, as Vega-Lite specs. */
export function interpretFigures(s: InterpretSummary): InterpretSummary['figures'] {
  const dose = s.steering.flatMap((d) =>
    d.alphas.map((alpha, i) => ({
      trait: d.trait,
      alpha,
      pGood: d.pGood[i],
      layer: d.layers[0],
      coherent: d.coherent[i] ? 'yes' : 'no',
    })),
  );
  const doseResponse = {
    $schema: SCHEMA,
    title: 'Steering dose-response: P(good) of the Assistant vs alpha (persona vector added at its layer)',
    width: 420,
    height: 260,
    data: { values: dose },
    encoding: {
      x: { field: 'alpha', type: 'quantitative', title: `alpha (${s.settings.alphaUnit})` },
      y: { field: 'pGood', type: 'quantitative', title: 'P(good)', scale: { domain: [0, 1] } },
      color: { field: 'trait', type: 'nominal' },
    },
    layer: [
      { mark: 'line' },
      {
        mark: { type: 'point', filled: true, size: 50 },
        encoding: {
          shape: { field: 'coherent', type: 'nominal', title: 'coherent' },
          tooltip: [
            { field: 'trait' },
            { field: 'alpha' },
            { field: 'pGood', format: '.3f' },
            { field: 'layer' },
            { field: 'coherent' },
          ],
        },
      },
    ],
  } as TopLevelSpec;

  const arche = s.space.archetypes.map((a) => ({
    label: a.name,
    group: `${a.kind} archetype`,
    pc1: a.pc1,
    pc2: a.pc2,
  }));
  const stagePoint = (p: AssistantPlacement & { stage: string }) => ({
    label: p.stage,
    group: 'Assistant',
    pc1: p.coords[0] ?? 0,
    pc2: p.coords[1] ?? 0,
  });
  const base = s.space.assistant.find((a) => a.stage === 'base');
  const post = s.space.assistant.find((a) => a.stage === 'post-trained');
  const arms = s.space.assistant.filter((a) => a.stage !== 'base' && a.stage !== 'post-trained');
  const path: { branch: string; order: number; pc1: number; pc2: number }[] = [];
  if (base && post) {
    for (const arm of arms.length ? arms : [post]) {
      const pts = arm === post ? [base, post] : [base, post, arm];
      pts.forEach((p, order) =>
        path.push({ branch: arm.stage, order, pc1: p.coords[0] ?? 0, pc2: p.coords[1] ?? 0 }),
      );
    }
  }
  const ve = s.space.varianceExplained;
  const personaSpaceSpec = {
    $schema: SCHEMA,
    title: `Persona space (layer ${s.space.layer}): PC1 ${fmt(100 * (ve[0] ?? NaN), 0)}%, PC2 ${fmt(100 * (ve[1] ?? NaN), 0)}% of variance; cos(assistant axis, PC1) = ${fmt(s.space.axisCosPC1)}`,
    width: 420,
    height: 320,
    layer: [
      {
        data: { values: path },
        mark: { type: 'line', strokeDash: [4, 3], color: 'gray' },
        encoding: {
          x: { field: 'pc1', type: 'quantitative', title: 'PC1' },
          y: { field: 'pc2', type: 'quantitative', title: 'PC2' },
          detail: { field: 'branch' },
          order: { field: 'order' },
        },
      },
      {
        data: { values: [...arche, ...s.space.assistant.map(stagePoint)] },
        layer: [
          {
            mark: { type: 'point', filled: true, size: 70 },
            encoding: {
              x: { field: 'pc1', type: 'quantitative' },
              y: { field: 'pc2', type: 'quantitative' },
              color: { field: 'group', type: 'nominal', title: null },
              shape: { field: 'group', type: 'nominal', title: null },
            },
          },
          {
            mark: { type: 'text', dx: 6, dy: -6, align: 'left', fontSize: 9 },
            encoding: {
              x: { field: 'pc1', type: 'quantitative' },
              y: { field: 'pc2', type: 'quantitative' },
              text: { field: 'label' },
            },
          },
        ],
      },
    ],
  } as TopLevelSpec;

  const shiftSpec = {
    $schema: SCHEMA,
    title: `Fine-tune shift: projection change vs trait-expression change (r = ${fmt(s.shift.r)}${s.shift.rExcluding !== null ? `; without ${s.shift.excluded.join(', ')}: ${fmt(s.shift.rExcluding)}` : ''})`,
    width: 420,
    height: 300,
    data: {
      values: (s.shift.withTraitFinetunes?.points ?? s.shift.points).map((p) => ({
        ...p,
        set: p.model.startsWith('trait-ft/') ? 'trait fine-tune' : 'arm',
      })),
    },
    layer: [
      {
        mark: { type: 'point', filled: true, size: 60 },
        encoding: {
          x: {
            field: 'projectionShift',
            type: 'quantitative',
            title: 'shift of mean projection on the trait vector (last prompt token)',
          },
          y: { field: 'expressionShift', type: 'quantitative', title: 'change of P(bad)' },
          color: { field: 'trait', type: 'nominal' },
          shape: { field: 'set', type: 'nominal', title: 'model' },
          tooltip: [
            { field: 'model' },
            { field: 'trait' },
            { field: 'projectionShift', format: '.3f' },
            { field: 'expressionShift', format: '.3f' },
          ],
        },
      },
      {
        transform: [{ regression: 'expressionShift', on: 'projectionShift' }],
        mark: { type: 'line', color: 'black', opacity: 0.5 },
        encoding: {
          x: { field: 'projectionShift', type: 'quantitative' },
          y: { field: 'expressionShift', type: 'quantitative' },
        },
      },
    ],
  } as TopLevelSpec;
  return { doseResponse, personaSpace: personaSpaceSpec, shift: shiftSpec };
}
