// `peftc serve --model <dir> [--adapter name=<dir>]... [--host 127.0.0.1] [--port N]
//   [--max-batch N] [--max-queue N]` plus the backend flags: an OpenAI-compatible HTTP
// server (src/serve) over one base model and many LoRA adapters, each request picking its
// adapter by `model`, concurrent requests batched continuously. Runs until SIGINT/SIGTERM.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { readPeftConfig } from '../../io/peft/index.ts';
import { openModel, tokenizerOf } from '../../models/open.ts';
import { ChatTemplate, createServer, listen, SessionEngine } from '../../serve/index.ts';
import { UsageError, UserError } from '../errors.ts';
import {
  addBackendOptions,
  type BackendCliOptions,
  backendFrom,
  nonNegativeInt,
  positiveInt,
} from '../options.ts';

export interface ServeCliOptions extends BackendCliOptions {
  readonly model: string;
  readonly adapter?: { name: string; dir: string }[];
  readonly host: string;
  readonly port: number;
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly maxModelLen?: number;
  readonly maxLoras?: number;
  readonly maxLoraRank?: number;
}

const DEFAULT_PORT = 8000;
const DEFAULT_MAX_BATCH = 8;
const DEFAULT_MAX_QUEUE = 256;
const DEFAULT_MAX_LORAS = 8;
const DEFAULT_MAX_LORA_RANK = 16;
/** The cache length per row when --max-model-len is not given: the model's, at most this. */
const DEFAULT_MAX_MODEL_LEN = 1024;

function adapterSpec(v: string, prev: { name: string; dir: string }[] = []): { name: string; dir: string }[] {
  const at = v.indexOf('=');
  if (at <= 0 || at === v.length - 1)
    throw new UsageError(`--adapter must be name=<dir> (the name requests put in 'model'), got '${v}'`);
  const name = v.slice(0, at);
  if (prev.some((a) => a.name === name)) throw new UsageError(`--adapter: the name '${name}' is given twice`);
  return [...prev, { name, dir: v.slice(at + 1) }];
}

export function register(program: Command): void {
  addBackendOptions(
    program
      .command('serve')
      .description(
        'an OpenAI-compatible HTTP server over the model and its LoRA adapters (multi-adapter batches)',
      )
      .requiredOption(
        '--model <dir>',
        'Hugging Face model directory or 4-bit checkpoint (its name is the base model id)',
      )
      .option(
        '--adapter <name=dir>',
        'a PEFT LoRA/DoRA adapter served as model <name> (repeat for several)',
        adapterSpec,
      )
      .option('--host <host>', 'address to listen on (loopback by default)', '127.0.0.1')
      .option(
        '--port <n>',
        `port (0 = any free one; default ${DEFAULT_PORT})`,
        nonNegativeInt('--port'),
        DEFAULT_PORT,
      )
      .option(
        '--max-batch <n>',
        'requests decoded together (batch rows)',
        positiveInt('--max-batch'),
        DEFAULT_MAX_BATCH,
      )
      .option(
        '--max-queue <n>',
        'requests waiting for a batch row at most; more get 429',
        nonNegativeInt('--max-queue'),
        DEFAULT_MAX_QUEUE,
      )
      .option(
        '--max-model-len <n>',
        `cache slots per request, prompt + generated tokens (default: the model's max_position_embeddings, at most ${DEFAULT_MAX_MODEL_LEN})`,
        positiveInt('--max-model-len'),
      )
      .option(
        '--max-loras <n>',
        `adapters resident at once (default: ${DEFAULT_MAX_LORAS}, or the number of --adapter if more)`,
        positiveInt('--max-loras'),
      )
      .option(
        '--max-lora-rank <n>',
        `largest adapter rank that can be loaded (default: ${DEFAULT_MAX_LORA_RANK}, or the largest rank of the --adapter folders if more)`,
        positiveInt('--max-lora-rank'),
      ),
  ).action(async (o: ServeCliOptions) => {
    const stop = await startServe(o, (s) => process.stdout.write(s));
    await new Promise<void>((resolve) => {
      const done = () => {
        process.off('SIGINT', done);
        process.off('SIGTERM', done);
        resolve();
      };
      process.on('SIGINT', done);
      process.on('SIGTERM', done);
    });
    await stop();
  });
}

/**
 * Opens the model, compiles the engine, loads the adapters, listens and prints the URL
 * through `write`; resolves with a function that stops the server and frees the device.
 */
export async function startServe(
  o: ServeCliOptions,
  write: (s: string) => void,
): Promise<() => Promise<void>> {
  for (const a of o.adapter ?? [])
    if (!existsSync(a.dir)) throw new UsageError(`--adapter ${a.name}=${a.dir}: no such directory`);
  const model = openModel(o.model);
  if (!model.dir) throw new UsageError(`--model ${o.model}: serve needs a model directory, not a preset`);
  const maxLoras = o.maxLoras ?? Math.max(DEFAULT_MAX_LORAS, o.adapter?.length ?? 0);
  if ((o.adapter?.length ?? 0) > maxLoras)
    throw new UsageError(`${o.adapter?.length} adapters given but --max-loras is ${maxLoras}`);
  const maxLoraRank =
    o.maxLoraRank ??
    Math.max(
      DEFAULT_MAX_LORA_RANK,
      ...(o.adapter ?? []).map((a) => adapterFlag(a, () => adapterRank(a.dir))),
    );
  const chat = ChatTemplate.forModel(model.dir);
  const backend = await backendFrom(o);
  let engine: SessionEngine | undefined;
  try {
    engine = await SessionEngine.create(backend, model, tokenizerOf(model), {
      maxBatch: o.maxBatch,
      maxQueue: o.maxQueue,
      maxLen: o.maxModelLen ?? Math.min(model.config.maxPositionEmbeddings, DEFAULT_MAX_MODEL_LEN),
      slots: { max_loras: maxLoras, max_lora_rank: maxLoraRank },
    });
    for (const a of o.adapter ?? [])
      await engine.loadAdapter(a.name, a.dir).catch((e: Error) => adapterFlag(a, () => Promise.reject(e)));
    const app = createServer(engine, { chat });
    const url = await listen(app, o.host, o.port);
    write(
      `peftc serve: listening on ${url} (OpenAI API at ${url}/v1; models: ${engine
        .models()
        .map((m) => m.id)
        .join(', ')}; chat template: ${chat.source})\n`,
    );
    const running = engine;
    return async () => {
      await app.close();
      await running.close();
      backend.dispose();
    };
  } catch (e) {
    await engine?.close();
    backend.dispose();
    throw e;
  }
}

/** The largest rank of the PEFT adapter in `dir` (r and its rank_pattern); 0 if it names none. */
function adapterRank(dir: string): number {
  const c = readPeftConfig(dir).config as { r?: unknown; rank_pattern?: Record<string, unknown> };
  const ranks = [c.r, ...Object.values(c.rank_pattern ?? {})].filter(
    (r): r is number => typeof r === 'number',
  );
  return Math.max(0, ...ranks);
}

/** `fn()`, its error (thrown or rejected) prefixed with the --adapter flag it came from. */
function adapterFlag<T>(a: { name: string; dir: string }, fn: () => T): T {
  const wrap = (e: unknown) => new UserError(`--adapter ${a.name}=${a.dir}: ${(e as Error).message}`);
  try {
    const r = fn();
    return (r instanceof Promise ? r.catch((e) => Promise.reject(wrap(e))) : r) as T;
  } catch (e) {
    throw wrap(e);
  }
}
