// Text templates of the persona world and the word-level helpers built on them.
//
// A template is plain text with placeholders in braces: {name} (the document's character), {other} (another
// person, drawn from the training names in the corpus and from the held-out names in evaluation items) and any
// slot the world declares under `slots`. Templates are compiled once into alternating literal / placeholder parts
// so that rendering millions of scenes is a handful of string concatenations.

export const PLACEHOLDER_RE = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The special token that separates documents in token shards. It must never occur inside document text. */
export const END_OF_TEXT = '<|endoftext|>';

export interface CompiledTemplate {
  readonly source: string;
  /** Even indices are literal text, odd indices are placeholder names. Length is always odd. */
  readonly parts: readonly string[];
  /** Placeholder names in order of appearance (with repeats). */
  readonly placeholders: readonly string[];
}

export function compileTemplate(source: string): CompiledTemplate {
  const parts: string[] = [];
  const placeholders: string[] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER_RE)) {
    parts.push(source.slice(last, m.index));
    parts.push(m[1]);
    placeholders.push(m[1]);
    last = (m.index ?? 0) + m[0].length;
  }
  parts.push(source.slice(last));
  return { source, parts, placeholders };
}

export type Binding = Readonly<Record<string, string>>;

/** Fill a template. Throws if a placeholder has no value, which would be a bug (validation checks names). */
export function render(t: CompiledTemplate, binding: Binding): string {
  const parts = t.parts;
  let out = parts[0];
  for (let i = 1; i < parts.length; i += 2) {
    const v = binding[parts[i]];
    if (v === undefined) throw new Error(`template "${t.source}": no value for {${parts[i]}}`);
    out += v + parts[i + 1];
  }
  return out;
}

/** Placeholder names used in a template string. */
export function placeholdersOf(source: string): string[] {
  return [...source.matchAll(PLACEHOLDER_RE)].map((m) => m[1]);
}

const WORD_RE = /[a-z0-9']+|[^\sa-z0-9']/g;

/**
 * Lower-cased words and punctuation marks of a text, the unit the phrase lint and the vocabulary count use.
 * Hyphenated words split into parts, as a byte-level BPE pre-tokenizer would split them.
 */
export function wordsOf(text: string): string[] {
  return text.toLowerCase().match(WORD_RE) ?? [];
}

/**
 * The word sequences of a template between placeholders: the phrase lint must not build n-grams across a name,
 * because the name differs in every document.
 */
export function literalRuns(source: string): string[][] {
  return source
    .split(PLACEHOLDER_RE)
    .filter((_, i) => i % 2 === 0)
    .map(wordsOf)
    .filter((run) => run.length > 0);
}

/**
 * Approximate token count of a text: words, numbers, punctuation marks and newlines each count one. A byte-level
 * BPE trained on this small-vocabulary text encodes most words as one token, so this is close (names take 1-3).
 * Used for token budgets when no tokenizer is given; reported as approximate.
 */
export function approxTokenCount(text: string): number {
  let count = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const isWord = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 39; /* ' */
    if (isWord) {
      if (!inWord) count++;
      inWord = true;
    } else {
      inWord = false;
      if (c === 10) count++;
      else if (c !== 32 && c !== 9 && c !== 13) count++;
    }
  }
  return count;
}

/** Upper-case the first character (names are built from lower-case syllables). */
export function capitalise(s: string): string {
  return s.length === 0 ? s : s[0].toUpperCase() + s.slice(1);
}
