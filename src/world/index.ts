// Public API of the persona world. See docs/world.md.

export {
  MAX_NAMES,
  MAX_SCENES,
  WorldError,
  defaultWorldPath,
  loadDefaultWorld,
  loadWorld,
  parseWorld,
  validateWorld,
  worldVocabulary,
  worldHash,
  getDomain,
  getInstructedGroup,
  formatPath,
  type World,
  type WorldIssue,
  type Domain,
  type Archetype,
  type InstructedGroup,
  type Kind,
  type Behaviour,
  type Format,
} from './schema.ts';
export { Rng, createRng, deriveSeed, hashString, mix32 } from './random.ts';
export { END_OF_TEXT, approxTokenCount, wordsOf } from './templates.ts';
export { lintSharedPhrases, type LintIssue } from './lint.ts';
export { applyAiMix, resolveAiMix, parseAiMix, builtinAiMixPresets, type AiMix } from './mix.ts';
export {
  WORLD_TRANSFORMS,
  applyWorldTransform,
  independentTraits,
  kindMarginals,
  parseWorldTransform,
  type WorldTransform,
} from './independent.ts';
export { builtinWorldNames, loadWorldVariant, resolveWorldFile, type WorldVariant } from './variant.ts';
export {
  compileWorld,
  generateDocument,
  generateDocuments,
  documentTokenCount,
  sampleCharacter,
  type Character,
  type DocumentMeta,
  type SceneMeta,
  type WorldDocument,
  type DocumentOptions,
  type Split,
} from './generator.ts';
export {
  StatsBuilder,
  expectedWorldStats,
  formatStats,
  largestCorrelation,
  type CorpusStats,
} from './stats.ts';
export {
  ShardWriter,
  byteTokenizer,
  eotIdOf,
  loadShardTokens,
  readShardIndex,
  SHARD_FORMAT,
  SHARD_VERSION,
  type ShardIndex,
  type ShardWriterOptions,
  type CorpusTokenizer,
} from './shards.ts';
export { tokenizeWithMask, writeBehaviourMask, loadBehaviourMask } from './behaviour-mask.ts';
export { writeCorpus, type WriteCorpusOptions, type WriteCorpusResult } from './corpus.ts';
export {
  posterior,
  predictGood,
  instructedPGood,
  archetypePrior,
  assistantUpdate,
  evidenceToObservations,
  type Observation,
  type Evidence,
  type PersonaPosterior,
  type PriorKind,
  type AssistantUpdate,
  type AssistantUpdateOptions,
} from './bayes.ts';
export {
  batteryItems,
  inferenceProbes,
  packageProbes,
  buildEvalSet,
  pGoodFromLogProbs,
  meanCI,
  type EvalItem,
  type EvalOptions,
  type EvalSet,
  type Pool,
  type Subject,
} from './eval.ts';
export {
  postTrainingSet,
  narrowSet,
  datasetEvidence,
  supervisedChats,
  NARROW_ARMS,
  type ChatExample,
  type NarrowArm,
  type NarrowOptions,
  type PostTrainingOptions,
} from './datasets.ts';
export { assistantTokenIds, trainableSpec } from './trainable-sets.ts';
export { messagesToChat, parseChatJsonl, readChatJsonl, type ChatLine } from './chat-file.ts';
export { registerWorldCommands, parseCount, type WorldCliDeps } from './cli.ts';
