/**
 * How many selection chats the steering-layer choice needs: for each seed folder of a finished run, reselects every
 * trait's layer and method from the saved persona vectors with n training-pool Assistant chats per trait (the
 * interpretation's rule: `selectLayers`, then `betterSteering`), and checks the chosen vector's dose-response on the
 * held-out battery (48 chats, the interpretation's items) for monotonicity within the coherent alphas up to sampling
 * noise, the test of the steering goal.
 *
 *   npx tsx scripts/selection-study.ts <runDir> [--items 12,24]
 *
 * Prints the choice per seed and trait and, per n, the trait-seeds that fail. Run it on a development set (the
 * earlier default experiment's models: runs/default-docwindows-s3) rather than on the seeds a result is reported for.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { byDomain, doseResponse, DEFAULT_ALPHAS, traceItems } from '../src/interpret/steer.ts';
import { loadModelHandle } from '../src/interpret/activations.ts';
import { betterSteering, loadVectorBundle, selectLayers } from '../src/interpret/vectors.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { batteryItems, defaultWorldPath, loadWorld } from '../src/world/index.ts';

const program = new Command()
  .argument('<runDir>', 'a run folder whose seeds have been interpreted')
  .option('--items <list>', 'selection chats per trait to compare', '12,24')
  .option('--item-seed <n>', "the interpretation's item seed (interpretRun's seed; the pipeline uses 1)", '1')
  .parse();
const itemSeed = Number(program.opts().itemSeed);
if (!Number.isInteger(itemSeed))
  throw new Error(`--item-seed: "${program.opts().itemSeed}" is not an integer`);
const runDir = program.args[0];
const sizes = String(program.opts().items)
  .split(',')
  .map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 2) throw new Error(`--items: "${x}" is not an integer >= 2`);
    return n;
  });
const seedDirs = fs
  .readdirSync(runDir)
  .filter(
    (d) => /seed\d+$/.test(d) && fs.existsSync(path.join(runDir, d, 'interpret', 'vectors.safetensors')),
  )
  .sort();
if (seedDirs.length === 0) throw new Error(`${runDir}: no seed folder with interpret/vectors.safetensors`);

configureBackend();
const world = loadWorld(defaultWorldPath());
const traits = world.domains.map((d) => d.name);
const fails = new Map<number, string[]>(sizes.map((n) => [n, []]));
for (const dir of seedDirs) {
  const seedDir = path.join(runDir, dir);
  const post = loadModelHandle(path.join(seedDir, 'posttrain', 'model'));
  // The interpretation's held-out battery and selection items (interpretRun: seeds 100 + itemSeed and itemSeed + 1).
  const battery = byDomain(
    batteryItems(world, { seed: 100 + itemSeed, batteryPerDomain: 48, batteryFormats: ['chat'] }),
  );
  const traces = new Map(traits.map((t) => [t, traceItems(post, battery.get(t)!)]));
  for (const n of sizes) {
    const [response, contrastive] = ['vectors.safetensors', 'vectors-contrastive.safetensors'].map((f) =>
      loadVectorBundle(path.join(seedDir, 'interpret', f)),
    );
    for (const b of [response, contrastive])
      selectLayers(post, world, b.traits, { items: n, seed: itemSeed + 1 });
    const row = traits.map((t, i) => {
      const tv = betterSteering(response.traits[i], contrastive.traits[i]);
      const dr = doseResponse(post, battery.get(t)!, tv.byLayer[tv.bestLayer], DEFAULT_ALPHAS, {
        trace: traces.get(t)!,
      });
      if (!dr.monotonicCoherentWithinNoise) fails.get(n)!.push(`${dir}/${t}`);
      return `${t} ${tv.method} L${tv.bestLayer}${dr.monotonicCoherentWithinNoise ? '' : ' (not monotone)'}`;
    });
    console.log(`${dir}, ${n} chats: ${row.join(', ')}`);
  }
}
for (const [n, f] of fails)
  console.log(
    `${n} chats: ${f.length} of ${seedDirs.length * traits.length} fail${f.length ? `: ${f.join(', ')}` : ''}`,
  );
