/**
 * `psm profile`: where the time goes. `step` times the default experiment's pre-training step (its phases as
 * `psm run` trains, the fused step's graph node by node, then the per-kernel path kernel by kernel); `run` reads a run folder's stage records into a table of where each
 * seed's minutes went.
 */
import type { Command } from 'commander';
import { intOption, namesOption } from './options.ts';

function ms(x: number): string {
  return x.toFixed(1).padStart(8);
}

function pct(part: number, whole: number): string {
  return `${((100 * part) / whole).toFixed(0).padStart(3)}%`;
}

/** The `top` largest kernels as table rows, the rest summed in one. */
function kernelRows(
  out: string[],
  kernels: readonly { kernel: string; calls: number; ms: number }[],
  total: number,
  top: number,
): void {
  for (const x of kernels.slice(0, top))
    out.push(`  ${x.kernel.padEnd(46)}${x.calls.toFixed(0).padStart(6)}${ms(x.ms)}   ${pct(x.ms, total)}`);
  const rest = kernels.slice(top);
  if (rest.length === 0) return;
  const restMs = rest.reduce((s, x) => s + x.ms, 0);
  out.push(`  ${`(${rest.length} more)`.padEnd(46)}${''.padStart(6)}${ms(restMs)}   ${pct(restMs, total)}`);
}

async function profileStep(o: {
  preset?: string;
  config?: string;
  steps: number;
  warmup: number;
  workers?: number;
  batch?: number;
  context?: number;
  top: number;
  json?: boolean;
}): Promise<void> {
  const [
    { resolveConfig },
    { experimentModelConfig },
    { configureBackend },
    { profileTrainingStep },
    { terminalProgress },
  ] = await Promise.all([
    import('../pipeline/config.ts'),
    import('../pipeline/experiment.ts'),
    import('../tensor/backend.ts'),
    import('../training/step-profile.ts'),
    import('./progress.ts'),
  ]);
  const config = resolveConfig({ preset: o.preset, file: o.config });
  const backend = configureBackend();
  const model = experimentModelConfig(config, config.tokenizer.vocabSize);
  const batch = o.batch ?? config.pretrain.batchSize;
  const context = o.context ?? config.model.contextLength;
  const workers = o.workers ?? config.pretrain.workers;
  const bars = {
    'as trained': terminalProgress('profile: as trained', o.steps, 'steps'),
    'fused graph': terminalProgress('profile: fused graph', o.steps, 'steps'),
    kernels: terminalProgress('profile: kernels', o.steps, 'steps'),
  };
  const p = await profileTrainingStep({
    model,
    batch,
    context,
    workers,
    steps: o.steps,
    warmup: o.warmup,
    onStep: (view, done) => {
      bars[view].update(done);
      if (done === o.steps) bars[view].stop();
    },
  });
  if (o.json) {
    process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
    return;
  }
  const a = p.asTrained;
  const k = p.kernels;
  const out: string[] = [
    `model: vocab ${model.vocabSize}, dim ${model.dim}, ${model.nLayers} layers, ${model.nHeads}/${model.nKvHeads} heads, SwiGLU ${model.hiddenDim}; batch ${batch} x context ${context} = ${p.tokensPerStep} tokens a step`,
    `engine: ${backend.name}, ${p.threads} kernel thread(s); ${o.steps} timed steps after ${o.warmup} warm-up`,
    '',
    `As psm run trains (${a.workers} data-parallel worker${a.workers === 1 ? '' : 's'}): median step ${a.stepMs.median.toFixed(1)} ms (best ${a.stepMs.best.toFixed(1)}), ${a.tokensPerSecond.toFixed(0)} tokens/s`,
    `  phase                       ms/step   share`,
    ...(
      [
        ['batch (token windows)', a.phases.batch],
        ['loss and gradients', a.phases.gradients],
        ['gradient clipping', a.phases.clip],
        ['AdamW update', a.phases.update],
      ] as const
    ).map(([label, v]) => `  ${label.padEnd(26)}${ms(v)}   ${pct(v, a.stepMs.median)}`),
  ];
  const f = p.fusedGraph;
  if (f) {
    out.push(
      '',
      `Inside the fused step's graph (one JS thread, ORT's profiler on every node): median step ${f.stepMs.median.toFixed(1)} ms (best ${f.stepMs.best.toFixed(1)})`,
      `  kernel graph                                    nodes   ms/step   share`,
    );
    const total = f.nodes.reduce((s, x) => s + x.ms, 0) + f.outsideNodesMs;
    kernelRows(out, f.nodes, total, o.top);
    out.push(
      `  ${"outside the graph's nodes (JS, AdamW, ORT)".padEnd(46)}${''.padStart(6)}${ms(f.outsideNodesMs)}   ${pct(f.outsideNodesMs, total)}`,
      `  phases: batch ${f.phases.batch.toFixed(1)} ms, loss and gradients ${f.phases.gradients.toFixed(1)}, clipping ${f.phases.clip.toFixed(1)}, AdamW ${f.phases.update.toFixed(1)}`,
    );
  } else out.push('', 'This model trains through autograd, not the fused step: its kernels follow.');
  out.push(
    '',
    `Kernel by kernel on the per-kernel path (autograd, which hooks inside a block, partial adapters and other architectures take; one JS thread): median step ${k.stepMs.median.toFixed(1)} ms (best ${k.stepMs.best.toFixed(1)})`,
    `  kernel                                          calls   ms/step   share`,
  );
  const total = k.kernels.reduce((s, x) => s + x.ms, 0) + k.outsideKernelsMs;
  kernelRows(out, k.kernels, total, o.top);
  out.push(
    `  ${'outside the kernels (autograd, copies, alloc)'.padEnd(46)}${''.padStart(6)}${ms(k.outsideKernelsMs)}   ${pct(k.outsideKernelsMs, total)}`,
    `  ${'garbage collection pauses (anywhere in the step)'.padEnd(46)}${''.padStart(6)}${ms(k.gcMs)}   ${pct(k.gcMs, total)}`,
    `  phases: batch ${k.phases.batch.toFixed(1)} ms, loss and gradients ${k.phases.gradients.toFixed(1)}, clipping ${k.phases.clip.toFixed(1)}, AdamW ${k.phases.update.toFixed(1)}`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
}

async function profileRun(runDir: string, o: { json?: boolean; seed?: string[] }): Promise<void> {
  const { readStageTimes, stageTimeTable } = await import('../pipeline/stage-times.ts');
  let seeds = readStageTimes(runDir);
  if (o.seed) {
    const known = seeds.map((s) => s.seed);
    const unknown = o.seed.filter((s) => !known.includes(s));
    if (unknown.length > 0)
      throw new Error(
        `--seed: no seed folder ${unknown.join(', ')} in ${runDir} (it has ${known.join(', ')})`,
      );
    seeds = seeds.filter((s) => o.seed!.includes(s.seed));
  }
  const { rows, seedSeconds } = stageTimeTable(seeds);
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ seeds, rows, seedSeconds }, null, 2)}\n`);
    return;
  }
  const perSeed = seeds.map((s) => {
    const done = s.stages.every((t) => t.seconds !== null);
    const sum = s.stages.reduce((a, t) => a + (t.seconds ?? 0), 0);
    return `${s.seed} ${(sum / 60).toFixed(1)} min${done ? '' : ' (unfinished)'}`;
  });
  const out = [
    `${runDir}: ${seeds.length} seed folder(s): ${perSeed.join(', ')}`,
    `mean of the finished seeds, per seed:`,
    `  stage                     stages   seconds   minutes   share`,
    ...rows.map((r) => {
      const sub = r.label.startsWith('interpret: ');
      return `  ${(sub ? `  ${r.label.slice('interpret: '.length)}` : r.label).padEnd(26)}${(sub ? '' : String(r.stages)).padStart(6)}${r.seconds.toFixed(1).padStart(10)}${(r.seconds / 60).toFixed(2).padStart(10)}   ${(100 * r.share).toFixed(0).padStart(3)}%`;
    }),
    `  ${'total'.padEnd(26)}${''.padStart(6)}${seedSeconds.toFixed(1).padStart(10)}${(seedSeconds / 60).toFixed(2).padStart(10)}`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

export function registerProfileCommand(program: Command): void {
  const profile = program
    .command('profile')
    .description('Where the time goes: a training step, or a whole run');
  profile
    .command('step')
    .description(
      "Time the experiment's pre-training step on random tokens: its phases as psm run trains (data-parallel workers), then the fused step's graph node by node (ORT's profiler), then every kernel call of the per-kernel (autograd) path, with the time outside the kernels and the garbage collector's share",
    )
    .option('--preset <name>', 'default | quick')
    .option('--config <file>', 'experiment config (YAML), merged over the preset')
    .option('--steps <n>', 'timed steps per view', intOption('--steps', 1, 10_000), 10)
    .option('--warmup <n>', 'untimed steps first', intOption('--warmup', 0, 1000), 3)
    .option(
      '--workers <n>',
      "data-parallel workers of the as-trained view (default: the config's)",
      intOption('--workers', 1, 16),
    )
    .option(
      '--batch <n>',
      "batch size (default: the config's pre-training batch)",
      intOption('--batch', 1, 4096),
    )
    .option('--context <n>', "context length (default: the config's)", intOption('--context', 1, 1 << 16))
    .option('--top <n>', 'kernels listed (the rest are summed)', intOption('--top', 1, 1000), 15)
    .option('--json', 'print the profile as JSON')
    .action(profileStep);
  profile
    .command('run')
    .description(
      "Where a run's minutes went: each stage group's mean seconds per seed, the interpretation's phases under it",
    )
    .argument('<run-dir>', 'a psm run folder')
    .option(
      '--seed <folders>',
      'only these seed folders, comma-separated (e.g. the seeds that had the machine to themselves)',
      namesOption,
    )
    .option('--json', 'print the stage times as JSON')
    .action(profileRun);
}
