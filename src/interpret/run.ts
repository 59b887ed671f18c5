/**
 * `interpretRun`: the whole interpretation of one seed of a run, as the `psm run` pipeline and `psm interpret` call
 * it. Each phase is one function in phases/ (in the order below, each reading what the earlier ones found); this file
 * resolves the options, times the phases and assembles the summary written as interpret.json.
 */
import * as path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { atomicWriteJsonSync } from '../io/atomic-write.ts';
import { checkAblationSubspace } from './ablation-subspaces.ts';
import { loadModelHandle } from './activations.ts';
import { interpretFigures } from './figures.ts';
import type { InterpretContext } from './phases/context.ts';
import { monitoringPhase, type MonitoringPhase } from './phases/monitoring.ts';
import { preventativePhase } from './phases/preventative.ts';
import { probePhase } from './phases/probe.ts';
import { screeningPhase, type ScreeningPhase } from './phases/screening.ts';
import { shiftPhase, type ShiftPhase } from './phases/shift.ts';
import { spacePhase, type SpacePhase } from './phases/space.ts';
import { steeringPhase, type SteeringPhase } from './phases/steering.ts';
import { vectorsPhase, type VectorsPhase } from './phases/vectors.ts';
import { checkPreventativeTrait } from './prevent.ts';
import { spaceNumbers } from './space.ts';
import { DEFAULT_ALPHAS } from './steer.ts';
import { INTERPRET_VERSION, type InterpretRunOptions, type InterpretSummary } from './types.ts';
import { cosine } from './vectors.ts';

/**
 * Everything the interpretation measures, for one seed of a run: persona vectors (post-trained model, layer chosen by
 * steering effect), monitoring correlation per trait, dose-response per trait, fine-tune shift prediction across
 * the arms, data screening, persona space with the Assistant's path (base -> post-trained -> each arm), the
 * assistant axis, capping, drift, the archetype probe's agreement with Bayes, and optionally preventative trials.
 * Returns a JSON-able summary with three Vega-Lite figures, and writes vectors.safetensors and interpret.json to
 * outDir.
 */
export async function interpretRun(seedDir: string, opts: InterpretRunOptions): Promise<InterpretSummary> {
  const ctx = interpretContext(opts);
  const outDir = opts.outDir === undefined ? path.join(seedDir, 'interpret') : opts.outDir;
  const clock = phaseClock(opts, !!opts.preventative);
  const vectors = clock.time('vectors', () => vectorsPhase(ctx, outDir));
  const monitoring = clock.time('monitor', () => monitoringPhase(ctx, vectors));
  const steering = clock.time('steer', () => steeringPhase(ctx, vectors));
  const shift = clock.time('shift', () => shiftPhase(ctx, monitoring));
  const screening = clock.time('screen', () => screeningPhase(ctx, vectors, monitoring));
  const space = clock.time('space', () => spacePhase(ctx, vectors, steering, shift));
  const probe = clock.time('probe', () => probePhase(ctx, space.base));
  const preventative = opts.preventative
    ? clock.time('preventative', () => preventativePhase(ctx, vectors, monitoring, space))
    : null;
  clock.stop();
  const summary = interpretSummary(seedDir, ctx, {
    vectors,
    monitoring,
    steering,
    shift,
    screening,
    space,
    probe,
    preventative,
    seconds: clock.seconds,
  });
  if (outDir) atomicWriteJsonSync(path.join(outDir, 'interpret.json'), summary);
  return summary;
}

/** The options with their defaults, checked before the long work (not after it), and the post-trained model. */
function interpretContext(opts: InterpretRunOptions): InterpretContext {
  const world = opts.world;
  const itemsPerDomain = opts.itemsPerDomain ?? 48;
  if (!Number.isInteger(itemsPerDomain) || itemsPerDomain < 4)
    throw new Error(`interpret: itemsPerDomain must be an integer >= 4, got ${itemsPerDomain}`);
  const traits = world.domains.map((d) => d.name);
  checkPreventativeTrait(traits, opts.preventative?.trait);
  for (const sub of opts.preventative?.ablate ?? []) checkAblationSubspace(sub);
  const post = loadModelHandle(opts.postDir);
  return {
    opts,
    world,
    itemsPerDomain,
    alphas: opts.alphas ?? DEFAULT_ALPHAS,
    itemSeed: opts.seed ?? 1,
    finetuneDomain: opts.finetuneDomain ?? world.datasets.narrow?.domain ?? '',
    traits,
    post,
    nLayers: post.model.config.nLayers,
  };
}

/** Times each phase into `seconds`, moves the progress bar one part per phase and logs the phase's time. */
function phaseClock(opts: InterpretRunOptions, preventative: boolean) {
  const phases = ['vectors', 'monitor', 'steer', 'shift', 'screen', 'space', 'probe'];
  if (preventative) phases.push('preventative');
  const bar = opts.progress?.('interpret', phases.length, 'parts');
  const log = opts.log ?? (() => {});
  const seconds: Record<string, number> = {};
  let done = 0;
  return {
    seconds,
    time<T>(name: string, phase: () => T): T {
      const t0 = Date.now();
      const out = phase();
      seconds[name] = (Date.now() - t0) / 1000;
      bar?.update(++done, { part: name });
      log(`interpret: ${name} ${seconds[name].toFixed(1)} s`);
      return out;
    },
    stop: () => bar?.stop(),
  };
}

/** interpret.json: what the phases found, in the summary's fixed order, with its figures. */
function interpretSummary(
  seedDir: string,
  ctx: InterpretContext,
  found: {
    vectors: VectorsPhase;
    monitoring: MonitoringPhase;
    steering: SteeringPhase;
    shift: ShiftPhase;
    screening: ScreeningPhase;
    space: SpacePhase;
    probe: InterpretSummary['probe'];
    preventative: InterpretSummary['preventative'];
    seconds: Record<string, number>;
  },
): InterpretSummary {
  const { vectors, space: sp } = found;
  const { traits } = ctx;
  const layer = vectors.layer;
  const space = sp.space;
  const summary: InterpretSummary = {
    version: INTERPRET_VERSION,
    seedDir,
    models: { base: sp.base.hash, post: ctx.post.hash, arms: found.shift.armHashes },
    settings: {
      itemsPerDomain: ctx.itemsPerDomain,
      alphas: [...ctx.alphas].sort((a, b) => a - b),
      alphaUnit: '0.1 x mean residual norm at the layer',
      hookKind: vectors.response.hookKind,
    },
    vectors: vectors.summary,
    traitCosines: (() => {
      const vs = traits.map((t) => vectors.atLayer(t, layer));
      return { traits, matrix: vs.map((a) => vs.map((b) => cosine(a, b))) };
    })(),
    monitoring: found.monitoring.monitoring,
    monitoringProbes: found.monitoring.monitoringProbes,
    steering: found.steering.steering,
    capping: sp.capping,
    shift: found.shift.shift,
    screening: found.screening.screening,
    screeningTrial: found.screening.screeningTrial,
    space: {
      layer,
      ...spaceNumbers(space),
      archetypes: space.archetypes.map((a) => {
        const c = space.pca.components;
        const v = a.vector.map((x, j) => x - space.center[j]);
        const dotc = (u: Float32Array | undefined) => (u ? u.reduce((s, x, j) => s + x * v[j], 0) : 0);
        return { name: a.name, kind: a.kind, n: a.n, pc1: dotc(c[0]), pc2: dotc(c[1]) };
      }),
      assistant: sp.assistant,
      drift: sp.drift,
    },
    probe: found.probe,
    preventative: found.preventative,
    seconds: found.seconds,
    figures: {
      doseResponse: {} as TopLevelSpec,
      personaSpace: {} as TopLevelSpec,
      shift: {} as TopLevelSpec,
    },
  };
  summary.figures = interpretFigures(summary);
  return summary;
}
