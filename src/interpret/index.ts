/**
 * Inside the model: persona vectors, monitoring, steering, fine-tune shift prediction and data screening, persona
 * space and the assistant axis, and a linear probe of the archetype posterior (docs/interpret.md). `interpretRun`
 * (run.ts, one function per phase in phases/) is the one-call entry point the `psm run` pipeline uses for one seed.
 */
export * from './activations.ts';
export * from './contexts.ts';
export * from './scoring.ts';
export * from './vectors.ts';
export * from './steer.ts';
export * from './monitor.ts';
export * from './shift.ts';
export * from './screen.ts';
export * from './prevent.ts';
export * from './ablation-subspaces.ts';
export * from './space.ts';
export * from './probe.ts';
export * from './item-seeds.ts';
export * from './types.ts';
export * from './run.ts';
export * from './figures.ts';
