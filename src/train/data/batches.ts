// Batches as a pure function of (rows, batch size, seed, step): resume needs only
// the step to continue exactly. Samples run through the epochs without a gap:
// sample i of the run is row perm_e[i mod n] of epoch e = floor(i / n), where each
// epoch's permutation comes from (seed, epoch).

import { type Tensor, tensor } from '../../ir/tensor.ts';
import { UserError } from '../../util/errors.ts';
import { Rng } from '../../util/rng.ts';
import type { Row } from './pack.ts';
import { IGNORE_INDEX } from './tokenize.ts';

export interface Batch {
  /** i32 [B, S] */
  readonly input_ids: Tensor;
  /** i32 [B, S]; IGNORE_INDEX where nothing is learned. */
  readonly labels: Tensor;
  /** Input tokens in the batch (B * S): what tokens/s counts. */
  readonly tokens: number;
  /** Positions the shifted loss averages over (labels[:, 1:] != IGNORE_INDEX): weights eval means. */
  readonly labelTokens: number;
  /** Row indices (into the rows given) that make up the batch; -1 for eval padding rows. */
  readonly rows: readonly number[];
}

/** Where the data stream stands at a step: saved in checkpoints, checked on resume. */
export interface DataCursor {
  /** Batches (micro-batches, with gradient accumulation) consumed before this cursor. */
  readonly step: number;
  /** Samples consumed before `step` (step * batchSize). */
  readonly sample: number;
  readonly epoch: number;
  readonly seed: number;
  readonly batchSize: number;
  readonly rows: number;
  /** Dataset fingerprint (see `datasetFingerprint`), so resuming on other data is caught. */
  readonly fingerprint: string;
}

export interface BatcherOptions {
  readonly batchSize: number;
  readonly seed: number;
  /** Dataset fingerprint carried into cursors. */
  readonly fingerprint?: string;
}

/** Fisher-Yates permutation of 0..n-1 from a seeded generator. */
export function seededPermutation(n: number, rng: Rng): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

function stackRows(rows: readonly Row[], picked: readonly number[], seq: number, padId: number): Batch {
  const b = picked.length;
  const ids = new Int32Array(b * seq);
  const labels = new Int32Array(b * seq).fill(IGNORE_INDEX);
  let labelTokens = 0;
  picked.forEach((r, i) => {
    if (r < 0) {
      ids.fill(padId, i * seq, (i + 1) * seq);
      return;
    }
    ids.set(rows[r].ids, i * seq);
    labels.set(rows[r].labels, i * seq);
    for (let t = 1; t < seq; t++) if (rows[r].labels[t] !== IGNORE_INDEX) labelTokens++;
  });
  return {
    input_ids: tensor('i32', [b, seq], ids),
    labels: tensor('i32', [b, seq], labels),
    tokens: b * seq,
    labelTokens,
    rows: picked,
  };
}

export class Batcher {
  readonly batchSize: number;
  readonly seed: number;
  readonly seq: number;
  /** Steps that make one pass over the rows (fractional when B does not divide the row count). */
  readonly stepsPerEpoch: number;
  private readonly rows: readonly Row[];
  private readonly fingerprint: string;
  // Memo only: permutations are a pure function of (seed, epoch).
  private readonly perms = new Map<number, number[]>();

  constructor(rows: readonly Row[], opts: BatcherOptions) {
    if (rows.length === 0) throw new UserError('no training rows to batch');
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
      throw new UserError(`batch size must be a positive integer, got ${opts.batchSize}`);
    }
    this.rows = rows;
    this.batchSize = opts.batchSize;
    this.seed = opts.seed;
    this.seq = rows[0].ids.length;
    this.stepsPerEpoch = rows.length / opts.batchSize;
    this.fingerprint = opts.fingerprint ?? '';
  }

  private permutation(epoch: number): number[] {
    let p = this.perms.get(epoch);
    if (!p) {
      p = seededPermutation(this.rows.length, new Rng(this.seed).fork(`epoch-${epoch}`));
      if (this.perms.size > 4) this.perms.clear();
      this.perms.set(epoch, p);
    }
    return p;
  }

  /** The batch of training step `step` (0-based); the same for the same step in any run. */
  batchAt(step: number): Batch {
    if (!Number.isInteger(step) || step < 0)
      throw new UserError(`step must be a non-negative integer, got ${step}`);
    const n = this.rows.length;
    const picked: number[] = [];
    for (let k = 0; k < this.batchSize; k++) {
      const i = step * this.batchSize + k;
      picked.push(this.permutation(Math.floor(i / n))[i % n]);
    }
    return stackRows(this.rows, picked, this.seq, 0);
  }

  cursor(step: number): DataCursor {
    const sample = step * this.batchSize;
    return {
      step,
      sample,
      epoch: Math.floor(sample / this.rows.length),
      seed: this.seed,
      batchSize: this.batchSize,
      rows: this.rows.length,
      fingerprint: this.fingerprint,
    };
  }

  /** Throws when a saved cursor cannot continue exactly on this batcher (other data, batch size or seed). */
  assertResumable(saved: DataCursor): void {
    const diffs: string[] = [];
    if (saved.fingerprint !== this.fingerprint)
      diffs.push('the data (fingerprint differs: other file, --seq or tokenizer)');
    if (saved.rows !== this.rows.length)
      diffs.push(`row count (${saved.rows} then, ${this.rows.length} now)`);
    if (saved.batchSize !== this.batchSize)
      diffs.push(`batch size (${saved.batchSize} then, ${this.batchSize} now)`);
    if (saved.seed !== this.seed) diffs.push(`seed (${saved.seed} then, ${this.seed} now)`);
    if (diffs.length > 0) {
      throw new UserError(
        `cannot resume exactly at step ${saved.step}: ${diffs.join('; ')} changed since the checkpoint. ` +
          'Use the same data and settings, or start a fresh run.',
      );
    }
  }
}

/** Eval batches over every row in a fixed order; the last batch is filled with fully masked pad rows. */
export function evalBatches(rows: readonly Row[], batchSize: number, padId = 0): Batch[] {
  if (rows.length === 0) return [];
  const seq = rows[0].ids.length;
  const out: Batch[] = [];
  for (let start = 0; start < rows.length; start += batchSize) {
    const picked = Array.from({ length: batchSize }, (_, k) => (start + k < rows.length ? start + k : -1));
    out.push(stackRows(rows, picked, seq, padId));
  }
  return out;
}
