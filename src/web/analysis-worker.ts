/**
 * The lab's analysis worker: the two computations that take seconds to minutes (the assistant axis of a seed's persona
 * space, and an archetype probe fitted on a model's activations) run here, so the lab's server keeps answering while
 * they do. Each is the run's own recipe on the run's own world (analysis.ts says which), so the axis is the one the
 * run's interpretation measured.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort } from 'node:worker_threads';
import {
  archetypeProbe,
  axisThreshold,
  interpretArchetypeDocuments,
  loadModelHandle,
  personaSpace,
} from '../interpret/index.ts';
import { configureBackend } from '../tensor/backend.ts';
import type { AnalysisRequest, AxisResult, ProbeFit } from './analysis.ts';
import { runSettings } from './run-settings.ts';

/** The item seed the pipeline's interpretation draws its documents and chats with (interpretRun's default). */
const ITEM_SEED = 1;

/** The seed's assistant axis, rebuilt as the interpretation built it (and as psm prevent rebuilds it). */
function axis(runDir: string, seedDir: string): AxisResult {
  const { world, config } = runSettings(runDir);
  const itemsPerDomain = config.interpret.itemsPerDomain;
  const summary = JSON.parse(fs.readFileSync(path.join(seedDir, 'interpret', 'interpret.json'), 'utf8')) as {
    space?: { layer?: number };
  };
  const layer = summary.space?.layer;
  if (typeof layer !== 'number') throw new Error(`${seedDir}: the interpretation recorded no persona space`);
  const post = loadModelHandle(path.join(seedDir, 'posttrain', 'model'));
  const space = personaSpace(post, world, layer, {
    docs: interpretArchetypeDocuments(world, itemsPerDomain, ITEM_SEED),
  });
  const threshold = axisThreshold(post, world, space.axis, layer, 0.25, 500 + ITEM_SEED);
  return { axis: space.axis, layer, threshold };
}

/** An archetype probe on a model's activations, with the interpretation's probe recipe. */
function probe(runDir: string, modelDir: string): ProbeFit {
  const { world, config } = runSettings(runDir);
  const n = config.interpret.itemsPerDomain;
  const r = archetypeProbe(loadModelHandle(modelDir), world, {
    size: Math.max(120, 42 * n),
    seed: 800 + ITEM_SEED,
    evalPerCell: Math.max(2, Math.round(n / 12)),
  });
  return { probe: r.probe, tv: r.agreement.tv, tvPrior: r.agreement.tvPrior };
}

configureBackend();
parentPort!.on('message', (req: AnalysisRequest) => {
  try {
    const result = req.task === 'axis' ? axis(req.runDir, req.seedDir) : probe(req.runDir, req.modelDir);
    parentPort!.postMessage({ id: req.id, result });
  } catch (e) {
    parentPort!.postMessage({ id: req.id, error: e instanceof Error ? e.message : String(e) });
  }
});
