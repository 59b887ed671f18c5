/**
 * Fine-tune shift prediction (the interpretation's shift stage) read on different item sets, on every seed folder
 * of a run whose interpretation has run: how well the change of the last prompt token's projection on each trait vector
 * predicts the change of trait expression across the narrow fine-tune arms, per trait.
 *
 *   npx tsx scripts/shift-study.ts <runDir> [--items-per-domain 48] [--json <file>]
 *
 * Item sets (each with half the items per domain, as the pipeline's shift uses):
 *   battery   the pipeline's reading: held-out chats with the unprimed Assistant (batteryItems, seed 200 + seed);
 *   evidence  held-out chats with the Assistant after two earlier turns whose replies are all good, all bad or mixed
 *             (assistantEvidenceItems, seed 60 + seed; the monitoring items' kind with a seed no stage uses), where a
 *             trait the post-trained Assistant never shows unprimed is still expressed, so expression can move;
 *   both      the two sets together.
 * The trait vectors are the interpretation's saved bundles; each trait is read with the one (method and layer) whose
 * projection tracks P(bad) best on training-pool chats, as interpretRun chooses its monitoring vectors.
 * Choose settings on a development set (runs/default-docwindows-s3) and report on another.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { loadModelHandle } from '../src/interpret/activations.ts';
import { assistantEvidenceItems } from '../src/interpret/contexts.ts';
import { monitorItems, monitorTraits } from '../src/interpret/monitor.ts';
import { modelState, shiftPrediction, type ModelState } from '../src/interpret/shift.ts';
import { byDomain, type ScoredItem } from '../src/interpret/steer.ts';
import { loadVectorBundle, type PersonaVector } from '../src/interpret/vectors.ts';
import { mean } from '../src/measurement/stats.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { batteryItems, defaultWorldPath, loadWorld, type World } from '../src/world/index.ts';

const program = new Command()
  .argument('<runDir>', 'a run folder whose seed folders have interpret/ and ft-*/model')
  .option('--items-per-domain <n>', "interpretRun's N (each item set uses N / 2 per domain)", '48')
  .option('--json <file>', 'also write every number as JSON')
  .parse();
const o = program.opts();
const N = Number(o.itemsPerDomain);
if (!Number.isInteger(N) || N < 4)
  throw new Error(`--items-per-domain: "${o.itemsPerDomain}" is not an integer >= 4`);
const runDir = program.args[0];

configureBackend();
const world = loadWorld(defaultWorldPath());
const half = Math.max(4, Math.round(N / 2));

function itemSets(w: World, seed: number): Record<string, Map<string, ScoredItem[]>> {
  const battery = byDomain(
    batteryItems(w, { seed: 200 + seed, batteryPerDomain: half, batteryFormats: ['chat'] }),
  );
  const evidence = new Map(
    w.domains.map((d) => [d.name, assistantEvidenceItems(w, d.name, half, 60 + seed, 2, 'heldout')]),
  );
  const both = new Map(w.domains.map((d) => [d.name, [...battery.get(d.name)!, ...evidence.get(d.name)!]]));
  return { battery, evidence, both };
}

const seedDirs = fs
  .readdirSync(runDir)
  .filter((d) => /^standard-seed\d+$/.test(d))
  .sort((a, b) => Number(a.replace(/\D/g, '')) - Number(b.replace(/\D/g, '')));
if (seedDirs.length === 0) throw new Error(`${runDir}: no standard-seed<N> folders`);

const results: { seed: number; set: string; perTrait: Record<string, number>; traitMean: number }[] = [];
for (const sd of seedDirs) {
  const seed = Number(sd.replace(/\D/g, ''));
  const dir = path.join(runDir, sd);
  const post = loadModelHandle(path.join(dir, 'posttrain', 'model'));
  const bundles = ['vectors.safetensors', 'vectors-contrastive.safetensors'].map((f) =>
    loadVectorBundle(path.join(dir, 'interpret', f)),
  );
  const traits = bundles[0].traits.map((t) => t.trait);
  // interpretRun's monitoring choice: validation chats from the training pool, both methods, every layer.
  const validation = monitorItems(world, half, 40 + seed, 'assistant', 'train');
  const vectors: PersonaVector[] = traits.map((t, i) => {
    const candidates = bundles.flatMap((b) => b.traits[i].byLayer);
    const rs = monitorTraits(post, new Map([[t, validation.get(t)!]]), candidates, {
      randomDirections: 0,
    }).map((m) => m.r);
    const best = rs.reduce((bi, r, j) => (r > rs[bi] || Number.isNaN(rs[bi]) ? j : bi), 0);
    return candidates[best];
  });
  const sets = itemSets(world, seed);
  const before = Object.fromEntries(
    Object.entries(sets).map(([k, items]) => [k, modelState(post, items, vectors)]),
  );
  const afters: Record<string, { label: string; state: ModelState }[]> = {};
  const arms = fs
    .readdirSync(dir)
    .filter((d) => /^ft-[a-z]+-[a-z0-9]+$/.test(d) && !d.startsWith('ft-trait'));
  for (const arm of arms) {
    const h = loadModelHandle(path.join(dir, arm, 'model'));
    for (const [k, items] of Object.entries(sets))
      (afters[k] ??= []).push({ label: arm.slice(3), state: modelState(h, items, vectors) });
  }
  for (const k of Object.keys(sets)) {
    const { perTrait } = shiftPrediction(before[k], afters[k]);
    const traitMean = mean(Object.values(perTrait));
    results.push({ seed, set: k, perTrait, traitMean });
    const pBad = traits.map((t) => `${t} ${before[k].pBad[t].toFixed(3)}`).join(' ');
    console.log(
      `seed ${seed} ${k.padEnd(8)} mean ${traitMean.toFixed(2)} | ` +
        traits.map((t) => `${t} ${perTrait[t].toFixed(2)}`).join(' ') +
        ` | post-trained P(bad): ${pBad}`,
    );
  }
}
for (const k of ['battery', 'evidence', 'both']) {
  const rs = results.filter((r) => r.set === k);
  console.log(
    `${k.padEnd(8)} mean over seeds of the per-trait mean: ${mean(rs.map((r) => r.traitMean)).toFixed(3)}`,
  );
}
if (o.json) fs.writeFileSync(o.json, JSON.stringify(results, null, 2));
