/**
 * `psm vectors|steer|monitor|space|interpret|prevent|persona-check`: persona vectors, steering, monitoring, persona
 * space, the whole per-seed analysis, a preventative-steering dose study and the persona check from the command line
 * (issue 5; docs/interpret.md). Machinery is imported lazily.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import {
  f,
  handleFor,
  loadWorldOption,
  parseInt1,
  parseList,
  parseTraits,
  runOfSeedFolder,
  seedOfFolder,
  writeJson,
} from './options.ts';

interface CommonOpts {
  model: string;
  world?: string;
}

export function registerInterpretCommands(program: Command): void {
  program
    .command('vectors')
    .description(
      "Persona vectors of every trait at every layer (bad minus good behaviour, or contrastive contexts); each trait's layer chosen by steering effect",
    )
    .requiredOption('--model <dir>', 'model folder (config.json, model.safetensors, tokenizer.json)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option(
      '--out <file>',
      'output .safetensors (a .json sidecar is written beside it)',
      'vectors.safetensors',
    )
    .option(
      '--method <m>',
      'response (bad minus good option, mean over the behaviour span) | contrastive (trait-eliciting minus trait-suppressing context)',
      'response',
    )
    .option(
      '--span <s>',
      'span to average: prompt | response | last-prompt | all (default: response for response, last-prompt for contrastive)',
    )
    .option('--traits <list>', 'comma-separated traits (default: all)')
    .option('--items <n>', 'extraction items per trait', '24')
    .option('--layer <list>', 'layers the selection may choose from (default: all)')
    .option('--select-items <n>', 'items per trait for choosing the layer', '16')
    .option('--select-alpha <a>', 'steering strength used to choose the layer', '4')
    .option('--no-select', 'skip layer selection (much faster)')
    .option('--seed <n>', 'item seed', '1')
    .action(
      async (
        o: CommonOpts & {
          out: string;
          method: string;
          span?: string;
          traits?: string;
          items: string;
          layer?: string;
          selectItems: string;
          selectAlpha: string;
          select: boolean;
          seed: string;
        },
      ) => {
        const world = await loadWorldOption(o.world);
        const handle = await handleFor(o.model);
        const v = await import('../interpret/vectors.ts');
        if (!(v.VECTOR_METHODS as readonly string[]).includes(o.method))
          throw new Error(`--method must be one of ${v.VECTOR_METHODS.join(', ')}, got "${o.method}"`);
        const layers = parseList('--layer', o.layer, 'int');
        for (const l of layers ?? [])
          (await import('../interpret/activations.ts')).checkLayer(handle.model, l);
        const selectAlpha = Number(o.selectAlpha);
        if (!Number.isFinite(selectAlpha))
          throw new Error(`--select-alpha must be a number, got "${o.selectAlpha}"`);
        const t0 = Date.now();
        const bundle = v.personaVectors(handle, world, {
          method: o.method as 'response' | 'contrastive',
          span: o.span as never,
          traits: parseTraits(o.traits),
          itemsPerTrait: parseInt1('--items', o.items),
          seed: parseInt1('--seed', o.seed, 0),
          select: o.select,
          selectAlpha,
          selectItems: parseInt1('--select-items', o.selectItems),
          selectLayers: layers,
        });
        const traits = bundle.traits;
        v.saveVectorBundle(o.out, bundle);
        const L = bundle.nLayers;
        process.stdout.write(
          `trait\tbest_layer\t${Array.from({ length: L }, (_, l) => `effect_L${l}`).join('\t')}\tnorm@best\n`,
        );
        for (const t of traits) {
          const best = t.bestLayer >= 0 ? t.byLayer[t.bestLayer] : t.byLayer[L - 1];
          const n = Math.sqrt(best.vector.reduce((s, x) => s + x * x, 0));
          process.stdout.write(
            `${t.trait}\t${t.bestLayer}\t${Array.from({ length: L }, (_, l) => f(t.steeringEffect[l] ?? NaN)).join('\t')}\t${f(n)}\n`,
          );
        }
        const cos = v.traitCosines(bundle);
        process.stdout.write(`\ncosines (each trait at its layer):\n\t${cos.traits.join('\t')}\n`);
        cos.matrix.forEach((row, i) =>
          process.stdout.write(`${cos.traits[i]}\t${row.map((x) => f(x, 2)).join('\t')}\n`),
        );
        process.stderr.write(`wrote ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      },
    );

  program
    .command('steer')
    .description(
      'Dose-response of the trait battery under steering with persona vectors (add alpha x vector, ablate, or cap on an axis)',
    )
    .requiredOption('--model <dir>', 'model folder')
    .option('--vectors <file>', 'persona vectors (from `psm vectors`)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--traits <list>', 'comma-separated traits (default: all in the vector file)')
    .option('--layer <list>', "layers to steer at (default: each vector's selected layer)")
    .option(
      '--alpha <list>',
      "steering strengths in units of 0.1 x the layer's residual norm (use --alpha=-4,-2,-1,0,1,2,4)",
      '-4,-2,-1,0,1,2,4',
    )
    .option('--mode <m>', 'add | ablate | cap (cap needs --axis)', 'add')
    .option('--axis <file>', 'assistant axis from `psm space` (space.safetensors), for --mode cap')
    .option(
      '--quantile <q>',
      "cap threshold: this quantile of the Assistant's projections (default: the one stored with the axis, 0.25)",
    )
    .option('--items <n>', 'held-out Assistant items per trait', '48')
    .option('--allow-other-model', 'apply vectors extracted from another model')
    .option('--out <file>', 'write the results as JSON')
    .action(
      async (
        o: CommonOpts & {
          vectors?: string;
          traits?: string;
          layer?: string;
          alpha: string;
          mode: string;
          axis?: string;
          quantile?: string;
          items: string;
          allowOtherModel?: boolean;
          out?: string;
        },
      ) => {
        const world = await loadWorldOption(o.world);
        const handle = await handleFor(o.model);
        const [v, s, w] = await Promise.all([
          import('../interpret/vectors.ts'),
          import('../interpret/steer.ts'),
          import('../world/index.ts'),
        ]);
        const layers = parseList('--layer', o.layer, 'int');
        const n = parseInt1('--items', o.items)!;
        const items = w.batteryItems(world, { seed: 101, batteryPerDomain: n, batteryFormats: ['chat'] });
        const itemsOf = (trait: string) => items.filter((it) => it.domain === trait);
        if (o.mode === 'cap') {
          if (!o.axis) throw new Error('--mode cap needs --axis (space.safetensors written by `psm space`)');
          const sp = await import('../interpret/space.ts');
          const axis = sp.loadAxis(o.axis);
          if (axis.modelHash !== handle.hash && !o.allowOtherModel)
            throw new Error(
              `${o.axis} was computed on model ${axis.modelHash.slice(0, 12)}, not ${o.model} (${handle.hash.slice(0, 12)}); pass --allow-other-model to use it anyway`,
            );
          const q = o.quantile === undefined ? axis.quantile : Number(o.quantile);
          if (!(q >= 0 && q <= 1)) throw new Error(`--quantile must be in [0, 1], got "${o.quantile}"`);
          const threshold =
            o.quantile === undefined
              ? axis.threshold
              : sp.axisThreshold(handle, world, axis.axis, axis.layer, q);
          const hooks = s.cappingHooks(handle, axis.axis, axis.layer, threshold);
          const { sceneItems } = await import('../interpret/contexts.ts');
          const traits = parseTraits(o.traits) ?? world.domains.map((d) => d.name);
          process.stdout.write(
            `capping on the assistant axis at layer ${axis.layer}, threshold ${f(threshold)} (quantile ${q})\ntrait\tnormal\tnormal_capped\tbad_history\tbad_history_capped\n`,
          );
          const rows = [];
          for (const [i, t] of traits.entries()) {
            const normal = itemsOf(t);
            const bad = sceneItems(world, t, {
              n,
              seed: 601,
              subjects: ['assistant'],
              pool: 'heldout',
              label: 'cap-bad',
              earlier: {
                behaviour: 'bad',
                count: 2,
                domain: traits[(i + 1) % traits.length] === t ? undefined : traits[(i + 1) % traits.length],
              },
            });
            const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
            const r = {
              trait: t,
              normal: mean(s.pGoodOf(handle, normal)),
              normalCapped: mean(s.pGoodOf(handle, normal, hooks, 'capping')),
              bad: mean(s.pGoodOf(handle, bad)),
              badCapped: mean(s.pGoodOf(handle, bad, hooks, 'capping')),
            };
            rows.push(r);
            process.stdout.write(
              `${t}\t${f(r.normal)}\t${f(r.normalCapped)}\t${f(r.bad)}\t${f(r.badCapped)}\n`,
            );
          }
          writeJson(o.out, { mode: 'cap', layer: axis.layer, threshold, quantile: q, rows });
          return;
        }
        if (!o.vectors) throw new Error(`--mode ${o.mode} needs --vectors (from \`psm vectors\`)`);
        if (o.mode !== 'add' && o.mode !== 'ablate')
          throw new Error(`--mode must be add, ablate or cap, got "${o.mode}"`);
        const bundle = v.loadVectorBundle(o.vectors);
        const traits = parseTraits(o.traits) ?? bundle.traits.map((t) => t.trait);
        const alphas = parseList('--alpha', o.alpha, 'number')!;
        const results = [];
        if (o.mode === 'add')
          process.stdout.write(
            `trait\tlayers\t${alphas.map((a) => `a=${a}`).join('\t')}\tmonotonic\tmonotonic_coherent\tcoherent_alphas\tmax_rise_z\n`,
          );
        else process.stdout.write('trait\tlayers\tP(good)\tablated\n');
        for (const t of traits) {
          const vec = v.bundleVector(bundle, t);
          const its = itemsOf(t);
          if (its.length === 0) throw new Error(`no items for trait "${t}" in this world`);
          if (o.mode === 'add') {
            const dr = s.doseResponse(handle, its, vec, alphas, {
              layers,
              allowOtherModel: o.allowOtherModel,
              // One layer: each alpha's pass resumes after it (same numbers, fewer blocks run).
              trace: (layers ?? [vec.layer]).length === 1 ? s.traceItems(handle, its) : undefined,
            });
            results.push(dr);
            process.stdout.write(
              `${t}\t${dr.layers.join(',')}\t${dr.pGood.map((p) => f(p)).join('\t')}\t${dr.monotonic}\t${dr.monotonicCoherent}\t${dr.alphas.filter((_, i) => dr.coherent[i]).join(',')}\t${f(dr.maxRiseZ ?? NaN, 2)}\n`,
            );
          } else {
            const ab = s.ablationEffect(handle, its, vec, { layers, allowOtherModel: o.allowOtherModel });
            results.push(ab);
            process.stdout.write(`${t}\t${ab.layers.join(',')}\t${f(ab.base)}\t${f(ab.ablated)}\n`);
          }
        }
        writeJson(o.out, { mode: o.mode, model: o.model, vectors: o.vectors, results });
      },
    );

  program
    .command('monitor')
    .description(
      "Projection of the last prompt token on each trait vector vs the model's P(bad option), per trait; per-turn traces in multi-turn chats",
    )
    .requiredOption('--model <dir>', 'model folder')
    .requiredOption('--vectors <file>', 'persona vectors (from `psm vectors`)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--traits <list>', 'comma-separated traits (default: all in the vector file)')
    .option('--layer <n>', "read every trait at this layer (default: each vector's selected layer)")
    .option('--items <n>', 'held-out items per trait', '48')
    .option(
      '--kind <k>',
      'assistant (Assistant chats after good / bad / mixed earlier turns) | probes (in-context persona probes of characters)',
      'assistant',
    )
    .option('--turns <n>', 'also trace multi-turn chats of this many turns (0: none)', '0')
    .option('--replies <mode>', 'replies in the traced chats: model (greedy) | good | bad', 'model')
    .option('--allow-other-model', 'apply vectors extracted from another model')
    .option('--out <file>', 'write the results as JSON')
    .action(
      async (
        o: CommonOpts & {
          vectors: string;
          traits?: string;
          layer?: string;
          items: string;
          kind: string;
          turns: string;
          replies: string;
          allowOtherModel?: boolean;
          out?: string;
        },
      ) => {
        const world = await loadWorldOption(o.world);
        const handle = await handleFor(o.model);
        const [v, m, c] = await Promise.all([
          import('../interpret/vectors.ts'),
          import('../interpret/monitor.ts'),
          import('../interpret/contexts.ts'),
        ]);
        const bundle = v.loadVectorBundle(o.vectors);
        const layer = parseInt1('--layer', o.layer, 0);
        const traits = parseTraits(o.traits) ?? bundle.traits.map((t) => t.trait);
        const vecs = traits.map((t) => v.bundleVector(bundle, t, layer));
        if (o.kind !== 'assistant' && o.kind !== 'probes')
          throw new Error(`--kind must be assistant or probes, got "${o.kind}"`);
        const items = m.monitorItems(world, parseInt1('--items', o.items)!, 21, o.kind);
        const res = m.monitorTraits(handle, items, vecs, { allowOtherModel: o.allowOtherModel });
        process.stdout.write('trait\tlayer\tr(projection, P(bad))\tmean |r| of random directions\tn\n');
        for (const r of res)
          process.stdout.write(`${r.trait}\t${r.layer}\t${f(r.r)}\t${f(r.rRandom)}\t${r.n}\n`);
        const turns = parseInt1('--turns', o.turns, 0)!;
        let traces: unknown = null;
        if (turns > 0) {
          if (!['model', 'good', 'bad'].includes(o.replies))
            throw new Error(`--replies must be model, good or bad, got "${o.replies}"`);
          const domains = world.domains.map((d) => d.name);
          const convs = domains.map((d, i) =>
            c.conversation(
              world,
              Array.from({ length: turns }, (_, t) => domains[(i + t) % domains.length]),
              90 + i,
            ),
          );
          const pts = m.turnTraces(
            handle,
            convs,
            vecs.map((x) => ({ name: x.trait, hook: x.hook, vector: x.vector })),
            { replies: o.replies as 'model' },
          );
          traces = pts;
          process.stdout.write(
            `\nper-turn trace (replies: ${o.replies})\nchat\tturn\tdomain\tP(bad)\t${traits.join('\t')}\n`,
          );
          for (const p of pts)
            process.stdout.write(
              `${p.conversation}\t${p.turn}\t${p.domain}\t${f(p.pBad)}\t${traits.map((t) => f(p.projections[t], 2)).join('\t')}\n`,
            );
        }
        writeJson(o.out, { model: o.model, vectors: o.vectors, monitoring: res, traces });
      },
    );

  program
    .command('space')
    .description(
      "Persona space: archetype vectors, PCA and variance explained, the assistant axis and its cosine with PC1, where each model's Assistant sits, drift over multi-turn chats, and the archetype-posterior probe",
    )
    .requiredOption('--model <dir>', 'reference model folder (its archetypes define the space)')
    .option(
      '--compare <dirs...>',
      'other model folders whose Assistant to place in the space (e.g. base and fine-tunes)',
    )
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--layer <n>', 'layer (default: the middle one)')
    .option('--per-archetype <n>', 'documents per archetype', '12')
    .option('--turns <n>', 'drift: turns per chat (0: skip)', '5')
    .option('--probe', 'also fit the archetype-posterior probe and report its agreement with Bayes')
    .option('--out <dir>', 'write space.safetensors (axis, components) and space.json here')
    .action(
      async (
        o: CommonOpts & {
          compare?: string[];
          layer?: string;
          perArchetype: string;
          turns: string;
          probe?: boolean;
          out?: string;
        },
      ) => {
        const world = await loadWorldOption(o.world);
        const handle = await handleFor(o.model);
        const sp = await import('../interpret/space.ts');
        const layer =
          o.layer === undefined
            ? Math.floor(handle.model.config.nLayers / 2)
            : parseInt1('--layer', o.layer, 0)!;
        (await import('../interpret/activations.ts')).checkLayer(handle.model, layer);
        const space = sp.personaSpace(handle, world, layer, {
          perArchetype: parseInt1('--per-archetype', o.perArchetype),
        });
        process.stdout.write(`persona space of ${o.model} at layer ${layer}\n`);
        process.stdout.write(
          `variance explained: ${space.pca.explained.map((x) => f(x, 3)).join(' ')}\ncomponents for 70%: ${space.componentsFor70}\ncos(assistant axis, PC1): ${f(space.axisCosPC1)}\ncos(assistant axis, PC1..): ${space.axisCosPCs.map((x) => f(x, 2)).join(' ')}\nshare of the axis inside the archetypes' span: ${f(space.axisInSpace)}\n\narchetype\tkind\tn\tPC1\tPC2\n`,
        );
        for (const a of space.archetypes) {
          const [x, y] = sp.pcaCoords(space.pca, a.vector, 2);
          process.stdout.write(`${a.name}\t${a.kind}\t${a.n}\t${f(x)}\t${f(y)}\n`);
        }
        const placed = [sp.placeVector(space, space.assistant, o.model)];
        for (const dir of o.compare ?? [])
          placed.push(sp.placeAssistant(space, await handleFor(dir), world, dir));
        process.stdout.write('\nAssistant of\tPC1\tPC2\taxis position\tnearest archetype (cos)\n');
        for (const p of placed)
          process.stdout.write(
            `${p.label}\t${f(p.coords[0] ?? NaN)}\t${f(p.coords[1] ?? NaN)}\t${f(p.axisPosition)}\t${p.nearest.name} (${f(p.nearest.cosine, 2)})\n`,
          );
        const turns = parseInt1('--turns', o.turns, 0)!;
        let drift = null;
        if (turns > 0) {
          drift = sp.assistantDrift(handle, world, space, { turns, perDomain: 2 });
          process.stdout.write(
            `\ndrift along the axis over ${turns}-turn chats (model's own replies)\ndomain\t${Array.from({ length: turns }, (_, t) => `turn${t}`).join('\t')}\tslope\n`,
          );
          for (const d of drift)
            process.stdout.write(`${d.domain}\t${d.trace.map((x) => f(x, 2)).join('\t')}\t${f(d.slope)}\n`);
        }
        let probe = null;
        if (o.probe) {
          const { archetypeProbe } = await import('../interpret/probe.ts');
          const pr = archetypeProbe(handle, world, {});
          probe = { layers: pr.layers, l2: pr.l2, perLayer: pr.perLayer, agreement: pr.agreement };
          const a = pr.agreement;
          process.stdout.write(
            `\narchetype probe (${pr.layers.length > 1 ? `layers ${pr.layers.join(',')} concatenated` : `layer ${pr.layer}`}, L2 ${pr.l2}, ${pr.trainRows} training positions): on ${a.n} in-context probes, TV distance to Bayes ${f(a.tv)} (prior alone ${f(a.tvPrior)}), KL ${f(a.kl)}, r ${f(a.r)}, r of updates ${f(a.rUpdate)}, top-1 agreement ${f(a.top1)}\n`,
          );
        }
        if (o.out) {
          const axisFile = path.join(o.out, 'space.safetensors');
          sp.saveAxis(axisFile, space, sp.axisThreshold(handle, world, space.axis, space.layer, 0.25), 0.25);
          writeJson(path.join(o.out, 'space.json'), {
            model: o.model,
            layer,
            varianceExplained: space.pca.explained,
            componentsFor70: space.componentsFor70,
            axisCosPC1: space.axisCosPC1,
            axisCosPCs: space.axisCosPCs,
            axisInSpace: space.axisInSpace,
            archetypes: space.archetypes.map((a) => ({ name: a.name, kind: a.kind, n: a.n })),
            assistant: placed,
            drift,
            probe,
          });
        }
      },
    );

  program
    .command('interpret <seedDir>')
    .description(
      'The whole analysis of issue 5 for one seed folder of a run (<run>/standard-seed<N>): vectors, monitoring, steering, shift, screening, persona space, probe',
    )
    .option(
      '--world <file>',
      "world file (default: the run's, from <run>/config.yaml, else the built-in world)",
    )
    .option('--items <n>', "held-out items per domain (default: the run's, else 48)")
    .option('--out <dir>', 'output folder (default <seedDir>/interpret)')
    .option('--no-drift', 'skip multi-turn drift traces')
    .option(
      '--no-trials',
      'skip what fine-tunes again (the trait fine-tunes, the screening and the preventative trials)',
    )
    .action(
      async (
        seedDir: string,
        o: { world?: string; items?: string; out?: string; drift: boolean; trials: boolean },
      ) => {
        // In a run folder, the run's config gives the world and the trials, as `psm run` ran them.
        const [{ runConfig, world }, experiment] = await Promise.all([
          runOfSeedFolder(seedDir, o.world),
          import('../pipeline/experiment.ts'),
        ]);
        const seed = seedOfFolder(seedDir);
        if (runConfig && o.trials && seed === undefined)
          throw new Error(
            `${seedDir} does not end in seed<N>: the run's trials need the seed (or pass --no-trials)`,
          );
        const studies =
          runConfig && o.trials
            ? experiment.interpretStudies(
                runConfig,
                world,
                seed!,
                runConfig.finetune.domain || world.datasets.narrow?.domain || '',
              )
            : { itemsPerDomain: runConfig?.interpret.itemsPerDomain };
        const [{ configureBackend }, { interpretRun }, { terminalProgress }] = await Promise.all([
          import('../tensor/backend.ts'),
          import('../interpret/index.ts'),
          import('./progress.ts'),
        ]);
        configureBackend();
        const post = path.join(seedDir, 'posttrain', 'model');
        const base = path.join(seedDir, 'pretrain', 'model');
        for (const d of [post, base])
          if (!fs.existsSync(d))
            throw new Error(
              `${d} not found: is ${seedDir} a seed folder of a finished run (<run>/standard-seed<N>)?`,
            );
        const armDirs = fs
          .readdirSync(seedDir)
          .filter(
            (d) => d.startsWith('ft-') && fs.existsSync(path.join(seedDir, d, 'model', 'model.safetensors')),
          )
          .map((d) => {
            const m = /^ft-(.+)-([^-]+)$/.exec(d)!;
            return { arm: m[1], trainable: m[2], dir: path.join(seedDir, d, 'model') };
          });
        // The run's order of arms and trainable sets (the pipeline's), else the folders' order.
        if (runConfig) {
          const rank = (list: readonly string[], x: string) =>
            list.includes(x) ? list.indexOf(x) : list.length;
          const { arms, trainable } = runConfig.finetune;
          armDirs.sort(
            (a, b) =>
              rank(arms, a.arm) - rank(arms, b.arm) ||
              rank(trainable, a.trainable) - rank(trainable, b.trainable),
          );
        }
        const t0 = Date.now();
        const s = await interpretRun(seedDir, {
          world,
          armDirs,
          postDir: post,
          baseDir: base,
          ...studies,
          itemsPerDomain: parseInt1('--items', o.items, 4) ?? studies.itemsPerDomain,
          outDir: o.out,
          drift: o.drift,
          progress: terminalProgress,
          log: (l) => process.stderr.write(`${l}\n`),
        });
        process.stdout.write(
          `trait\tmethod\tlayer\tmonitor_r\trandom_|r|\tP(good) at alphas ${s.settings.alphas.join(',')}\tmonotonic\tmonotonic_coherent\n`,
        );
        for (const v of s.vectors) {
          const mo = s.monitoring.find((x) => x.trait === v.trait)!;
          const st = s.steering.find((x) => x.trait === v.trait)!;
          process.stdout.write(
            `${v.trait}\t${v.method}\t${v.bestLayer}\t${f(mo.r)}\t${f(mo.rRandom)}\t${st.pGood.map((p) => f(p)).join(' ')}\t${st.monotonic}\t${st.monotonicCoherent}\n`,
          );
        }
        process.stdout.write(
          `shift prediction r = ${f(s.shift.r)}${s.shift.rExcluding !== null ? ` (without ${s.shift.excluded.join(', ')}: ${f(s.shift.rExcluding)})` : ''} over ${s.shift.points.length} points\n`,
        );
        process.stdout.write(
          `persona space: layer ${s.space.layer}, ${s.space.componentsFor70} components for 70%, cos(axis, PC1) = ${f(s.space.axisCosPC1)}\n`,
        );
        process.stdout.write(
          `probe: TV to Bayes ${f(s.probe.tv)} (prior ${f(s.probe.tvPrior)}), r ${f(s.probe.r)}\n`,
        );
        for (const t of s.preventative ?? [])
          process.stdout.write(
            `preventative ${t.subspace ? `${t.method}/${t.subspace}` : t.method}: off-target drop ${f(t.offTargetDrop.plain)} plain, ${f(t.offTargetDrop.steered)} with it (reduction ${f(t.reduction)})\n`,
          );
        if (s.screeningTrial)
          process.stdout.write(
            `screening trial: off-target change ${s.screeningTrial.subsets.map((x) => `${x.name} ${f(x.offTargetChange)}`).join(', ')}\n`,
          );
        process.stdout.write(
          `${path.join(o.out ?? path.join(seedDir, 'interpret'), 'interpret.json')} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
        );
      },
    );

  program
    .command('prevent <seedDir>')
    .description(
      'Preventative steering at several strengths on a seed folder whose interpretation has run: fine-tune the post-trained model on the narrow cheat data without and with the persona vector added (and, with --ablate, with subspaces ablated), and compare the off-target drop',
    )
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--alphas <list>', 'strengths, in 0.1 x the layer residual norm (none: no additive trial)', '4')
    .option('--layer <n>', "layer to add the vector at (default: the off-target traits' monitoring layer)")
    .option('--trait <name>', "add this trait's vector instead of the mean off-target persona")
    .option(
      '--ablate [subspaces]',
      "also run concept ablation, projecting out at every layer each of these subspaces (default: the pipeline's traits-whole,shift,traits,random): traits-whole (the off-target traits' persona vectors as they are), shift (CAFT's directions: the plain fine-tune's activation change on off-target chats), traits (the off-target traits' vectors orthogonal to the fine-tune domain's), archetypes (persona space's archetype directions), persona (traits and archetypes), random (the control: as many random directions as traits has)",
    )
    .option('--items <n>', 'held-out items per domain (the trial scores half)', '48')
    .option('--examples <n>', 'fine-tune examples', '400')
    .option('--steps <n>', 'fine-tune steps', '60')
    .option('--batch <n>', 'fine-tune batch size', '16')
    .option('--lr <x>', 'fine-tune learning rate (all parameters)', '3e-4')
    .option('--seed <n>', 'seed of the examples and the fine-tune (default: the N of <run>/standard-seed<N>)')
    .option('--out <file>', 'write the study as JSON')
    .action(
      async (
        seedDir: string,
        o: {
          world?: string;
          alphas: string;
          layer?: string;
          trait?: string;
          ablate?: true | string;
          items: string;
          examples: string;
          steps: string;
          batch: string;
          lr: string;
          seed?: string;
          out?: string;
        },
      ) => {
        const world = await loadWorldOption(o.world);
        // --alphas none with --ablate: the concept-ablation trial alone.
        const alphas = o.alphas === 'none' ? [] : parseList('--alphas', o.alphas, 'number')!;
        const lr = Number(o.lr);
        if (!(lr > 0)) throw new Error(`--lr must be a positive number, got "${o.lr}"`);
        const seed = parseInt1('--seed', o.seed, 0) ?? seedOfFolder(seedDir);
        if (seed === undefined)
          throw new Error(`${seedDir} does not end in seed<N>: pass --seed (the run's seed of that folder)`);
        const domain = world.datasets.narrow?.domain;
        if (!domain)
          throw new Error(`world "${world.name}" has no datasets.narrow section (the fine-tune's data)`);
        const [
          { configureBackend },
          { preventativeStudy },
          { checkAblationSubspace, DEFAULT_ABLATION_SUBSPACES },
          { narrowSet },
        ] = await Promise.all([
          import('../tensor/backend.ts'),
          import('../interpret/prevent.ts'),
          import('../interpret/ablation-subspaces.ts'),
          import('../world/index.ts'),
        ]);
        configureBackend();
        process.stdout.write(
          'method\twhat\talpha\tlayers\toff-target drop plain\tsteered\treduction\ttarget before/plain/steered\taxis before/plain/steered\n',
        );
        const study = preventativeStudy(seedDir, {
          world,
          examples: narrowSet(world, 'cheat', { seed, count: parseInt1('--examples', o.examples)!, domain }),
          alphas,
          ablate:
            o.ablate === undefined
              ? []
              : o.ablate === true
                ? [...DEFAULT_ABLATION_SUBSPACES]
                : o.ablate.split(',').map((x) => checkAblationSubspace(x, '--ablate')),
          finetune: {
            trainable: { kind: 'all' },
            steps: parseInt1('--steps', o.steps)!,
            batchSize: parseInt1('--batch', o.batch)!,
            lr,
            seed,
          },
          itemsPerDomain: parseInt1('--items', o.items, 4),
          trait: o.trait,
          layer: parseInt1('--layer', o.layer, 0),
          onTrial: (t) =>
            process.stdout.write(
              `${t.subspace ? `${t.method}/${t.subspace}` : t.method}\t${t.vector}\t${t.alpha ?? '-'}\t${t.layers.join(',')}\t${f(t.offTargetDrop.plain)}\t${f(t.offTargetDrop.steered)}\t${f(t.reduction)}\t${f(t.target.before)}/${f(t.target.plain)}/${f(t.target.steered)}\t${t.axis ? `${f(t.axis.before)}/${f(t.axis.plain)}/${f(t.axis.steered)}` : '-'}\n`,
            ),
        });
        writeJson(o.out, study);
      },
    );

  program
    .command('persona-check')
    .description(
      'In-context persona inference of a model against Bayes: P(consistent), r and MAE per number of earlier scenes, how each earlier scene is weighed, the unexplained residual, and the package deal',
    )
    .requiredOption('--model <dir>', 'model folder (e.g. <run>/<variant>-seed1/pretrain/model)')
    .option('--world <file>', 'world file (default: the built-in world)')
    .option('--items <n>', 'inference probes per (k, target domain)', '30')
    .option('--package-items <n>', 'package probes per (target domain, valence)', '20')
    .option('--max-k <n>', 'largest number of earlier scenes', '5')
    .option(
      '--contexts <pool>',
      'heldout | train: where contexts come from (train only to diagnose)',
      'heldout',
    )
    .option('--names <pool>', 'heldout | train: where names come from (train only to diagnose)', 'heldout')
    .option('--seed <n>', 'seed of the probe set', '0')
    .option('--out <file>', 'also write the result as JSON')
    .action(
      async (
        o: CommonOpts & {
          items: string;
          packageItems: string;
          maxK: string;
          contexts: string;
          names: string;
          seed: string;
          out?: string;
        },
      ) => {
        const pool = (name: string, v: string): 'heldout' | 'train' => {
          if (v !== 'heldout' && v !== 'train')
            throw new Error(`${name} must be heldout or train, got "${v}"`);
          return v;
        };
        const pools = { contexts: pool('--contexts', o.contexts), names: pool('--names', o.names) };
        const per = parseInt1('--items', o.items)!;
        const perPackage = parseInt1('--package-items', o.packageItems)!;
        const maxK = parseInt1('--max-k', o.maxK)!;
        const seed = parseInt1('--seed', o.seed, 0)!;
        const world = await loadWorldOption(o.world);
        const [
          { END_OF_TEXT, inferenceProbes, packageProbes },
          { scoreItems, personaCheck },
          { mean },
          { terminalProgress },
        ] = await Promise.all([
          import('../world/index.ts'),
          import('../pipeline/measure.ts'),
          import('../measurement/stats.ts'),
          import('./progress.ts'),
        ]);
        const ks = Array.from({ length: maxK + 1 }, (_, k) => k);
        const inference = inferenceProbes(world, { seed, ks, inferencePerCell: per, pools });
        const pkg = packageProbes(world, { seed, packagePerCell: perPackage, pools });
        const h = await handleFor(o.model);
        const longest = Math.max(
          ...[...inference, ...pkg].map(
            (it) =>
              h.tokenizer.encode(END_OF_TEXT + it.prompt).length +
              Math.max(...[...it.good, ...it.bad].map((x) => h.tokenizer.encode(x).length)),
          ),
        );
        if (longest - 1 > h.model.config.maxSeqLen)
          throw new Error(
            `probes with up to ${maxK} earlier scenes need ${longest - 1} positions; the model's context is ${h.model.config.maxSeqLen} (lower --max-k)`,
          );
        const pInf = scoreItems(h.model, h.tokenizer, inference, terminalProgress, 'persona inference');
        const pPkg = scoreItems(h.model, h.tokenizer, pkg, terminalProgress, 'package deal');
        const check = personaCheck(inference, pInf, pkg, pPkg, maxK);
        process.stdout.write(
          `contexts ${pools.contexts}, names ${pools.names}; mean r over k >= 1: ${f(check.meanCorrelation)}${check.emerged ? '' : ' (not emerged)'}\n`,
        );
        process.stdout.write(
          'k\tn\tP(consistent)\tBayes\tr\tMAE\tresidual (logit sd)\tweight of each earlier scene, first..last: network | Bayes (mean, alike in expectation)\n',
        );
        for (const p of check.byK) {
          const ev = check.evidence?.find((e) => e.k === p.k);
          const w = (xs: number[] | undefined) => (xs && xs.length ? xs.map((x) => f(x, 2)).join(' ') : '-');
          process.stdout.write(
            `${p.k}\t${p.n}\t${f(p.model)}\t${f(p.bayes)}\t${f(p.correlation)}\t${f(p.mae)}\t${ev ? f(ev.residualSd, 2) : '-'}\t${w(ev?.network)} | ${ev && ev.bayes.length ? f(mean(ev.bayes), 2) : '-'}\n`,
          );
        }
        for (const d of check.packageDeal)
          process.stdout.write(
            `package deal after all-${d.evidence} scenes: ${f(d.model)} (Bayes ${f(d.bayes)}, n ${d.n})\n`,
          );
        writeJson(o.out, { model: o.model, pools, seed, ...check });
      },
    );
}
