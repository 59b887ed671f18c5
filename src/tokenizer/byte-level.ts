/**
 * GPT-2 byte-level helpers shared by training, encoding and the tokenizer.json reader/writer.
 *
 * Every byte 0..255 is mapped to a printable Unicode character so that BPE tokens (which are byte
 * sequences) can be stored as ordinary strings in tokenizer.json. Printable Latin-1 bytes map to
 * themselves; the rest are shifted to U+0100 and up in byte order (space becomes 'Ġ', '\n' becomes 'Ċ').
 */

/** The GPT-2 pre-tokenisation pattern, verbatim from the HF ByteLevel pre-tokenizer (use_regex: true). */
export const GPT2_PRETOKENIZE_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/** A fresh global regex for {@link GPT2_PRETOKENIZE_PATTERN} (global regexes carry lastIndex state). */
export function makePretokenizeRegex(): RegExp {
  return new RegExp(GPT2_PRETOKENIZE_PATTERN, 'gu');
}

/** Splits text into pre-tokens ("words") exactly as the HF ByteLevel pre-tokenizer does. */
export function pretokenize(text: string): string[] {
  return text.match(makePretokenizeRegex()) ?? [];
}

function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const map = new Array<string>(256);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (isPrintable.has(b)) {
      map[b] = String.fromCharCode(b);
    } else {
      map[b] = String.fromCharCode(256 + next);
      next++;
    }
  }
  return map;
}

/** BYTE_TO_CHAR[b] is the byte-level symbol for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** Reverse of {@link BYTE_TO_CHAR}, keyed by UTF-16 code unit (all symbols are single BMP characters). */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = new Map(
  BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]),
);

/** Byte-level string for raw bytes. */
export function bytesToSymbols(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

/** Raw bytes for a byte-level string, or undefined if it contains a character outside the 256 symbols. */
export function symbolsToBytes(symbols: string): Uint8Array | undefined {
  const out = new Uint8Array(symbols.length);
  for (let i = 0; i < symbols.length; i++) {
    const b = CHAR_TO_BYTE.get(symbols.charCodeAt(i));
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}

/** Escapes a literal string for use inside a RegExp. */
export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/**
 * A regex that finds added/special tokens in text: leftmost match, and the longest token at a given
 * position (alternatives are tried longest first), matching HF's trie-based splitter.
 */
export function makeAddedTokenRegex(contents: readonly string[]): RegExp | undefined {
  if (contents.length === 0) return undefined;
  const sorted = [...contents].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
  // No 'u' flag: HF matches by UTF-16 code unit, and non-unicode mode accepts every escape we emit.
  return new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
}
