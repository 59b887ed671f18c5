/**
 * The subspaces concept ablation can project out during a fine-tune (prevent.ts builds them; this file is apart
 * from the model code so that configuration can name them), each but 'traits-whole' with the span of the fine-tune
 * domain's own vectors taken out so the narrow behaviour can still be learned:
 * - 'shift': CAFT's own directions, from the plain fine-tune's activation change on off-target chats
 *   (shiftDirections), as many per layer as 'traits' has; the goal's method at version 15;
 * - 'traits': the off-target traits' persona vectors, both extraction methods (the pipeline's before);
 * - 'traits-whole': the same vectors whole, the one subspace that keeps the part they share with the fine-tune
 *   domain's vectors (the bad persona all the traits have in common), so the narrow behaviour has to be learned
 *   along other directions; the goal's method since version 16, chosen on the development models
 *   (docs/interpret.md);
 * - 'archetypes': persona space's archetype directions; 'persona': traits and archetypes;
 * - 'random': the control, random directions, as many per layer as 'traits' has: removing any directions while
 *   training changes what the fine-tune learns, and this is how much.
 */
export const ABLATION_SUBSPACES = [
  'shift',
  'traits',
  'traits-whole',
  'persona',
  'archetypes',
  'random',
] as const;
export type AblationSubspace = (typeof ABLATION_SUBSPACES)[number];

/**
 * The subspaces the pipeline ablates, one trial each: the off-target traits' vectors whole (the preventative goal is read
 * on them), the fine-tune's shift (CAFT's directions), the traits' vectors orthogonal to the fine-tune domain's (the
 * goal's method before version 15) and the random control of the same size.
 */
export const DEFAULT_ABLATION_SUBSPACES: readonly AblationSubspace[] = [
  'traits-whole',
  'shift',
  'traits',
  'random',
];

/** `name` as an ablation subspace, or a clear error that names `what` asked for it. */
export function checkAblationSubspace(name: string, what = 'concept ablation'): AblationSubspace {
  if (!(ABLATION_SUBSPACES as readonly string[]).includes(name))
    throw new Error(`${what}: unknown subspace "${name}" (${ABLATION_SUBSPACES.join(', ')})`);
  return name as AblationSubspace;
}
