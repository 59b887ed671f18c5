/** What the rest of the engine needs from a tokenizer; BpeTokenizer implements it. */
export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  readonly vocabSize: number;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Contents of the special tokens (e.g. "<|endoftext|>"); look up ids with tokenToId. */
  readonly specialTokens: readonly string[];
}
