/** Providers: one narrow interface to any model (see types.ts and docs/serve-and-audit.md). */
export * from './types.ts';
export { DiskCache, withCache, cacheKey, canonicalJson, redactLocation } from './cache.ts';
export { LocalProvider } from './local.ts';
export { GgufProvider, nodeLlamaCppAvailable, type GgufOptions } from './gguf.ts';
export { OpenAICompatProvider, type OpenAICompatOptions } from './openai-compat.ts';
export { createProvider, parseProviderSpec, type ProviderSpec, type CreateProviderOptions } from './spec.ts';
export { Semaphore, QueueFullError, AbortError, backoffDelay, parseRetryAfter, sleep } from './limit.ts';
