// What the HTTP server needs from a model runtime: the models it serves (the base and its
// adapters), adapters loaded and unloaded at run time, and requests submitted, each
// answered as a stream of token deltas and a final result, cancellable. The server
// (server.ts) knows nothing else; the runtime over a KV-cache decoding session with
// slotted multi-LoRA adapters is session-engine.ts.
import type { FinishReason, SamplingOptions } from '../generate/index.ts';
import { UserError } from '../util/errors.ts';

/** One entry of `/v1/models`. */
export interface ModelCard {
  readonly id: string;
  /** The base model's id for an adapter; null for the base. */
  readonly parent: string | null;
  /** Where it was read from (the model or adapter directory). */
  readonly root: string;
}

export interface EngineRequest {
  /** The base model's name, or a loaded adapter's. */
  readonly model: string;
  /** Prompt token ids (at least one). */
  readonly prompt: readonly number[];
  /** Most tokens generated. */
  readonly maxTokens: number;
  readonly sampling: SamplingOptions;
  /** Texts that end the answer (cut before them). */
  readonly stop: readonly string[];
  /** Keep going past end-of-sequence tokens. */
  readonly ignoreEos?: boolean;
}

/** One generated token and the text it made final ('' while held back: a split character, a possible stop string). */
export interface Delta {
  readonly token: number;
  readonly text: string;
}

export interface Finished {
  readonly finishReason: FinishReason | 'cancelled';
  readonly outputIds: readonly number[];
  readonly text: string;
  readonly promptTokens: number;
}

/** A submitted request: its deltas as they come (ends when it finishes or is cancelled), and its result. */
export interface Submission extends AsyncIterable<Delta> {
  readonly result: Promise<Finished>;
  /** Stops it (a disconnected client): its batch row or queue place is freed before the next decode step. */
  cancel(): void;
}

export interface EngineStats {
  /** Requests holding a batch row. */
  readonly running: number;
  /** Requests waiting for one. */
  readonly waiting: number;
  readonly maxBatch: number;
  readonly maxQueue: number;
}

export interface Engine {
  /** The base model's name (its directory's basename). */
  readonly baseModel: string;
  /** Cache slots per request: prompt plus generated tokens never exceed this. */
  readonly maxLen: number;
  readonly vocabSize: number;
  models(): ModelCard[];
  /** Text to token ids; undefined when the model has no tokenizer. */
  readonly encode?: (text: string, addSpecialTokens: boolean) => number[];
  loadAdapter(name: string, dir: string): Promise<ModelCard>;
  unloadAdapter(name: string): Promise<void>;
  /** Queues a request; throws a RequestError (unknown model, too long, queue full) at once. */
  submit(req: EngineRequest): Submission;
  stats(): EngineStats;
  close(): Promise<void>;
}

/** An error a request gets, in OpenAI's terms: the HTTP status, `type`, `param`, `code`. */
export class RequestError extends UserError {
  override name = 'RequestError';
  constructor(
    message: string,
    readonly status: 400 | 404 | 429 | 500,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new RequestError(message, 400, 'invalid_request_error', param, code);

export const unknownModel = (name: string, known: readonly string[]) =>
  new RequestError(
    `The model '${name}' does not exist; this server has: ${known.join(', ')}`,
    404,
    'invalid_request_error',
    'model',
    'model_not_found',
  );
