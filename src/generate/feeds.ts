// Feeds of a KV-cache graph (models/llama/build.ts `kvCache`) for one run: every row
// appends `tokens` (possibly none) to its cache from slot `start` on. Pure host code,
// so per-row positions and lengths (continuous batching) are only data, never a recompile.
import { type Tensor, tensor } from '../ir/tensor.ts';

/** What one row of the batch does in a run. */
export interface RowFeed {
  /** Cache slots already filled (the row's length before this run); 0 starts the row afresh. */
  readonly start: number;
  /** Token ids appended at slots start, start+1, ...; empty for a row that idles. */
  readonly tokens: readonly number[];
}

/** Masked-out attention: finite, so a row with nothing visible gives no NaN (its output is unused). */
export const MASKED = -1e30;

/**
 * The inputs of a KV-cache graph of `rows.length` rows, `seq` tokens per row and `maxLen`
 * cache slots. Row b's new token s goes to slot start+s at rope position start+s and sees
 * the slots 0..start+s; padding tokens (s >= tokens.length) write nothing.
 */
export function kvFeeds(rows: readonly RowFeed[], seq: number, maxLen: number): Record<string, Tensor> {
  const B = rows.length;
  const ids = tensor('i32', [B, seq]);
  const positions = tensor('i32', [B, seq]);
  const write = tensor('f32', [B, 1, maxLen, seq]);
  const keep = tensor('f32', [B, 1, maxLen, 1]);
  const bias = tensor('f32', [B, 1, seq, maxLen]);
  const last = tensor('f32', [B, 1, seq]);
  keep.data.fill(1);
  rows.forEach((r, b) => {
    const n = r.tokens.length;
    if (n > seq) throw new Error(`internal: row ${b} feeds ${n} tokens to a graph of ${seq} per row`);
    if (r.start + n > maxLen)
      throw new Error(`internal: row ${b} needs ${r.start + n} cache slots but the cache has ${maxLen}`);
    for (let s = 0; s < seq; s++) {
      const slot = r.start + s;
      positions.data[b * seq + s] = Math.min(slot, maxLen - 1);
      if (s < n) {
        ids.data[b * seq + s] = r.tokens[s];
        write.data[(b * maxLen + slot) * seq + s] = 1;
        keep.data[b * maxLen + slot] = 0;
      }
      const row = bias.data.subarray((b * seq + s) * maxLen, (b * seq + s + 1) * maxLen);
      row.fill(MASKED, Math.min(slot + 1, maxLen));
    }
    if (n > 0) last.data[b * seq + n - 1] = 1;
  });
  const feeds: Record<string, Tensor> = {
    input_ids: ids,
    positions,
    kv_write: write,
    kv_keep: keep,
    attn_bias: bias,
  };
  if (seq > 1) feeds.last_token = last;
  return feeds;
}
