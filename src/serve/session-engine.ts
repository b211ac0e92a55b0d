// The server's runtime: one base model compiled once as a KV-cache decoding session
// (src/generate DecodeSession) of `maxBatch` rows, its linears carrying multi-LoRA slots
// (src/models/multi-lora.ts: adapters loaded and unloaded as param writes, no recompile),
// and a scheduler loop doing continuous batching: between decode steps it admits waiting
// requests into free rows (a prefill of just the joining rows), then runs one decode step
// for every busy row, each row on its own adapter (the `adapter_index` feed), and frees a
// row as soon as its request finishes or is cancelled. Loads and unloads run in the loop
// too, between steps, so a graph run never sees a half-written slot.
import { basename, resolve } from 'node:path';
import type { Backend } from '../backends/backend.ts';
import { DecodeSession, RowDecoder } from '../generate/index.ts';
import {
  ADAPTER_INDEX,
  type AdapterSlots,
  type LoraSlotsOptions,
  prepareMultiLora,
} from '../models/multi-lora.ts';
import type { OpenedModel } from '../models/open.ts';
import type { Tokenizer } from '../models/tokenizer/index.ts';
import {
  badRequest,
  type Delta,
  type Engine,
  type EngineRequest,
  type EngineStats,
  type Finished,
  type ModelCard,
  RequestError,
  type Submission,
  unknownModel,
} from './engine.ts';

export interface SessionEngineOptions {
  /** The base model's name (default: the model directory's basename). */
  readonly name?: string;
  /** Rows decoded together. */
  readonly maxBatch: number;
  /** Requests waiting for a row at most; one more is refused (429). */
  readonly maxQueue: number;
  /** Cache slots per row (prompt + generated tokens). */
  readonly maxLen: number;
  /** The multi-LoRA slots: target modules, max_loras, max_lora_rank. */
  readonly slots?: LoraSlotsOptions;
  /** Longest prefill chunk (tokens per row per prefill run). */
  readonly prefillChunk?: number;
}

/** A request in the engine: waiting, or holding a row. */
interface Job {
  readonly req: EngineRequest;
  readonly adapter: string | null;
  readonly decoder: RowDecoder;
  readonly deltas: Channel<Delta>;
  readonly finish: (f: Finished) => void;
  readonly fail: (e: unknown) => void;
  cancelled: boolean;
}

export class SessionEngine implements Engine {
  readonly baseModel: string;
  readonly maxLen: number;
  readonly vocabSize: number;
  readonly encode?: (text: string, addSpecialTokens: boolean) => number[];
  private readonly waiting: Job[] = [];
  private readonly rows = new Map<number, Job>();
  /** Adapter of each session row (null: the base model). */
  private readonly rowAdapter: (string | null)[];
  /** Loads and unloads, run by the loop between steps. */
  private readonly admin: (() => Promise<void>)[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly loop: Promise<void>;
  private readonly eos: ReadonlySet<number>;

  private constructor(
    private readonly model: OpenedModel,
    private readonly tokenizer: Tokenizer | undefined,
    private readonly session: DecodeSession,
    private readonly slots: AdapterSlots,
    private readonly o: SessionEngineOptions,
  ) {
    this.baseModel = o.name ?? basename(resolve(model.dir ?? 'model'));
    this.maxLen = o.maxLen;
    this.vocabSize = model.config.vocabSize;
    this.rowAdapter = new Array(o.maxBatch).fill(null);
    this.eos = new Set([
      ...(model.config.eosTokenIds ?? []),
      ...(tokenizer?.eosId !== undefined ? [tokenizer.eosId] : []),
    ]);
    if (tokenizer) this.encode = (text, special) => tokenizer.encode(text, { addSpecialTokens: special });
    this.loop = this.run();
  }

  /** Compiles the decode graph for `maxBatch` rows (prefill graphs as rows join) with empty adapter slots. */
  static async create(
    backend: Backend,
    model: OpenedModel,
    tokenizer: Tokenizer | undefined,
    o: SessionEngineOptions,
  ): Promise<SessionEngine> {
    const { slots } = prepareMultiLora(model, { batch: 1, seq: 1 }, o.slots ?? {});
    let engine: SessionEngine | undefined;
    const session = await DecodeSession.fromFactory(
      slots.wrap(backend),
      (shape, kvCache) => prepareMultiLora(model, shape, slots.layout.settings, { kvCache, slots }),
      model.config,
      {
        batch: o.maxBatch,
        maxLen: o.maxLen,
        prefillChunk: o.prefillChunk,
        // Batch row i of a run serves session row rows[i]: its adapter's slot (-1: base).
        extraFeeds: (rows) => ({
          [ADAPTER_INDEX]: slots.index(rows.map((r) => (r === undefined ? null : engine!.rowAdapter[r]))),
        }),
      },
    );
    engine = new SessionEngine(model, tokenizer, session, slots, o);
    return engine;
  }

  models(): ModelCard[] {
    const root = resolve(this.model.dir ?? this.baseModel);
    return [
      { id: this.baseModel, parent: null, root },
      ...this.slots.loaded().map((a) => ({ id: a.name, parent: this.baseModel, root: resolve(a.dir) })),
    ];
  }

  loadAdapter(name: string, dir: string): Promise<ModelCard> {
    if (name === this.baseModel)
      return Promise.reject(
        badRequest(`'${name}' is the base model's name; pick another lora_name`, 'lora_name'),
      );
    return this.inLoop(async () => {
      const a = await this.slots.load(name, dir);
      return { id: a.name, parent: this.baseModel, root: resolve(a.dir) };
    });
  }

  unloadAdapter(name: string): Promise<void> {
    return this.inLoop(async () => {
      if (!this.slots.get(name)) throw unknownModel(name, this.names());
      const users = [...this.rows.values(), ...this.waiting].filter(
        (j) => j.adapter === name && !j.cancelled,
      );
      if (users.length)
        throw badRequest(
          `the adapter '${name}' is in use by ${users.length} request(s); unload it once they finish`,
          'lora_name',
        );
      await this.slots.unload(name);
    });
  }

  submit(req: EngineRequest): Submission {
    if (this.closed) throw new RequestError('the server is shutting down', 500, 'server_error');
    const adapter = req.model === this.baseModel ? null : req.model;
    if (adapter !== null && !this.slots.get(adapter)) throw unknownModel(req.model, this.names());
    const n = req.prompt.length;
    if (n === 0) throw badRequest('the prompt is empty: it needs at least one token', 'prompt');
    if (n + Math.max(1, req.maxTokens) > this.maxLen)
      throw badRequest(
        `this model's maximum context length is ${this.maxLen} tokens; the request has ${n} prompt tokens and asks for ${req.maxTokens} more. Shorten the prompt or lower max_tokens`,
        'max_tokens',
        'context_length_exceeded',
      );
    for (const id of req.prompt)
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw badRequest(`token id ${id} is not in [0, ${this.vocabSize})`, 'prompt');
    if (this.rows.size + this.waiting.length >= this.o.maxBatch + this.o.maxQueue)
      throw new RequestError(
        `the server is busy: ${this.rows.size} requests running and ${this.waiting.length} waiting (--max-batch ${this.o.maxBatch}, --max-queue ${this.o.maxQueue}); retry later`,
        429,
        'rate_limit_error',
        null,
        'queue_full',
      );
    let finish!: (f: Finished) => void;
    let fail!: (e: unknown) => void;
    const result = new Promise<Finished>((res, rej) => {
      finish = res;
      fail = rej;
    });
    result.catch(() => undefined); // a streaming reader sees the failure through the deltas
    const decode = this.tokenizer ? (ids: readonly number[]) => this.tokenizer!.decode(ids) : undefined;
    const job: Job = {
      req,
      adapter,
      decoder: new RowDecoder(req.prompt, {
        maxNewTokens: req.maxTokens,
        sampling: req.sampling,
        eos: req.ignoreEos ? undefined : this.eos,
        stop: req.stop,
        decode,
      }),
      deltas: new Channel<Delta>(),
      finish,
      fail,
      cancelled: false,
    };
    this.waiting.push(job);
    this.wake?.();
    return {
      result,
      cancel: () => this.cancel(job),
      [Symbol.asyncIterator]: () => job.deltas[Symbol.asyncIterator](),
    };
  }

  stats(): EngineStats {
    return {
      running: this.rows.size,
      waiting: this.waiting.length,
      maxBatch: this.o.maxBatch,
      maxQueue: this.o.maxQueue,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of [...this.waiting, ...this.rows.values()]) this.cancel(j);
    this.wake?.();
    await this.loop;
    this.session.dispose();
  }

  private names(): string[] {
    return this.models().map((m) => m.id);
  }

  private cancel(job: Job): void {
    if (job.cancelled) return;
    job.cancelled = true;
    const at = this.waiting.indexOf(job);
    if (at >= 0) this.waiting.splice(at, 1);
    this.end(job, 'cancelled');
    this.wake?.(); // a running row is freed by the loop, between runs
  }

  private end(job: Job, reason: Finished['finishReason']): void {
    job.deltas.close();
    job.finish({
      finishReason: reason,
      outputIds: job.decoder.out,
      text: job.decoder.text ?? '',
      promptTokens: job.req.prompt.length,
    });
  }

  /** Runs `op` in the loop between graph runs; resolves with its result. */
  private inLoop<T>(op: () => Promise<T>): Promise<T> {
    return new Promise<T>((res, rej) => {
      this.admin.push(() => op().then(res, rej));
      this.wake?.();
    });
  }

  private free(row: number): void {
    this.rows.delete(row);
    this.rowAdapter[row] = null;
    this.session.release(row);
  }

  /** Takes the next token of the request in `row`; frees the row when it is done. */
  private accept(row: number, job: Job, logits: Float32Array): void {
    const r = job.decoder.accept(logits, this.session.length(row) + 1 > this.maxLen);
    job.deltas.push({ token: r.token, text: r.text });
    if (r.done) {
      this.free(row);
      this.end(job, r.done);
    }
  }

  private async run(): Promise<void> {
    while (!this.closed || this.admin.length) {
      for (const op of this.admin.splice(0)) await op();
      for (const [row, job] of this.rows) if (job.cancelled) this.free(row);
      if (this.closed) continue;
      if (!this.rows.size && !this.waiting.length) {
        if (!this.admin.length)
          await new Promise<void>((r) => {
            this.wake = r;
          });
        this.wake = undefined;
        continue;
      }
      // Lets I/O in between steps (new requests, disconnects): a backend whose runs resolve
      // without a macrotask (the CPU interpreter) would otherwise starve the HTTP server.
      await new Promise((r) => setImmediate(r));
      try {
        await this.advance();
      } catch (e) {
        // A failed run fails the requests it carried (500); the loop goes on with new ones.
        for (const [row, job] of [...this.rows]) {
          this.free(row);
          job.deltas.fail(e);
          job.fail(e);
        }
      }
    }
  }

  /** One scheduler step: a prefill of the rows joining, else one decode step of every busy row. */
  private async advance(): Promise<void> {
    const free = this.session.freeRows().filter((r) => !this.rows.has(r));
    const joining = free.slice(0, this.waiting.length).map((row) => {
      const job = this.waiting.shift() as Job;
      this.rows.set(row, job);
      this.rowAdapter[row] = job.adapter;
      return { row, tokens: job.req.prompt, job };
    });
    if (joining.length) {
      const logits = await this.session.prefill(joining);
      joining.forEach((j, i) => {
        if (j.job.cancelled) this.free(j.row);
        else if (j.job.req.maxTokens <= 0) {
          this.free(j.row);
          this.end(j.job, 'length');
        } else this.accept(j.row, j.job, logits[i]);
      });
      return; // rows freed by a first token take waiting requests first
    }
    const stepping = [...this.rows].map(([row, job]) => ({
      row,
      token: job.decoder.out.at(-1) as number,
      job,
    }));
    const logits = await this.session.step(stepping);
    stepping.forEach((s, i) => {
      if (s.job.cancelled) this.free(s.row);
      else this.accept(s.row, s.job, logits[i]);
    });
  }
}

/** An async queue: push values, close or fail it; one reader iterates. */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private done = false;
  private error: unknown;
  private waiter: (() => void) | undefined;

  push(v: T): void {
    if (this.done) return;
    this.items.push(v);
    this.signal();
  }

  close(): void {
    this.done = true;
    this.signal();
  }

  fail(e: unknown): void {
    if (this.done) return;
    this.error = e ?? new Error('failed');
    this.close();
  }

  private signal(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length) {
        yield this.items.shift() as T;
        continue;
      }
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((r) => {
        this.waiter = r;
      });
    }
  }
}
