// Tokenized documents -> fixed-length rows of `seq` tokens (static shapes: one
// compiled step serves every batch).
import { FormatError } from '../../io/errors.ts';
import { IGNORE_INDEX, type TokenizedDoc } from './tokenize.ts';

/** One training example of exactly `seq` tokens. */
export interface Row {
  readonly ids: Int32Array;
  readonly labels: Int32Array;
}

export interface PackStats {
  readonly documents: number;
  /** Tokens after tokenization, before cutting into rows. */
  readonly tokens: number;
  readonly rows: number;
  /** Tokens that did not fit: the packed tail, or truncated document ends. */
  readonly droppedTokens: number;
  /** Unpacked mode: documents cut to `seq` / dropped because no label survived. */
  readonly truncatedDocs: number;
  readonly droppedDocs: number;
}

export interface PackOptions {
  readonly seq: number;
  /** Concatenate documents and cut into rows (true), or one padded row per document (false). */
  readonly pack: boolean;
  /** Pad id for unpacked rows (the tokenizer's pad, else eos, else 0); padding is never learned. */
  readonly padId?: number;
  /** Names the data in errors (the file). */
  readonly source: string;
}

export function packDocuments(
  docs: readonly TokenizedDoc[],
  opts: PackOptions,
): { rows: Row[]; stats: PackStats } {
  const { seq, source } = opts;
  if (!Number.isInteger(seq) || seq < 2) {
    throw new FormatError(source, `sequence length must be an integer >= 2, got ${seq}`);
  }
  const tokens = docs.reduce((n, d) => n + d.ids.length, 0);
  return opts.pack ? packConcat(docs, seq, tokens, source) : packPadded(docs, seq, tokens, opts);
}

function packConcat(docs: readonly TokenizedDoc[], seq: number, tokens: number, source: string) {
  const nRows = Math.floor(tokens / seq);
  if (nRows === 0) {
    throw new FormatError(
      source,
      `has ${tokens} tokens after tokenization; one row of seq ${seq} needs ${seq}. ` +
        'Lower --seq or add data.',
    );
  }
  const ids = new Int32Array(nRows * seq);
  const labels = new Int32Array(nRows * seq);
  let at = 0;
  for (const d of docs) {
    const take = Math.min(d.ids.length, ids.length - at);
    for (let i = 0; i < take; i++) {
      ids[at + i] = d.ids[i];
      labels[at + i] = d.labels[i];
    }
    at += take;
    if (at === ids.length) break;
  }
  const rows: Row[] = [];
  for (let r = 0; r < nRows; r++) {
    rows.push({ ids: ids.subarray(r * seq, (r + 1) * seq), labels: labels.subarray(r * seq, (r + 1) * seq) });
  }
  const stats = {
    documents: docs.length,
    tokens,
    rows: nRows,
    droppedTokens: tokens - nRows * seq,
    truncatedDocs: 0,
    droppedDocs: 0,
  };
  return { rows, stats };
}

function packPadded(docs: readonly TokenizedDoc[], seq: number, tokens: number, opts: PackOptions) {
  const pad = opts.padId ?? 0;
  const rows: Row[] = [];
  let truncatedDocs = 0;
  let droppedDocs = 0;
  let droppedTokens = 0;
  for (const d of docs) {
    const n = Math.min(d.ids.length, seq);
    if (d.ids.length > seq) {
      truncatedDocs++;
      droppedTokens += d.ids.length - seq;
    }
    const ids = new Int32Array(seq).fill(pad);
    const labels = new Int32Array(seq).fill(IGNORE_INDEX);
    let learned = 0;
    for (let i = 0; i < n; i++) {
      ids[i] = d.ids[i];
      labels[i] = d.labels[i];
      // Position 0 is never predicted (the loss shifts by one).
      if (i > 0 && d.labels[i] !== IGNORE_INDEX) learned++;
    }
    if (learned === 0) {
      droppedDocs++;
      droppedTokens += n;
      continue;
    }
    rows.push({ ids, labels });
  }
  if (rows.length === 0) {
    throw new FormatError(
      opts.source,
      `no document has a learnable token within seq ${seq} (${droppedDocs} documents dropped: ` +
        'prompt too long or empty completion). Raise --seq.',
    );
  }
  const stats = {
    documents: docs.length,
    tokens,
    rows: rows.length,
    droppedTokens,
    truncatedDocs,
    droppedDocs,
  };
  return { rows, stats };
}
