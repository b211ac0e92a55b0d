// Documents -> token ids and labels. Labels are the input ids (the model shifts
// internally, as HF's causal-LM loss does); prompt tokens get IGNORE_INDEX so only
// the completion is learned.
import { FormatError } from '../../io/errors.ts';
import type { Tokenizer } from '../../models/tokenizer/index.ts';
import type { Document } from './load.ts';

/** Label value the loss skips (HF / PyTorch `ignore_index`). */
export const IGNORE_INDEX = -100;

/** What the data pipeline needs from a tokenizer. */
export type TokenizerLike = Pick<Tokenizer, 'encode' | 'vocabSize' | 'bosId' | 'eosId' | 'padId'>;

export interface TokenizedDoc {
  readonly ids: number[];
  readonly labels: number[];
  readonly where: string;
}

/**
 * Tokenizes text and pairs with `tokenizer` (bos at the start, eos at the end when it has them);
 * `ids` documents are taken as they are. Token ids must be below `vocabSize` when it is known.
 */
export function tokenizeDocuments(
  docs: readonly Document[],
  tokenizer: TokenizerLike | undefined,
  vocabSize: number | undefined = tokenizer?.vocabSize,
  /** Where the bound comes from, for the error, e.g. "the model's vocab_size". */
  vocabName?: string,
): TokenizedDoc[] {
  return docs.map((doc) => {
    let ids: number[];
    let labels: number[];
    if (doc.kind === 'ids') {
      ids = [...doc.ids];
      labels = [...doc.ids];
    } else {
      if (!tokenizer) {
        throw new FormatError(
          doc.where,
          'text data needs a tokenizer (or pass pre-tokenized ids with --tokens)',
        );
      }
      // bos/eos are added here, once per document, not by encode (a prompt and its completion are one document).
      const encode = (t: string) => tokenizer.encode(t, { addSpecialTokens: false });
      const bos = tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
      const eos = tokenizer.eosId === undefined ? [] : [tokenizer.eosId];
      if (doc.kind === 'text') {
        ids = [...bos, ...encode(doc.text), ...eos];
        labels = [...ids];
      } else {
        const prompt = [...bos, ...encode(doc.prompt)];
        const completion = [...encode(doc.completion), ...eos];
        ids = [...prompt, ...completion];
        labels = [...prompt.map(() => IGNORE_INDEX), ...completion];
      }
    }
    if (vocabSize !== undefined) {
      const bad = ids.findIndex((t) => t >= vocabSize);
      if (bad >= 0) {
        throw new FormatError(
          doc.where,
          `token id ${ids[bad]} at position ${bad} is out of range for a vocabulary of ${vocabSize} (${vocabName ? `${vocabName}; ` : ''}ids 0..${vocabSize - 1})`,
        );
      }
    }
    return { ids, labels, where: doc.where };
  });
}
