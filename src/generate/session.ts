// A batch of decoding rows over one compiled KV-cache model (models/llama/build.ts
// `kvCache`): a prefill graph (many tokens per row, compiled per chunk length) and a
// decode graph (one token per row) whose caches are params written back in place.
//
// Usage (src/cli/commands/generate.ts, src/serve):
//   const s = await DecodeSession.create(backend, model, { batch: 4, maxLen: 256, adapters });
//   const [logits] = await s.prefill([{ row: 0, tokens: promptIds }]); // row 0 starts afresh
//   const next = await s.step([{ row: 0, token: pick(logits) }]);        // appends one token
//   s.release(0);                                                        // the row is free again
// Rows are independent: each has its own length (s.length(row)) and positions, so rows
// may join (prefill) and leave (release) between steps while others keep decoding
// (continuous batching); rows not named in a call are left untouched.
import type { Backend, Executable } from '../backends/backend.ts';
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import { bindParams, type WeightStore } from '../ir/weights.ts';
import type { LlamaConfig } from '../models/llama/config.ts';
import { isKvParam } from '../models/llama/index.ts';
import type { LoadedModel } from '../models/llama/load.ts';
import { prepareModel } from '../models/prepare.ts';
import { UserError } from '../util/errors.ts';
import { kvFeeds, type RowFeed } from './feeds.ts';

/** Builds the KV-cache graph of a model for `batch` rows of `seq` new tokens and `maxLen` cache slots. */
export type KvGraphFactory = (
  shape: { batch: number; seq: number },
  kvCache: { maxLen: number },
) => { graph: Graph; weights: WeightStore };

export interface SessionOptions {
  /** Rows decoded together (the decode graph's batch). */
  readonly batch: number;
  /** Cache slots per row: prompt plus generated tokens can never exceed this. */
  readonly maxLen: number;
  /** Longest prefill chunk (tokens per row per prefill run; default 64): longer prompts run in chunks. */
  readonly prefillChunk?: number;
  /**
   * Feeds of graph inputs beyond the cache's own (e.g. each row's adapter index in a
   * multi-adapter graph), for one run: `rows[i]` is the session row that batch row i
   * serves in this run, undefined for an idle batch row. Prefill runs have their own
   * (smaller) batch, so batch row i is not session row i there.
   */
  readonly extraFeeds?: (rows: readonly (number | undefined)[]) => Record<string, Tensor>;
}

export interface ModelSessionOptions extends SessionOptions {
  /** PEFT adapter folders attached (unmerged, as adapters `default`, `adapter1`, ...). */
  readonly adapters?: readonly string[];
  /** Fold the adapters into the base weights first. */
  readonly merge?: boolean;
}

/** Thrown when a row would need more cache slots than the session has. */
export class CacheFullError extends UserError {}

export class DecodeSession {
  private readonly lengths: number[];
  private readonly prefills = new Map<string, Promise<Executable>>();

  readonly batch: number;
  readonly maxLen: number;
  private readonly prefillChunk: number;

  private constructor(
    private readonly backend: Backend,
    private readonly factory: KvGraphFactory,
    private readonly decoder: Executable,
    readonly vocabSize: number,
    private readonly o: SessionOptions,
  ) {
    this.batch = o.batch;
    this.maxLen = o.maxLen;
    this.prefillChunk = Math.max(1, Math.min(o.prefillChunk ?? 64, o.maxLen));
    this.lengths = new Array(o.batch).fill(0);
  }

  /** A session over a loaded model (base, 4-bit, with PEFT adapters attached or merged). */
  static create(backend: Backend, model: LoadedModel, o: ModelSessionOptions): Promise<DecodeSession> {
    const factory: KvGraphFactory = (shape, kvCache) => {
      const { graph, weights } = prepareModel(model, shape, {
        adapters: o.adapters,
        merge: o.merge,
        kvCache,
      });
      return { graph, weights };
    };
    return DecodeSession.fromFactory(backend, factory, model.config, o);
  }

  /** A session over any KV-cache graph builder (e.g. one with several adapters batched). */
  static async fromFactory(
    backend: Backend,
    factory: KvGraphFactory,
    config: Pick<LlamaConfig, 'vocabSize'>,
    o: SessionOptions,
  ): Promise<DecodeSession> {
    if (!Number.isInteger(o.batch) || o.batch < 1) throw new UserError(`batch must be >= 1, got ${o.batch}`);
    if (!Number.isInteger(o.maxLen) || o.maxLen < 1)
      throw new UserError(`the cache length must be >= 1, got ${o.maxLen}`);
    const decoder = await compile(backend, factory, o.batch, 1, o.maxLen);
    return new DecodeSession(backend, factory, decoder, config.vocabSize, o);
  }

  /** Tokens in the cache of `row` (0 for a free row). */
  length(row: number): number {
    this.checkRow(row);
    return this.lengths[row];
  }

  /**
   * Starts each named row afresh with its tokens (a prompt, at least one token) and returns
   * each row's next-token logits (f32 [vocab]), in the order given. Long prompts run in
   * chunks; other rows keep their caches.
   */
  async prefill(rows: readonly { row: number; tokens: readonly number[] }[]): Promise<Float32Array[]> {
    const seen = new Set<number>();
    for (const r of rows) {
      this.checkRow(r.row);
      if (seen.has(r.row)) throw new Error(`internal: row ${r.row} prefilled twice in one call`);
      seen.add(r.row);
      if (r.tokens.length === 0) throw new UserError(`row ${r.row}: a prompt needs at least one token`);
      this.checkFits(r.row, r.tokens.length);
    }
    if (rows.length === 0) return [];
    // The prefill graph's batch: the joining rows (rounded up to a power of two), not the session's.
    const longest = Math.max(...rows.map((r) => r.tokens.length));
    const seq = Math.min(this.prefillChunk, nextPow2(longest));
    const batch = Math.min(this.batch, nextPow2(rows.length));
    const exe = await this.prefiller(batch, seq);
    const served = Array.from({ length: batch }, (_, i) => rows[i]?.row);
    const out: Float32Array[] = [];
    for (let start = 0; start < longest; start += seq) {
      const feeds: RowFeed[] = served.map((_, i) => ({
        start,
        tokens: rows[i]?.tokens.slice(start, start + seq) ?? [],
      }));
      const { logits } = await exe.run({ feeds: this.feedsFor(feeds, served, seq), outputs: ['logits'] });
      rows.forEach((r, i) => {
        if (feeds[i].tokens.length > 0 && start + seq >= r.tokens.length) out[i] = rowOf(logits, i);
      });
    }
    await copyCacheRows(exe, this.decoder, served);
    for (const r of rows) this.lengths[r.row] = r.tokens.length;
    return out;
  }

  /**
   * Appends one token to each named row (in one run of the decode graph) and returns each
   * row's next-token logits, in the order given. Rows not named idle.
   */
  async step(rows: readonly { row: number; token: number }[]): Promise<Float32Array[]> {
    const feeds: RowFeed[] = this.lengths.map((start) => ({ start, tokens: [] }));
    for (const r of rows) {
      this.checkRow(r.row);
      if (this.lengths[r.row] === 0) throw new Error(`internal: row ${r.row} steps before its prefill`);
      this.checkFits(r.row, this.lengths[r.row] + 1);
      feeds[r.row] = { start: this.lengths[r.row], tokens: [r.token] };
    }
    const served = feeds.map((f, row) => (f.tokens.length ? row : undefined));
    const { logits } = await this.decoder.run({
      feeds: this.feedsFor(feeds, served, 1),
      outputs: ['logits'],
    });
    for (const r of rows) this.lengths[r.row]++;
    return rows.map((r) => rowOf(logits, r.row));
  }

  /** Frees a row (its cache is overwritten by the next prefill). */
  release(row: number): void {
    this.checkRow(row);
    this.lengths[row] = 0;
  }

  /** Rows with nothing in their cache. */
  freeRows(): number[] {
    return this.lengths.flatMap((n, i) => (n === 0 ? [i] : []));
  }

  dispose(): void {
    this.decoder.dispose();
    for (const p of this.prefills.values()) p.then((e) => e.dispose()).catch(() => undefined);
    this.prefills.clear();
  }

  private feedsFor(
    feeds: readonly RowFeed[],
    served: readonly (number | undefined)[],
    seq: number,
  ): Record<string, Tensor> {
    return { ...kvFeeds(feeds, seq, this.maxLen), ...this.o.extraFeeds?.(served) };
  }

  private prefiller(batch: number, seq: number): Promise<Executable> {
    const key = `${batch}x${seq}`;
    let p = this.prefills.get(key);
    if (!p) {
      p = compile(this.backend, this.factory, batch, seq, this.maxLen, this.decoder);
      this.prefills.set(key, p);
    }
    return p;
  }

  private checkRow(row: number): void {
    if (!Number.isInteger(row) || row < 0 || row >= this.batch)
      throw new Error(`internal: row ${row} is not in [0, ${this.batch})`);
  }

  private checkFits(row: number, n: number): void {
    if (n > this.maxLen)
      throw new CacheFullError(`row ${row} needs ${n} cache slots but the session has ${this.maxLen}`);
  }
}

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * Compiles the KV-cache graph for `batch` rows of `seq` tokens. A prefill graph shares every
 * param but the cache with the decode graph (`decoder`): one copy of the weights and adapter
 * slots however many prefill shapes a session compiles; its cache is sized to its own batch.
 */
async function compile(
  backend: Backend,
  factory: KvGraphFactory,
  batch: number,
  seq: number,
  maxLen: number,
  decoder?: Executable,
): Promise<Executable> {
  const { graph, weights } = factory({ batch, seq }, { maxLen });
  return backend.compile(graph, bindParams(graph, weights), {
    inPlaceAssigns: true,
    ...(decoder ? { share: decoder, ownParams: isKvParam } : {}),
  });
}

/** Row b of logits [B,1,V] (a copy). */
function rowOf(logits: Tensor, b: number): Float32Array {
  const V = logits.shape[logits.shape.length - 1];
  return Float32Array.from((logits.data as Float32Array).subarray(b * V, (b + 1) * V));
}

/**
 * Copies the cache rows of a prefill executable into the decode executable: batch row i
 * of `from` becomes session row `rows[i]` (skipped where undefined). The two caches are
 * apart (each sized to its graph's batch); the rows move on the device.
 */
async function copyCacheRows(
  from: Executable,
  to: Executable,
  rows: readonly (number | undefined)[],
): Promise<void> {
  for (const p of to.graph.params()) {
    const name = String(p.attrs.name);
    if (isKvParam(name)) await to.copyParamRows(from, name, rows);
  }
}
