/**
 * The preventative trials' plain fine-tune is the pipeline's cheat arm with all parameters: the same examples, recipe
 * and seed from the post-trained model. The pipeline hands that arm's model to the trials instead of training it
 * again; this checks that the two fine-tunes are the same model to the bit, and that the trials come out the same.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashModel, loadModelHandle } from '../../src/interpret/activations.ts';
import { preventativeItems } from '../../src/interpret/prevent.ts';
import { preventativeTrials } from '../../src/interpret/shift.ts';
import { preventativeSteeringHooks } from '../../src/interpret/steer.ts';
import { parseLlamaConfig } from '../../src/model/config.ts';
import { LlamaModel } from '../../src/model/llama.ts';
import { saveModelFolder } from '../../src/model/weights.ts';
import { DEFAULT_CONFIG, type ExperimentConfig } from '../../src/pipeline/config.ts';
import { interpretStudies } from '../../src/pipeline/experiment.ts';
import { configureBackend } from '../../src/tensor/backend.ts';
import { tokenizerToJson, trainBpe } from '../../src/tokenizer/index.ts';
import { fineTuneInPlace } from '../../src/training/finetune.ts';
import {
  END_OF_TEXT,
  generateDocuments,
  loadDefaultWorld,
  narrowSet,
  supervisedChats,
  trainableSpec,
} from '../../src/world/index.ts';

configureBackend({ threads: 1 });
const world = loadDefaultWorld();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-plain-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the preventative trials reuse the cheat arm', () => {
  it('the cheat arm with all parameters is the plain trial fine-tune, and the trials agree when it is reused', () => {
    const tokenizer = trainBpe(
      [...generateDocuments(world, { seed: 2, documents: 120 })].map((d) => d.text),
      { vocabSize: 300, specialTokens: [END_OF_TEXT] },
    );
    const post = new LlamaModel(
      parseLlamaConfig({
        vocabSize: 300,
        dim: 16,
        nLayers: 2,
        nHeads: 2,
        nKvHeads: 2,
        hiddenDim: 32,
        maxSeqLen: 256,
      }),
    ).initialize(4);
    const postDir = path.join(tmp, 'posttrain');
    const tokenizerFile = { 'tokenizer.json': JSON.stringify(tokenizerToJson(tokenizer)) };
    saveModelFolder(postDir, post, tokenizerFile);
    const c: ExperimentConfig = {
      ...DEFAULT_CONFIG,
      finetune: { ...DEFAULT_CONFIG.finetune, examples: 24, steps: 3, batchSize: 4 },
    };
    const seed = 3;
    const domain = world.datasets.narrow!.domain;
    const pv = interpretStudies(c, world, seed, domain).preventative!;
    expect(pv.plainArm).toEqual({ arm: 'cheat', trainable: 'all' });

    // The arm as the pipeline trains it (experiment.ts narrowArms / supervisedStage).
    const arm = loadModelHandle(postDir).model;
    fineTuneInPlace(arm, supervisedChats(tokenizer, narrowSet(world, 'cheat', { seed, count: 24, domain })), {
      trainable: trainableSpec('all', tokenizer),
      steps: c.finetune.steps,
      batchSize: c.finetune.batchSize,
      lr: c.finetune.lr.all,
      seed,
    });
    const armDir = path.join(tmp, 'ft-cheat-all');
    saveModelFolder(armDir, arm, tokenizerFile);

    const { plainArm: _plainArm, examples, ...recipe } = pv;
    const push = Float32Array.from({ length: 16 }, (_, i) => Math.cos(i));
    const trial = (plain?: () => ReturnType<typeof loadModelHandle>) =>
      preventativeTrials(
        () => loadModelHandle(postDir),
        examples,
        [
          {
            method: 'add',
            vector: 'test',
            layers: [0],
            alpha: 1,
            hooks: preventativeSteeringHooks(push, 0, 1),
          },
        ],
        preventativeItems(world, 4, seed),
        domain,
        { ...recipe, ...(plain ? { plain } : {}), axisPosition: (h) => hashModel(h.model).charCodeAt(0) },
      );
    // Each model's axis position here reads its weights' hash: equal trials mean the same models, to the bit.
    const retrained = trial();
    const reused = trial(() => loadModelHandle(armDir));
    expect(reused).toEqual(retrained);
    // The trial's own recipe on its own examples makes the arm's model to the bit.
    const plainAgain = loadModelHandle(postDir).model;
    fineTuneInPlace(plainAgain, supervisedChats(tokenizer, examples), recipe);
    expect(hashModel(plainAgain)).toBe(hashModel(arm));
  });
});
