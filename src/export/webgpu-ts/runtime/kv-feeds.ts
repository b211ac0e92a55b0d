// The feeds of one run of a KV-cache plan for a single row, as peftc's generate/feeds.ts
// `kvFeeds` makes them for batch 1 (test/export/webgpu-ts-generate.test.ts checks that they
// are equal): `tokens` go to cache slots start, start+1, ... at the same rope positions and
// see slots 0..start+s; padding tokens (s >= tokens.length) write nothing.

/** Masked-out attention: finite, so that nothing visible gives no NaN (feeds.ts MASKED). */
export const MASKED = -1e30;

export interface KvFeedArrays {
  readonly input_ids: Int32Array;
  readonly positions: Int32Array;
  readonly kv_write: Float32Array;
  readonly kv_keep: Float32Array;
  readonly attn_bias: Float32Array;
  /** Only for plans of more than one token (the decode plan has none). */
  readonly last_token?: Float32Array;
}

export function kvFeedArrays(
  start: number,
  tokens: readonly number[],
  seq: number,
  maxLen: number,
): KvFeedArrays {
  const n = tokens.length;
  if (n > seq) throw new Error(`internal: ${n} tokens fed to a plan of ${seq}`);
  if (start + n > maxLen)
    throw new Error(`internal: ${start + n} cache slots needed, the cache has ${maxLen}`);
  const ids = new Int32Array(seq);
  const positions = new Int32Array(seq);
  const write = new Float32Array(maxLen * seq);
  const keep = new Float32Array(maxLen).fill(1);
  const bias = new Float32Array(seq * maxLen);
  for (let s = 0; s < seq; s++) {
    const slot = start + s;
    positions[s] = Math.min(slot, maxLen - 1);
    if (s < n) {
      ids[s] = tokens[s];
      write[slot * seq + s] = 1;
      keep[slot] = 0;
    }
    bias.subarray(s * maxLen, (s + 1) * maxLen).fill(MASKED, Math.min(slot + 1, maxLen));
  }
  const feeds = { input_ids: ids, positions, kv_write: write, kv_keep: keep, attn_bias: bias };
  if (seq === 1) return feeds;
  const last = new Float32Array(seq);
  if (n > 0) last[n - 1] = 1;
  return { ...feeds, last_token: last };
}
