/**
 * Where a model's chat template comes from:
 *
 *   a model folder   tokenizer_config.json's `chat_template` (a string, or a list of named templates of which
 *                    "default" is used), with its bos_token / eos_token; a PSM Lab model folder without one speaks
 *                    the PSM chat format, an imported one without one has none (chat then asks for --chat-template)
 *   a GGUF file      `tokenizer.chat_template`, with the BOS / EOS tokens named by tokenizer.ggml.*_token_id
 *   an override      `psm` (PSM Lab's format) or a file: a .jinja template, or a tokenizer_config.json
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChatTemplate, ChatTemplateError } from './chat-template.ts';
import { GgufValueType, type GgufHeader } from './gguf.ts';
import { readJsonObject } from './hf-tokenizer.ts';

/** A special token in tokenizer_config.json: a string, or an AddedToken object {content, ...}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

const NAMED_TOKENS = ['unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'] as const;

/**
 * The template of a tokenizer_config.json object, or null when it has none. `origin` names the file in errors;
 * a list of named templates gives its "default" one.
 */
export function chatTemplateFromTokenizerConfig(
  config: Record<string, unknown>,
  origin: string,
): ChatTemplate | null {
  const raw = config.chat_template;
  if (raw === undefined || raw === null) return null;
  let source: string;
  if (typeof raw === 'string') source = raw;
  else if (Array.isArray(raw)) {
    const named = raw.filter(
      (t): t is { name: string; template: string } =>
        !!t &&
        typeof t === 'object' &&
        typeof (t as { name?: unknown }).name === 'string' &&
        typeof (t as { template?: unknown }).template === 'string',
    );
    if (named.length !== raw.length)
      throw new ChatTemplateError(`${origin}: chat_template must be a string or a list of {name, template}`);
    const def = named.find((t) => t.name === 'default');
    if (!def)
      throw new ChatTemplateError(
        `${origin}: chat_template lists ${named.map((t) => `"${t.name}"`).join(', ')} but no "default" template`,
      );
    source = def.template;
  } else throw new ChatTemplateError(`${origin}: chat_template must be a string, got ${typeof raw}`);
  const tokens: Record<string, string> = {};
  for (const k of NAMED_TOKENS) {
    const t = tokenText(config[k]);
    if (t !== undefined) tokens[k] = t;
  }
  return ChatTemplate.jinja(source, {
    origin: `${origin} (chat_template)`,
    bosToken: tokenText(config.bos_token),
    eosToken: tokenText(config.eos_token),
    tokens,
  });
}

/** The BOS and EOS tokens a GGUF file names (tokenizer.ggml.bos_token_id / eos_token_id into tokenizer.ggml.tokens). */
function ggufSpecialTokens(header: GgufHeader): { bosToken?: string; eosToken?: string } {
  const tokens = header.metadata.get('tokenizer.ggml.tokens');
  const list = tokens?.type === GgufValueType.ARRAY ? tokens.value : [];
  const tokenOf = (key: string): string | undefined => {
    const v = header.metadata.get(key);
    if (v === undefined || typeof v.value !== 'number') return undefined;
    const s = list[v.value];
    return typeof s === 'string' ? s : undefined;
  };
  return {
    bosToken: tokenOf('tokenizer.ggml.bos_token_id'),
    eosToken: tokenOf('tokenizer.ggml.eos_token_id'),
  };
}

/** The template a GGUF file carries, or null when it has none. */
export function chatTemplateFromGguf(header: GgufHeader): ChatTemplate | null {
  const t = header.metadata.get('tokenizer.chat_template');
  if (t === undefined) return null;
  if (t.type !== GgufValueType.STRING)
    throw new ChatTemplateError(`${header.source}: tokenizer.chat_template must be a string`);
  return ChatTemplate.jinja(t.value, {
    origin: `${header.source} (tokenizer.chat_template)`,
    ...ggufSpecialTokens(header),
  });
}

/**
 * A `--chat-template` value: "psm", a .jinja file, or a JSON file holding `chat_template` (a tokenizer_config.json).
 * A bare .jinja file takes its BOS / EOS tokens from `tokens` (the model's, where known).
 */
export function chatTemplateFromOverride(
  value: string,
  tokens: { bosToken?: string; eosToken?: string } = {},
): ChatTemplate {
  if (value === 'psm') return ChatTemplate.psm();
  if (!fs.existsSync(value))
    throw new ChatTemplateError(
      `--chat-template ${value}: no such file (give "psm", a .jinja file or a tokenizer_config.json)`,
    );
  if (value.endsWith('.json')) {
    const t = chatTemplateFromTokenizerConfig(readJsonObject(value), value);
    if (!t) throw new ChatTemplateError(`${value}: has no chat_template`);
    return t;
  }
  return ChatTemplate.jinja(fs.readFileSync(value, 'utf8'), { origin: value, ...tokens });
}

/** The special tokens a folder's tokenizer_config.json names (for a .jinja override). */
function folderTokens(dir: string): { bosToken?: string; eosToken?: string } {
  const file = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(file)) return {};
  const c = readJsonObject(file);
  return { bosToken: tokenText(c.bos_token), eosToken: tokenText(c.eos_token) };
}

/** A folder's template file, as newer transformers save it beside tokenizer_config.json (which then has none). */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/**
 * The chat template of a model folder (see the file comment), or of `override` when given. PSM Lab's own folders
 * (no tokenizer_config.json template, not imported) speak the PSM format; an imported folder without a template
 * gets one that refuses to chat, naming the fix. A chat_template.jinja file comes before tokenizer_config.json's
 * `chat_template`, as transformers reads them.
 */
export function chatTemplateForFolder(dir: string, override?: string): ChatTemplate {
  if (override !== undefined) {
    if (override === 'psm') return ChatTemplate.psm();
    return chatTemplateFromOverride(override, folderTokens(dir));
  }
  const jinja = path.join(dir, CHAT_TEMPLATE_FILE);
  if (fs.existsSync(jinja))
    return ChatTemplate.jinja(fs.readFileSync(jinja, 'utf8'), { origin: jinja, ...folderTokens(dir) });
  const file = path.join(dir, 'tokenizer_config.json');
  if (fs.existsSync(file)) {
    const t = chatTemplateFromTokenizerConfig(readJsonObject(file), file);
    if (t) return t;
  }
  if (fs.existsSync(path.join(dir, 'psm-import.json')))
    return ChatTemplate.missing(`${dir} (imported; its tokenizer_config.json has no chat_template)`);
  return ChatTemplate.psm();
}

/** The chat template of a GGUF file (its own, or `override`); PSM Lab's exported files carry the PSM template. */
export function chatTemplateForGguf(header: GgufHeader, override?: string): ChatTemplate {
  if (override !== undefined) return chatTemplateFromOverride(override, ggufSpecialTokens(header));
  return (
    chatTemplateFromGguf(header) ?? ChatTemplate.missing(`${header.source} (no tokenizer.chat_template)`)
  );
}

/**
 * The files beside a model's weights that say how it reads and writes text: the tokenizer, its special tokens, the
 * chat template, the generation settings, and an imported model's provenance (which also marks a folder without a
 * template as not speaking the PSM format). A model derived from the folder (a fine-tune) keeps them.
 */
export const TEXT_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  CHAT_TEMPLATE_FILE,
  'generation_config.json',
  'psm-import.json',
] as const;

/**
 * The TEXT_FILES of model folder `dir` that exist, byte for byte, for a folder derived from it, so it reopens with
 * the same tokenizer and chat template. `override`: the model was trained in this --chat-template ("psm" or a file)
 * instead of the folder's own, which tokenizer_config.json then names (with its BOS / EOS tokens) and no
 * chat_template.jinja overrides.
 */
export function keptTextFiles(dir: string, override?: string): Record<string, Uint8Array | string> {
  const out: Record<string, Uint8Array | string> = {};
  for (const f of TEXT_FILES) {
    const file = path.join(dir, f);
    if (fs.existsSync(file)) out[f] = fs.readFileSync(file);
  }
  if (override !== undefined) {
    const template = chatTemplateForFolder(dir, override);
    delete out[CHAT_TEMPLATE_FILE];
    const file = path.join(dir, 'tokenizer_config.json');
    const config = fs.existsSync(file) ? readJsonObject(file) : {};
    config.chat_template = template.source;
    // PSM Lab's template brings its own tokens wherever it is read (ChatTemplate.jinja recognises it).
    if (template.kind === 'jinja') {
      if (template.bosToken !== undefined) config.bos_token = template.bosToken;
      if (template.eosToken !== undefined) config.eos_token = template.eosToken;
    }
    out['tokenizer_config.json'] = `${JSON.stringify(config, null, 2)}\n`;
  }
  return out;
}
