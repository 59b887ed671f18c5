/** `psm serve`: the OpenAI-compatible server and the local engine behind it (see docs/serve-and-audit.md). */
export {
  LocalEngine,
  ContextLengthError,
  holdBack,
  topK,
  type EngineOptions,
  type GenerateParams,
  type GenerateOutput,
  type TokenInfo,
} from '../providers/local-engine.ts';
export { PsmServer, startServer, type ServeOptions, type RunningServer } from './server.ts';
export { ApiError } from './errors.ts';
export {
  buildInterventionHooks,
  loadVectorLibrary,
  InterventionError,
  type NamedVector,
  type VectorLibrary,
} from '../providers/interventions.ts';
export { ChatRequestSchema, CompletionRequestSchema, PsmExtrasSchema } from './schema.ts';
