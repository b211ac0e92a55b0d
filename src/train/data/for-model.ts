// The training data of a run as `peftc train` reads it for a model and recipe: the model's
// tokenizer (tokenizer.json, else the byte-level scheme), the recipe's seq_len, seed and
// eval fraction. Shared by `peftc train` and `peftc export --format hf-trainer`, which
// writes these exact rows into the project it generates.
import type { Recipe } from '../../methods/index.ts';
import type { LoadedModel } from '../../models/llama/index.ts';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../../models/tokenizer/index.ts';
import { UserError } from '../../util/errors.ts';
import { type Dataset, loadDataset } from './dataset.ts';

/** Tokens per row when neither --seq nor the recipe's seq_len gives one. */
export const DEFAULT_SEQ = 64;
/** Sequences per micro-batch when neither --batch nor the recipe's batch_size gives one. */
export const DEFAULT_BATCH = 4;

/** The model's tokenizer (byte-level without tokenizer.json), checked against its vocab_size. */
export function modelTokenizer(dir: string | undefined, vocab: number): Tokenizer {
  const tok = dir ? loadTokenizer(dir, { fallbackToBytes: true }) : new ByteTokenizer();
  if (tok.vocabSize > vocab) {
    const which =
      tok instanceof ByteTokenizer
        ? `the byte-level tokenizer (used when ${dir ?? 'the model'} has no tokenizer.json)`
        : 'the tokenizer';
    throw new UserError(
      `${which} has ${tok.vocabSize} ids but the model's vocab_size is ${vocab}; add the model's tokenizer.json, or give token ids with --tokens <file> (no tokenizer needed)`,
    );
  }
  return tok;
}

export interface DataFiles {
  /** A text or JSONL file (`--data`); exactly one of `data` and `tokens`. */
  readonly data?: string;
  /** A JSON file of token-id arrays (`--tokens`). */
  readonly tokens?: string;
  readonly evalData?: string;
}

/** The dataset a run of `recipe` on `model` trains on (and the tokenizer, for text data). */
export function datasetFor(
  model: LoadedModel,
  recipe: Recipe,
  files: DataFiles,
): { dataset: Dataset; tokenizer?: Tokenizer } {
  const seq = recipe.seq_len ?? DEFAULT_SEQ;
  const c = model.config;
  if (seq > c.maxPositionEmbeddings) {
    throw new UserError(
      `--seq ${seq} is longer than the model's max_position_embeddings ${c.maxPositionEmbeddings}`,
    );
  }
  // Pre-tokenized data needs no tokenizer: the model's vocab_size bounds its ids.
  const tokenizer = files.tokens === undefined ? modelTokenizer(model.dir, c.vocabSize) : undefined;
  const dataset = loadDataset({
    data: files.data,
    tokens: files.tokens,
    evalData: files.evalData,
    tokenizer,
    ...(tokenizer
      ? {}
      : {
          vocabSize: c.vocabSize,
          vocabName: "the model's vocab_size",
          padId: c.padTokenId ?? c.eosTokenId ?? 0,
        }),
    seq,
    seed: recipe.seed,
    evalFraction: recipe.eval_fraction,
  });
  return { dataset, tokenizer };
}
