// The whole data pipeline in one call: file -> documents -> tokens -> rows ->
// seeded train/eval split. The split is over rows (spans of `seq` tokens), so the
// two sets never share a token position, and it is the same for the same seed.
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
  readonly seq: number;
  /** Default true. */
  readonly pack?: boolean;
  /** Fraction of rows held out for eval, in [0, 1); default 0.1. */
  readonly evalFraction?: number;
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
}

export function loadDataset(opts: DatasetOptions): Dataset {
  if ((opts.data === undefined) === (opts.tokens === undefined)) {
    throw new FormatError('data', 'give exactly one of --data <text|jsonl file> and --tokens <json file>');
  }
  const source = (opts.data ?? opts.tokens) as string;
  const docs = opts.data !== undefined ? loadDocuments(opts.data, opts.format) : loadTokenFile(source);
  const tok = tokenizeDocuments(docs, opts.tokenizer);
  const padId = opts.tokenizer?.padId ?? opts.tokenizer?.eosId ?? 0;
  const { rows, stats } = packDocuments(tok, { seq: opts.seq, pack: opts.pack ?? true, padId, source });
  const { train, eval: evalRows } = splitRows(rows, opts.evalFraction ?? 0.1, opts.seed ?? 0, source);
  return {
    source,
    seq: opts.seq,
    padId,
    train,
    eval: evalRows,
    stats,
    fingerprint: datasetFingerprint(rows),
  };
}

/**
 * Holds out round(fraction * n) rows (at least 1 when fraction > 0) chosen by a seeded shuffle;
 * both parts keep the original row order.
 */
export function splitRows(
  rows: readonly Row[],
  fraction: number,
  seed: number,
  source = 'data',
): { train: Row[]; eval: Row[] } {
  if (!(fraction >= 0 && fraction < 1)) {
    throw new FormatError(source, `eval fraction must be in [0, 1), got ${fraction}`);
  }
  if (fraction === 0) return { train: [...rows], eval: [] };
  if (rows.length < 2) {
    throw new FormatError(
      source,
      `has only ${rows.length} row; holding out eval data needs at least 2. Add data, lower --seq, or set the eval fraction to 0.`,
    );
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
