/**
 * Public tokenizer API: a GPT-2 style byte-level BPE tokenizer that trains from text, encodes fast,
 * and reads/writes Hugging Face tokenizer.json files.
 */
export type { TextTokenizer } from './types.ts';
export { BpeTokenizer, type AddedTokenSpec, type BpeTokenizerSpec } from './bpe.ts';
export { trainBpe, type TrainBpeOptions } from './train.ts';
export {
  loadTokenizer,
  loadTokenizerSync,
  saveTokenizer,
  saveTokenizerSync,
  tokenizerFromJson,
  tokenizerToJson,
} from './hf-json.ts';
export {
  BYTE_TO_CHAR,
  GPT2_PRETOKENIZE_PATTERN,
  bytesToSymbols,
  pretokenize,
  symbolsToBytes,
} from './byte-level.ts';
