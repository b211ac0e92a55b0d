import { UserError } from '../../util/errors.ts';

// What generation, training data and the CLI need from a tokenizer.

export interface EncodeOptions {
  /** Add the model's special tokens (e.g. BOS), as HF's `add_special_tokens`. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens (BOS/EOS/PAD ...) out of the text. Default true. */
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** One past the largest token id (the embedding table needs at least this many rows). */
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
}

/** A user-facing error (missing/invalid tokenizer files, ids out of range). */
export class TokenizerError extends UserError {}
