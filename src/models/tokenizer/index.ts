export { ByteTokenizer } from './byte-level.ts';
export { HfTokenizer } from './hf.ts';
export { type LoadTokenizerOptions, loadTokenizer } from './load.ts';
export { type DecodeOptions, type EncodeOptions, type Tokenizer, TokenizerError } from './tokenizer.ts';
