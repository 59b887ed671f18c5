/**
 * The two paths of decoding one sequence, in one process: the same random weights in a WeightMemory (projections
 * on the WebAssembly matvec, src/model/fused-decode.ts's one-row step, where it streams them faster than ONNX
 * Runtime's kernel on this machine: see matvecPaysOff) and in plain arrays (the fused ONNX Runtime graphs), greedy generation of --tokens after a --prompt-tokens prompt, the two models' runs alternated so that
 * the machine's drift (neighbours, frequency) falls on both alike. Reports each path's median CPU time per run and
 * tokens per CPU-second, and whether the two greedy sequences agree (they must: the paths compute the same bits).
 *
 * Run: npx tsx bench/decode-paths.ts [--size ref|large] [--tokens 100] [--prompt-tokens 16] [--runs 15]
 *      [--warmup 20] [--threads 1]
 * Last line: decode_paths_ratio=X (plain arrays' median CPU time over the WeightMemory's: above 1, the WeightMemory's
 * path is faster).
 */
import { parseLlamaConfig } from '../src/model/config.ts';
import { generate } from '../src/model/generate.ts';
import { LlamaModel, setWeightMemoryMinParams } from '../src/model/llama.ts';
import { configureBackend } from '../src/tensor/backend.ts';
import { matvecPaysOff } from '../src/tensor/ort-matmul.ts';
import { arg, cpuMsSince, GENERATION_SIZES, intArg, median, promptIds } from './generation-common.ts';

const size = (arg('size') ?? 'ref') as keyof typeof GENERATION_SIZES;
if (!(size in GENERATION_SIZES))
  throw new Error(`--size must be one of ${Object.keys(GENERATION_SIZES).join(', ')}`);
const tokens = intArg('tokens', 100);
const runs = intArg('runs', 15);
const warmup = intArg('warmup', 20);
const threads = intArg('threads', 1);
configureBackend({ threads });

const config = parseLlamaConfig(GENERATION_SIZES[size]);
const made = (minParams: number): LlamaModel => {
  setWeightMemoryMinParams(minParams);
  const model = new LlamaModel(config).initialize(1);
  setWeightMemoryMinParams();
  return model;
};
const paths = [
  { name: 'WeightMemory', model: made(0), cpuMs: [] as number[], out: [] as number[] },
  { name: 'plain arrays (fused graphs)', model: made(Infinity), cpuMs: [] as number[], out: [] as number[] },
];
const memory = paths[0].model.weightMemory;
if (!memory) throw new Error('this runtime could not make a WeightMemory');
// Where ONNX Runtime's kernel streams these weights faster, the WeightMemory's model decodes on the graphs too.
const oneRow = matvecPaysOff(memory, threads);
const prompt = promptIds(intArg('prompt-tokens', 16), config.vocabSize);
const once = (model: LlamaModel) => generate(model, prompt, { maxNewTokens: tokens, temperature: 0 });

for (let w = 0; w < warmup; w++) for (const p of paths) once(p.model);
for (let r = 0; r < runs; r++)
  for (const p of paths) {
    const start = process.cpuUsage();
    p.out = once(p.model);
    p.cpuMs.push(cpuMsSince(start));
  }

console.log(
  `model: --size ${size}: dim ${config.dim}, ${config.nLayers} layers, ${config.nHeads}/${config.nKvHeads} heads; ${tokens} tokens after ${prompt.length}, ${runs} runs each alternated after ${warmup} warm-ups`,
);
console.log(
  `the WeightMemory's model decodes on ${oneRow ? 'the one-row step (WebAssembly matvec)' : "the fused graphs (ONNX Runtime's kernel streams these weights faster here)"}`,
);
for (const p of paths) {
  const ms = median(p.cpuMs);
  console.log(
    `${p.name.padEnd(28)} ${ms.toFixed(1)} CPU ms per run (median)  ${((1000 * tokens) / ms).toFixed(1)} tokens per CPU-second   runs ${p.cpuMs.map((v) => v.toFixed(0)).join('/')}`,
  );
}
const agree = paths[0].out.every((t, i) => t === paths[1].out[i]);
console.log(`greedy sequences ${agree ? 'agree' : 'DIFFER'} (${paths[0].out.length} tokens)`);
console.log(`decode_paths_ratio=${(median(paths[1].cpuMs) / median(paths[0].cpuMs)).toFixed(3)}`);
if (!agree) process.exitCode = 1;
