/**
 * What every phase of `interpretRun` reads: the run's options with their defaults resolved, and the post-trained
 * model, loaded once and shared by the phases.
 */
import type { World } from '../../world/index.ts';
import type { ModelHandle } from '../activations.ts';
import type { InterpretRunOptions } from '../types.ts';

export interface InterpretContext {
  opts: InterpretRunOptions;
  world: World;
  /** Held-out items per domain: each phase sizes its item sets from it. */
  itemsPerDomain: number;
  /** Steering strengths of the dose-response. */
  alphas: number[];
  /** The run's item seed: with ITEM_SEED_OFFSETS (item-seeds.ts), the seed of every item set. */
  itemSeed: number;
  /** The narrow fine-tune's domain ('' when the world has none). */
  finetuneDomain: string;
  /** The world's domains, one persona trait each. */
  traits: string[];
  /** The post-trained model: vectors, monitoring, steering and persona space are its. */
  post: ModelHandle;
  nLayers: number;
}
