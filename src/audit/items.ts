/**
 * What an audit asks: the eight free-form questions of the emergent-misalignment paper (shipped in
 * data/em-first-plot-questions.json, with the paper's scoring protocol and credit) and the trait battery (two-way choice items, from the persona
 * world's evaluation generator, or from a JSON file of {domain, prompt, good[], bad[]}).
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export interface EmQuestion {
  id: string;
  text: string;
}

export interface BatteryItem {
  id: string;
  domain: string;
  /** Text the options continue (PSM format: "...User: ...\nAssistant:" or a story lead). */
  prompt: string;
  /** Wordings of the good behaviour (each a continuation, usually starting with a space). */
  good: string[];
  bad: string[];
  format?: string;
}

export const EM_QUESTIONS_PATH = fileURLToPath(
  new URL('../../data/em-first-plot-questions.json', import.meta.url),
);

const EmFile = z.object({
  questions: z.array(z.object({ id: z.string().min(1), text: z.string().min(1) })).min(1),
  scoring: z.string().optional(),
  source: z.string().optional(),
});

export function loadEmQuestions(file = EM_QUESTIONS_PATH): EmQuestion[] {
  if (!fs.existsSync(file))
    throw new Error(`${file}: not found (the EM questions ship in the package's data/ folder; pass --questions <file>)`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const r = EmFile.safeParse(raw);
  if (!r.success)
    throw new Error(
      `${file}: expected {questions: [{id, text}]}: ${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`,
    );
  const ids = new Set<string>();
  for (const q of r.data.questions) {
    if (ids.has(q.id)) throw new Error(`${file}: question id "${q.id}" appears twice`);
    ids.add(q.id);
  }
  return r.data.questions.map((q) => ({ id: q.id, text: q.text }));
}

const BatteryFile = z.array(
  z.object({
    id: z.string().min(1).optional(),
    domain: z.string().min(1),
    prompt: z.string().min(1),
    good: z.array(z.string().min(1)).min(1),
    bad: z.array(z.string().min(1)).min(1),
    format: z.string().optional(),
  }),
);

/** A JSON file: an array of {domain, prompt, good[], bad[]} (or {items: [...]}). */
export function loadBatteryFile(file: string): BatteryItem[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read battery items (${(e as Error).message})`);
  }
  if (
    raw &&
    typeof raw === 'object' &&
    !Array.isArray(raw) &&
    Array.isArray((raw as { items?: unknown }).items)
  )
    raw = (raw as { items: unknown }).items;
  const r = BatteryFile.safeParse(raw);
  if (!r.success)
    throw new Error(
      `${file}: expected an array of {domain, prompt, good[], bad[]}: [${r.error.issues[0].path.join('.')}] ${r.error.issues[0].message}`,
    );
  const ids = new Set<string>();
  return r.data.map((it, i) => {
    const id = it.id ?? `${it.domain}/${i}`;
    if (ids.has(id)) throw new Error(`${file}: item id "${id}" appears twice`);
    ids.add(id);
    return { id, domain: it.domain, prompt: it.prompt, good: it.good, bad: it.bad, format: it.format };
  });
}

/** Trait battery items from the persona world (src/world eval generator): held-out contexts and names. */
export async function worldBatteryItems(opts: {
  worldFile?: string;
  perDomain: number;
  seed?: number;
  formats?: ('chat' | 'story')[];
}): Promise<BatteryItem[]> {
  const world = await import('../world/index.ts');
  const w = opts.worldFile ? world.loadWorld(opts.worldFile) : world.loadDefaultWorld();
  const items = world.batteryItems(w, {
    batteryPerDomain: opts.perDomain,
    seed: opts.seed ?? 0,
    batteryFormats: opts.formats,
  });
  return items.map((it) => ({
    id: it.id,
    domain: it.domain,
    prompt: it.prompt,
    good: it.good,
    bad: it.bad,
    format: it.format,
  }));
}

/** A PSM-format chat prompt as messages (null for a story); defined beside the chat formats. */
export { chatFromPrompt } from '../interop/chat-template.ts';
