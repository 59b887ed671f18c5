/**
 * The models the lab talks to and what it reads from them: every finished model of the runs (base, post-trained,
 * each fine-tuned arm), folders imported on the command line, and OpenAI-compatible endpoints (through the
 * providers). For a run's models it also provides the seed's steering vocabulary and the persona meter.
 *
 * Steering has psm serve's meaning: the chat request carries psm serve's `psm` field, whose named vectors are the
 * seed's trait vectors (each at the layer the interpretation chose for steering) and its assistant axis, each scaled
 * to one alpha unit (0.1 x the layer's mean residual norm, the report's unit), so `alpha` means what it means in the
 * report's dose-response; vectors.json gives psm serve the same names (`psm serve --vectors`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { noGrad } from '../autograd/tensor.ts';
import {
  ALPHA_UNIT,
  layerHook,
  probePredict,
  readSeedInterpretation,
  steeringVector,
  unitVector,
  type ModelHandle,
  type PersonaVector,
} from '../interpret/index.ts';
import { chatTemplateForFolder } from '../interop/chat-template-source.ts';
import { loadModelTokenizer } from '../interop/hf-tokenizer.ts';
import { HookSet, recordHook } from '../model/hooks.ts';
import { loadModelFolder } from '../model/weights.ts';
import type { Provider } from '../providers/types.ts';
import { LocalEngine, type NamedVector, type VectorLibrary } from '../serve/index.ts';
import { configureBackend } from '../tensor/backend.ts';
import { archetypePrior } from '../world/index.ts';
import type { Analysis, ProbeFit } from './analysis.ts';
import type { MeterReading, ModelInfo, SteeringInfo } from './api-types.ts';
import { LabError, notFound } from './errors.ts';
import { runSettings } from './run-settings.ts';
import type { RunsFolder } from './runs.ts';

/** The name of the assistant axis among a seed's steering vectors. */
export const AXIS_VECTOR = 'assistant-axis';

export interface LocalModel {
  dir: string;
  engine: LocalEngine;
  handle: ModelHandle;
}

export type ResolvedModel =
  | {
      kind: 'local';
      info: ModelInfo;
      dir: string;
      run: { name: string; dir: string; seedDir: string } | null;
    }
  | { kind: 'endpoint'; info: ModelInfo; provider: Provider };

/** One trait's monitoring readout: the unit vector at the layer the interpretation validated for monitoring. */
interface MeterVector {
  trait: string;
  layer: number;
  hook: string;
  unit: Float32Array;
  /** One alpha unit at that layer, so a projection reads in the sliders' unit. */
  scale: number;
}

/** What a seed's interpretation gives the chat: steering vectors, meter vectors, and the persona space's layer. */
export interface SeedSteering {
  runDir: string;
  seedDir: string;
  traits: string[];
  steer: Map<string, NamedVector & { layer: number }>;
  meter: MeterVector[];
  /** The persona space's layer and one alpha unit there (for the axis). */
  spaceLayer: number | null;
  spaceUnit: number;
}

export interface LabModelsOptions {
  runs: RunsFolder;
  analysis: Analysis;
  imported?: { name: string; dir: string }[];
  endpoints?: { name: string; provider: Provider }[];
  maxTokens: number;
  maxConcurrency: number;
  maxQueue: number;
  /** Loaded local models kept in memory (least recently used dropped first). */
  cacheSize?: number;
}

function stamp(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

const STAGE = /^(pretrain|posttrain|ft-[a-z0-9]+-[a-z0-9]+)$/;

export class LabModels {
  private readonly loaded = new Map<string, LocalModel>();
  private readonly steering = new Map<string, { stamp: string; value: SeedSteering }>();

  constructor(private readonly opts: LabModelsOptions) {}

  /** Models of a run (every seed), then the imported folders and the endpoints. */
  list(run?: string): ModelInfo[] {
    const fromRun = run ? this.opts.runs.seeds(run).flatMap((s) => s.models) : [];
    return [
      ...fromRun,
      ...(this.opts.imported ?? []).map((m): ModelInfo => ({
        id: `model:${m.name}`,
        label: `${m.name} (imported)`,
        kind: 'imported',
        meter: false,
        steerable: true,
        seedDir: null,
      })),
      ...(this.opts.endpoints ?? []).map((e): ModelInfo => ({
        id: `provider:${e.name}`,
        label: `${e.name} (endpoint)`,
        kind: 'endpoint',
        meter: false,
        steerable: false,
        seedDir: null,
      })),
    ];
  }

  /** A model by its id (ModelInfo.id), checked against what exists. */
  resolve(id: string): ResolvedModel {
    const [kind, rest] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)];
    if (kind === 'run') {
      const parts = rest.split('/');
      if (parts.length !== 3 || !STAGE.test(parts[2]))
        throw new LabError(
          400,
          'invalid_model',
          `"${id}" is not a model id (run:<run>/<seed folder>/<stage>)`,
          'model',
        );
      const [run, seedName, stage] = parts;
      const seedDir = this.opts.runs.seedDir(run, seedName);
      const info = this.opts.runs
        .seeds(run)
        .find((s) => s.dir === seedName)
        ?.models.find((m) => m.id === id);
      if (!info) throw notFound(`run "${run}" has no finished model "${seedName}/${stage}"`);
      return {
        kind: 'local',
        info,
        dir: path.join(seedDir, stage, 'model'),
        run: { name: run, dir: path.dirname(seedDir), seedDir },
      };
    }
    if (kind === 'model') {
      const m = (this.opts.imported ?? []).find((x) => x.name === rest);
      if (!m) throw notFound(`no imported model "${rest}" (start psm lab with --model DIR)`);
      return { kind: 'local', info: this.list().find((x) => x.id === id)!, dir: m.dir, run: null };
    }
    if (kind === 'provider') {
      const e = (this.opts.endpoints ?? []).find((x) => x.name === rest);
      if (!e) throw notFound(`no endpoint "${rest}" (start psm lab with --provider SPEC)`);
      return { kind: 'endpoint', info: this.list().find((x) => x.id === id)!, provider: e.provider };
    }
    throw new LabError(
      400,
      'invalid_model',
      `"${id}" is not a model id (run:…, model:… or provider:…)`,
      'model',
    );
  }

  /** A local model loaded once (engine for generation, handle for scoring, sharing the same weights). */
  local(dir: string): LocalModel {
    const key = `${dir}|${stamp(path.join(dir, 'model.safetensors'))}`;
    const hit = this.loaded.get(key);
    if (hit) {
      this.loaded.delete(key);
      this.loaded.set(key, hit);
      return hit;
    }
    configureBackend();
    let model;
    let tokenizer;
    let chat;
    try {
      model = loadModelFolder(dir);
      tokenizer = loadModelTokenizer(dir, model.config.vocabSize);
      chat = chatTemplateForFolder(dir);
    } catch (e) {
      throw new LabError(
        409,
        'model_unreadable',
        `the model in ${path.basename(path.dirname(dir))} cannot be loaded: ${(e as Error).message}`,
      );
    }
    const engine = new LocalEngine(model, tokenizer, {
      id: path.basename(path.dirname(dir)),
      maxTokens: this.opts.maxTokens,
      maxConcurrency: this.opts.maxConcurrency,
      maxQueue: this.opts.maxQueue,
      chatTemplate: chat,
    });
    const loaded: LocalModel = {
      dir,
      engine,
      handle: {
        model,
        tokenizer,
        hash: stamp(path.join(dir, 'model.safetensors')),
        source: dir,
        ...(chat.kind === 'psm' ? {} : { chat }),
      },
    };
    this.loaded.set(key, loaded);
    const max = this.opts.cacheSize ?? 6;
    while (this.loaded.size > max) this.loaded.delete(this.loaded.keys().next().value!);
    return loaded;
  }

  /** The seed's steering and meter vectors (from its interpretation), cached while interpret.json is unchanged. */
  seedSteering(runDir: string, seedDir: string): SeedSteering {
    const file = path.join(seedDir, 'interpret', 'interpret.json');
    const key = stamp(file);
    const hit = this.steering.get(seedDir);
    if (hit && hit.stamp === key) return hit.value;
    if (key === 'missing')
      throw new LabError(
        409,
        'not_interpreted',
        `${path.basename(seedDir)} has no interpretation yet: steering and the meter need its persona vectors`,
      );
    const { world } = runSettings(runDir);
    const si = readSeedInterpretation(seedDir, world);
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      vectors: { trait: string; bestLayer: number }[];
      space?: { layer: number };
    };
    const steer = new Map<string, NamedVector & { layer: number }>();
    for (const t of si.traits) {
      const layer = raw.vectors.find((v) => v.trait === t)?.bestLayer ?? 0;
      steer.set(t, { vector: steeringVector(si.atLayer(t, layer), 1), hook: layerHook(layer), layer });
    }
    const meter = si.traits.map((t, i): MeterVector => {
      const layer = si.monitorLayers[i] >= 0 ? si.monitorLayers[i] : (steer.get(t)?.layer ?? 0);
      const v: PersonaVector = si.atLayer(t, layer);
      return {
        trait: t,
        layer,
        hook: layerHook(layer),
        unit: unitVector(v.vector, t),
        scale: ALPHA_UNIT * v.residualNorm,
      };
    });
    const spaceLayer = raw.space?.layer ?? null;
    const norms = spaceLayer === null ? [] : si.traits.map((t) => si.atLayer(t, spaceLayer).residualNorm);
    const value: SeedSteering = {
      runDir,
      seedDir,
      traits: si.traits,
      steer,
      meter,
      spaceLayer,
      spaceUnit: norms.length ? (ALPHA_UNIT * norms.reduce((a, b) => a + b, 0)) / norms.length : NaN,
    };
    this.steering.set(seedDir, { stamp: key, value });
    return value;
  }

  /** The named vectors of a seed (psm serve's VectorLibrary): its traits, and the assistant axis once computed. */
  library(s: SeedSteering): VectorLibrary {
    const lib = new Map<string, NamedVector>(s.steer);
    const axis = this.opts.analysis.axis(s.runDir, s.seedDir);
    if (axis.state === 'ready' && Number.isFinite(s.spaceUnit)) {
      const u = unitVector(axis.value.axis, AXIS_VECTOR);
      lib.set(AXIS_VECTOR, { vector: u.map((x) => x * s.spaceUnit), hook: layerHook(axis.value.layer) });
    }
    return lib;
  }

  steeringInfo(s: SeedSteering): SteeringInfo {
    const axis = s.spaceLayer === null ? null : this.opts.analysis.axis(s.runDir, s.seedDir);
    const vectors: SteeringInfo['vectors'] = [...s.steer].map(([name, v]) => ({
      name,
      hook: v.hook!,
      layer: v.layer,
      kind: 'trait',
    }));
    if (axis?.state === 'ready')
      vectors.push({
        name: AXIS_VECTOR,
        hook: layerHook(axis.value.layer),
        layer: axis.value.layer,
        kind: 'axis',
      });
    return {
      seedDir: path.basename(s.seedDir),
      alphaUnit: `${ALPHA_UNIT} x the layer's mean residual-stream norm (the report's unit)`,
      vectors,
      axis:
        axis === null
          ? {
              ready: false,
              threshold: null,
              hook: null,
              message: 'the interpretation recorded no persona space',
            }
          : axis.state === 'ready'
            ? {
                ready: true,
                threshold: axis.value.threshold,
                hook: layerHook(axis.value.layer),
                message: null,
              }
            : axis.state === 'pending'
              ? {
                  ready: false,
                  threshold: null,
                  hook: null,
                  message: 'computing the assistant axis of this seed (once)…',
                }
              : {
                  ready: false,
                  threshold: null,
                  hook: null,
                  message: `the assistant axis could not be computed: ${axis.message}`,
                },
    };
  }

  /** The probe for a model (null while fitting or failed, with a message saying which). */
  probe(runDir: string, modelDir: string): { fit: ProbeFit | null; message: string | null } {
    const job = this.opts.analysis.probe(runDir, modelDir);
    if (job.state === 'ready') return { fit: job.value, message: null };
    if (job.state === 'pending')
      return {
        fit: null,
        message: 'fitting the archetype probe on this model (once; the next turns show it)…',
      };
    return { fit: null, message: `the archetype probe could not be fitted: ${job.message}` };
  }

  /**
   * The persona meter of a turn, in one forward pass over the prompt and the reply under the turn's interventions:
   * each trait's projection at the last prompt token (the monitoring readout) and at every reply token, and the
   * archetype probe's posterior at the last prompt token (the Assistant's kind prior).
   */
  meter(
    m: LocalModel,
    s: SeedSteering,
    probe: { fit: ProbeFit | null; message: string | null },
    ids: number[],
    promptLength: number,
    interventions: HookSet | undefined,
  ): MeterReading {
    const { model, tokenizer } = m.handle;
    const dim = model.config.dim;
    const fit = probe.fit;
    const probeHooks = fit ? (fit.probe.hooks ?? [fit.probe.hook]) : [];
    const wanted = new Set([...s.meter.map((v) => v.hook), ...probeHooks]);
    const acts = new Map<string, Float32Array>();
    const hooks = new HookSet();
    if (interventions) hooks.extend(interventions);
    for (const h of wanted)
      hooks.add(
        h,
        recordHook((data) => acts.set(h, data)),
      );
    noGrad(() => model.forwardHidden(Int32Array.from(ids), 1, { hooks }));
    const at = (h: string, pos: number) => acts.get(h)!.subarray(pos * dim, (pos + 1) * dim);
    const dot = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, j) => sum + x * b[j], 0);
    const last = promptLength - 1;
    const replyPositions = Array.from({ length: ids.length - promptLength }, (_, j) => promptLength + j);
    const reading: MeterReading = {
      traits: s.meter.map((v) => ({
        trait: v.trait,
        layer: v.layer,
        turn: dot(at(v.hook, last), v.unit) / v.scale,
        tokens: replyPositions.map((p) => dot(at(v.hook, p), v.unit) / v.scale),
      })),
      tokens: replyPositions.map((p) => tokenizer.decodeToken(ids[p])),
      probe: null,
      probeMessage: probe.message,
    };
    if (fit) {
      const features = new Float32Array(fit.probe.dim);
      probeHooks.forEach((h, q) => features.set(at(h, last), q * dim));
      const { world } = runSettings(s.runDir);
      const logPriors = Float32Array.from(
        archetypePrior(world, 'ai').map((p) => (p > 0 ? Math.log(p) : -Infinity)),
      );
      const post = probePredict(fit.probe, features, fit.probe.priorOffset ? logPriors : null);
      reading.probe = { archetypes: fit.probe.archetypes.map((name, i) => ({ name, p: post[i] })) };
    }
    return reading;
  }
}
