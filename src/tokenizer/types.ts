/**
 * What the rest of the engine needs from a tokenizer. BpeTokenizer (PSM Lab's byte-level BPE) implements it, and so
 * does the adapter over @huggingface/tokenizers that runs imported models' tokenizers (src/interop).
 */
export interface TextTokenizer {
  /** Token ids of `text`; special-token strings in it (e.g. "<|endoftext|>") become their ids. */
  encode(text: string): number[];
  /** Token ids of plain text: special-token strings in it are read as text, never as their ids. */
  encodeOrdinary(text: string): number[];
  decode(ids: readonly number[]): string;
  /**
   * The UTF-8 bytes a token stands for (an added token: its content's). A token may hold part of a multi-byte
   * character, so text is decoded from a whole sequence, never token by token.
   */
  tokenBytes(id: number): Uint8Array;
  /** Text of one token; a token holding part of a multi-byte character decodes to U+FFFD. */
  decodeToken(id: number): string;
  readonly vocabSize: number;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Contents of the special tokens (e.g. "<|endoftext|>"); look up ids with tokenToId. */
  readonly specialTokens: readonly string[];
  /** Contents of every added token, special or not (Qwen3's "<think>" is not special): encode reads each as its id. */
  readonly addedTokenContents: readonly string[];
  /** Whether `id` is one of the special tokens (not text a reply shows). */
  isSpecialId(id: number): boolean;
}
