// The whole data pipeline in one call: file -> documents -> tokens -> rows ->
// seeded train/eval split (or a separate eval file). The split is over rows (spans
// of `seq` tokens), so the two sets never share a token position, and it is the
// same for the same seed. Data too small to split trains on every row, with a notice.
import { createHash } from 'node:crypto';
import { FormatError } from '../../io/errors.ts';
import { Rng } from '../../util/rng.ts';
import { seededPermutation } from './batches.ts';
import { type DataFormat, loadDocuments, loadTokenFile } from './load.ts';
import { type PackStats, packDocuments, type Row } from './pack.ts';
import { type TokenizerLike, tokenizeDocuments } from './tokenize.ts';

export interface DatasetOptions {
  /** A text or JSONL file (`--data`); exactly one of `data` and `tokens`. */
  readonly data?: string;
  /** A JSON file of token-id arrays (`--tokens`). */
  readonly tokens?: string;
  /** Force the data file's format instead of detecting it from the extension. */
  readonly format?: DataFormat;
  /** Needed for text data; with `tokens` it only bounds ids by `vocabSize` and supplies bos/eos/pad. */
  readonly tokenizer?: TokenizerLike;
  /**
   * Every token id must be below this (default: the tokenizer's vocabSize). Pre-tokenized data
   * needs no tokenizer: the model's vocab_size bounds it.
   */
  readonly vocabSize?: number;
  /** Where the bound comes from, for errors, e.g. "the model's vocab_size". */
  readonly vocabName?: string;
  /** Pad id for unpacked rows and eval padding (default: the tokenizer's pad, else eos, else 0). */
  readonly padId?: number;
  readonly seq: number;
  /** Default true. */
  readonly pack?: boolean;
  /** Fraction of rows held out for eval, in [0, 1); default 0.1. Not used with `evalData`. */
  readonly evalFraction?: number;
  /** A separate eval file, read like the training data (a token file with `tokens`); no split then. */
  readonly evalData?: string;
  /** Seeds the split; default 0. */
  readonly seed?: number;
}

export interface Dataset {
  readonly source: string;
  readonly seq: number;
  readonly padId: number;
  readonly train: readonly Row[];
  readonly eval: readonly Row[];
  readonly stats: PackStats;
  /** sha256 of seq and all rows (before the split): a resume check that the data is the same. */
  readonly fingerprint: string;
  /** One-line notes for the user (e.g. data too small to split: no eval). */
  readonly notices: readonly string[];
}

export function loadDataset(opts: DatasetOptions): Dataset {
  if ((opts.data === undefined) === (opts.tokens === undefined)) {
    throw new FormatError('data', 'give exactly one of --data <text|jsonl file> and --tokens <json file>');
  }
  const source = (opts.data ?? opts.tokens) as string;
  const padId = opts.padId ?? opts.tokenizer?.padId ?? opts.tokenizer?.eosId ?? 0;
  const rowsOf = (file: string) => {
    const docs = opts.data !== undefined ? loadDocuments(file, opts.format) : loadTokenFile(file);
    const tok = tokenizeDocuments(
      docs,
      opts.tokenizer,
      opts.vocabSize ?? opts.tokenizer?.vocabSize,
      opts.vocabName,
    );
    return packDocuments(tok, { seq: opts.seq, pack: opts.pack ?? true, padId, source: file });
  };
  const { rows, stats } = rowsOf(source);
  const split =
    opts.evalData !== undefined
      ? { train: rows, eval: rowsOf(opts.evalData).rows }
      : splitRows(rows, opts.evalFraction ?? 0.1, opts.seed ?? 0, source);
  return {
    source,
    seq: opts.seq,
    padId,
    train: split.train,
    eval: split.eval,
    stats,
    fingerprint: datasetFingerprint(rows),
    notices: 'notice' in split && split.notice ? [split.notice] : [],
  };
}

/**
 * Holds out round(fraction * n) rows (at least 1 when fraction > 0) chosen by a seeded shuffle;
 * both parts keep the original row order. Fewer than 2 rows cannot be split: they all train,
 * there is no eval, and `notice` says so.
 */
export function splitRows(
  rows: readonly Row[],
  fraction: number,
  seed: number,
  source = 'data',
): { train: Row[]; eval: Row[]; notice?: string } {
  if (!(fraction >= 0 && fraction < 1)) {
    throw new FormatError(
      source,
      `the eval fraction (--eval-fraction / eval_fraction) must be in [0, 1), got ${fraction}`,
    );
  }
  if (fraction === 0) return { train: [...rows], eval: [] };
  if (rows.length < 2) {
    const seq = rows[0]?.ids.length ?? 0;
    return {
      train: [...rows],
      eval: [],
      notice: `${source} has only ${rows.length} row of ${seq} tokens, too few to hold out eval data: training on it all with no eval (add data, lower --seq, or pass --eval-data <file>)`,
    };
  }
  const k = Math.min(rows.length - 1, Math.max(1, Math.round(fraction * rows.length)));
  const perm = seededPermutation(rows.length, new Rng(seed).fork('eval-split'));
  const held = new Set(perm.slice(0, k));
  return {
    train: rows.filter((_, i) => !held.has(i)),
    eval: rows.filter((_, i) => held.has(i)),
  };
}

export function datasetFingerprint(rows: readonly Row[]): string {
  const h = createHash('sha256');
  h.update(`rows=${rows.length};seq=${rows[0]?.ids.length ?? 0};`);
  for (const r of rows) {
    h.update(new Uint8Array(r.ids.buffer, r.ids.byteOffset, r.ids.byteLength));
    h.update(new Uint8Array(r.labels.buffer, r.labels.byteOffset, r.labels.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}
