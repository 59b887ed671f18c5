/**
 * Provider specs for the command line:
 *
 *   local:<model folder>              a PSM Lab model folder, run in-process
 *   gguf:<file.gguf>                  a GGUF file through node-llama-cpp
 *   openai:<model>@<base URL>         an OpenAI-compatible endpoint, e.g. openai:tiny@http://127.0.0.1:8000/v1
 *   openai:<model>                    the same at $OPENAI_BASE_URL, or https://api.openai.com/v1
 *
 * API keys never appear in a spec (command lines are visible to other users): they come from environment
 * variables. Building a provider opens nothing; models load and sockets open on first use.
 */
import * as path from 'node:path';
import { DiskCache, withCache } from './cache.ts';
import { GgufProvider } from './gguf.ts';
import { LocalProvider } from './local.ts';
import { OpenAICompatProvider, type OpenAICompatOptions } from './openai-compat.ts';
import { ProviderError, type Provider } from './types.ts';

export type ProviderSpec =
  | { kind: 'local'; dir: string }
  | { kind: 'gguf'; file: string }
  | { kind: 'openai'; model: string; baseUrl: string };

export function parseProviderSpec(spec: string, env: NodeJS.ProcessEnv = process.env): ProviderSpec {
  const m = /^(local|gguf|openai):(.+)$/.exec(spec.trim());
  if (!m)
    throw new ProviderError(
      `provider "${spec}": expected local:<model folder>, gguf:<file.gguf> or openai:<model>[@<base URL>]`,
    );
  const [, kind, rest] = m;
  if (kind === 'local') return { kind, dir: rest };
  if (kind === 'gguf') return { kind, file: rest };
  const at = rest.search(/@https?:\/\//);
  const model = at >= 0 ? rest.slice(0, at) : rest;
  const baseUrl = at >= 0 ? rest.slice(at + 1) : (env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1');
  if (!model) throw new ProviderError(`provider "${spec}": the model name is empty`);
  return { kind: 'openai', model, baseUrl };
}

export interface CreateProviderOptions {
  /** API key for openai specs (read it from the environment; never from argv). */
  apiKey?: string;
  /** On-disk cache folder; answers are cached there when given. */
  cacheDir?: string;
  /** Extra options for OpenAI-compatible endpoints (concurrency, retries, timeouts). */
  openai?: Partial<OpenAICompatOptions>;
  /** local and gguf specs: "psm" or a template file instead of the model's own chat template. */
  chatTemplate?: string;
}

export function createProvider(spec: string | ProviderSpec, opts: CreateProviderOptions = {}): Provider {
  const s = typeof spec === 'string' ? parseProviderSpec(spec) : spec;
  let p: Provider;
  if (s.kind === 'local') p = new LocalProvider(s.dir, { chatTemplateFile: opts.chatTemplate });
  else if (s.kind === 'gguf') p = new GgufProvider({ modelPath: s.file, chatTemplate: opts.chatTemplate });
  else
    p = new OpenAICompatProvider({ ...opts.openai, baseUrl: s.baseUrl, model: s.model, apiKey: opts.apiKey });
  return opts.cacheDir ? withCache(p, new DiskCache(path.resolve(opts.cacheDir))) : p;
}
