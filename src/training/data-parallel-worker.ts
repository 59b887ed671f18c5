/**
 * The loop of one data-parallel training worker (started by data-parallel.ts): wait for a step, copy the
 * shared weights into this thread's model, run forward and backward on this worker's sequences, write the
 * gradients and the loss to shared memory, signal done.
 */
import { workerData } from 'node:worker_threads';
import { LlamaModel } from '../model/llama.ts';
import { configureBackend } from '../tensor/backend.ts';
import type { Batch } from './data.ts';
import { batchViews, CMD, DONE, EXIT_COMMAND, STATUS, type WorkerInit } from './data-parallel.ts';
import { fusedLossAndGradients } from './fused-step.ts';
import { batchLoss } from './trainer.ts';

const init = workerData as WorkerInit;
// One intra-op thread per worker: the workers themselves fill the cores.
configureBackend({ threads: 1 });
const model = new LlamaModel(init.config);
const weights = new Float32Array(init.weights);
const gradients = new Float32Array(init.gradients);
const control = new Int32Array(init.control);
const views = batchViews(init.batch, init.maxRows);
const result = new Float64Array(init.result);

function runStep(): void {
  for (const { name, offset, size } of init.params) {
    const t = model.params.get(name)!;
    t.data.set(weights.subarray(offset, offset + size));
    t.grad = null;
  }
  const sequences = views.meta[0];
  const seqLen = views.meta[1];
  const rows = sequences * seqLen;
  const batch: Batch = {
    batch: sequences,
    seqLen,
    inputs: views.inputs.slice(0, rows),
    targets: views.targets.slice(0, rows),
    weights: views.meta[2] ? views.weights.slice(0, rows) : null,
  };
  const fused = fusedLossAndGradients(model, batch);
  if (fused) {
    result[0] = fused.loss;
    result[1] = fused.tokens;
  } else {
    const { loss, tokens } = batchLoss(model, batch);
    result[0] = loss.item();
    result[1] = tokens;
    loss.backward();
  }
  for (const { name, offset, size } of init.params) {
    const g = model.params.get(name)!.grad;
    if (g) gradients.set(g, offset);
    else gradients.fill(0, offset, offset + size);
  }
}

let seen = 0;
for (;;) {
  Atomics.wait(control, CMD, seen);
  const cmd = Atomics.load(control, CMD);
  if (cmd === EXIT_COMMAND) break;
  if (cmd === seen) continue;
  seen = cmd;
  try {
    runStep();
  } catch (e) {
    init.errors.postMessage(e instanceof Error ? e.message : String(e));
    Atomics.store(control, STATUS, 1);
  }
  Atomics.store(control, DONE, cmd);
  Atomics.notify(control, DONE);
}
