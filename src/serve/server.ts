// The OpenAI-compatible HTTP server (fastify) over an Engine: /v1/models,
// /v1/completions, /v1/chat/completions (JSON or server-sent events), vLLM's
// /v1/load_lora_adapter and /v1/unload_lora_adapter, /health. Bodies are checked by the
// zod schemas of schema.ts; every error is OpenAI's `{"error": {message, type, param,
// code}}` with 400 (malformed JSON, bad or out-of-range fields), 404 (unknown model or
// route), 429 (queue full), 500. A client that disconnects cancels its request, which
// frees its batch row before the next decode step.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { UserError } from '../util/errors.ts';
import { type ChatMessage, ChatTemplate } from './chat.ts';
import { badRequest, type Engine, type Finished, RequestError, type Submission } from './engine.ts';
import {
  type ChatRequest,
  type CompletionRequest,
  chatRequest,
  completionRequest,
  loraRequest,
  parseBody,
  refuseUnsupported,
  samplingOf,
  stopOf,
} from './schema.ts';

export interface ServerOptions {
  /** Turns chat messages into a prompt (default: the template of no model directory, i.e. the default one). */
  readonly chat?: ChatTemplate;
  /** Largest request body in bytes (default 16 MiB). */
  readonly bodyLimit?: number;
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function errorOf(e: unknown): { status: number; body: ErrorBody } {
  const body = (message: string, type: string, param: string | null = null, code: string | null = null) => ({
    error: { message, type, param, code },
  });
  if (e instanceof RequestError) return { status: e.status, body: body(e.message, e.type, e.param, e.code) };
  const fe = e as { statusCode?: number; code?: string; message?: string };
  if (
    fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    e instanceof SyntaxError
  )
    return {
      status: 400,
      body: body(`malformed JSON body: ${fe.message}`, 'invalid_request_error', null, 'invalid_json'),
    };
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500)
    return {
      status: 400,
      body: body(fe.message ?? 'bad request', 'invalid_request_error', null, fe.code ?? null),
    };
  // A user error of the runtime (an adapter folder it cannot read or serve) is the request's fault.
  if (e instanceof UserError || (e as Error)?.name === 'FormatError')
    return { status: 400, body: body((e as Error).message, 'invalid_request_error') };
  return { status: 500, body: body(`internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error') };
}

const now = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;

/** One prompt of a request, tokenized, with what the engine needs. */
interface Prompt {
  readonly ids: number[];
  readonly stop: readonly string[];
}

/** The app (not yet listening): routes over `engine`. */
export function createServer(engine: Engine, o: ServerOptions = {}): FastifyInstance {
  const chat = o.chat ?? ChatTemplate.forModel(undefined);
  const started = now();
  // Closing the server ends every connection (keep-alive ones included) at once.
  const app = Fastify({ logger: false, bodyLimit: o.bodyLimit ?? 16 * 2 ** 20, forceCloseConnections: true });

  app.setErrorHandler((e, _req, reply) => {
    const { status, body } = errorOf(e);
    reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({
      error: {
        message: `no route ${req.method} ${req.url}`,
        type: 'invalid_request_error',
        param: null,
        code: 'not_found',
      },
    });
  });

  app.get('/health', async () => {
    const s = engine.stats();
    return {
      status: 'ok',
      model: engine.baseModel,
      running: s.running,
      waiting: s.waiting,
      max_batch: s.maxBatch,
      max_queue: s.maxQueue,
    };
  });

  app.get('/v1/models', async () => ({
    object: 'list',
    data: engine.models().map((m) => ({
      id: m.id,
      object: 'model',
      created: started,
      owned_by: 'peftc',
      root: m.root,
      parent: m.parent,
    })),
  }));

  app.post('/v1/load_lora_adapter', async (req) => {
    const b = parseBody(loraRequest, req.body);
    if (!b.lora_path) throw badRequest('lora_path: the adapter directory is required', 'lora_path');
    await engine.loadAdapter(b.lora_name, b.lora_path);
    return `Success: LoRA adapter '${b.lora_name}' added successfully.`;
  });

  app.post('/v1/unload_lora_adapter', async (req) => {
    const b = parseBody(loraRequest, req.body);
    await engine.unloadAdapter(b.lora_name);
    return `Success: LoRA adapter '${b.lora_name}' removed successfully.`;
  });

  const maxTokens = (req: CompletionRequest | ChatRequest, promptLen: number, fallback: number) => {
    const asked = ('max_completion_tokens' in req ? req.max_completion_tokens : undefined) ?? req.max_tokens;
    return asked ?? Math.max(0, Math.min(fallback, engine.maxLen - promptLen));
  };

  /** Submits every prompt; if one is refused, the ones before it are cancelled. */
  const submitAll = (
    req: CompletionRequest | ChatRequest,
    prompts: readonly Prompt[],
    fallback: number,
  ): Submission[] => {
    refuseUnsupported(req);
    const sampling = samplingOf(req);
    const subs: Submission[] = [];
    try {
      for (const p of prompts)
        subs.push(
          engine.submit({
            model: req.model,
            prompt: p.ids,
            maxTokens: maxTokens(req, p.ids.length, fallback),
            sampling,
            stop: p.stop,
            ignoreEos: req.ignore_eos ?? false,
          }),
        );
    } catch (e) {
      for (const s of subs) s.cancel();
      throw e;
    }
    return subs;
  };

  const encode = (text: string, special: boolean, param: string): number[] => {
    if (!engine.encode) throw badRequest(`this model has no tokenizer; send the prompt as token ids`, param);
    return engine.encode(text, special);
  };

  app.post('/v1/completions', async (req, reply) => {
    const b = parseBody(completionRequest, req.body);
    const stop = stopOf(b);
    const raw = b.prompt;
    const prompts: Prompt[] = (
      typeof raw === 'string'
        ? [encode(raw, true, 'prompt')]
        : raw.every((x) => typeof x === 'number')
          ? [raw as number[]]
          : (raw as (string | number[])[]).map((p) => (typeof p === 'string' ? encode(p, true, 'prompt') : p))
    ).map((ids) => ({ ids, stop }));
    const subs = submitAll(b, prompts, 16);
    const id = newId('cmpl');
    const created = now();
    const base = { id, object: 'text_completion', created, model: b.model };
    if (b.stream)
      return stream(reply, subs, !!b.stream_options?.include_usage, {
        first: () => undefined,
        delta: (index, text) => ({
          ...base,
          choices: [{ index, text, logprobs: null, finish_reason: null }],
        }),
        last: (index, f) => ({
          ...base,
          choices: [{ index, text: '', logprobs: null, finish_reason: f.finishReason }],
        }),
        usage: (u) => ({ ...base, choices: [], usage: u }),
      });
    const results = await awaitAll(reply, subs);
    return {
      ...base,
      choices: results.map((f, index) => ({
        index,
        text: f.text,
        logprobs: null,
        finish_reason: f.finishReason,
      })),
      usage: usageOf(results),
    };
  });

  app.post('/v1/chat/completions', async (req, reply) => {
    const b = parseBody(chatRequest, req.body);
    const messages: ChatMessage[] = b.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
    }));
    const rendered = chat.render(messages);
    const ids = encode(rendered.text, rendered.addSpecialTokens, 'messages');
    const subs = submitAll(b, [{ ids, stop: [...stopOf(b), ...rendered.stop] }], Number.POSITIVE_INFINITY);
    const id = newId('chatcmpl');
    const created = now();
    const base = { id, object: 'chat.completion.chunk', created, model: b.model };
    if (b.stream)
      return stream(reply, subs, !!b.stream_options?.include_usage, {
        first: (index) => ({
          ...base,
          choices: [
            { index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
          ],
        }),
        delta: (index, content) => ({
          ...base,
          choices: [{ index, delta: { content }, logprobs: null, finish_reason: null }],
        }),
        last: (index, f) => ({
          ...base,
          choices: [{ index, delta: {}, logprobs: null, finish_reason: f.finishReason }],
        }),
        usage: (u) => ({ ...base, choices: [], usage: u }),
      });
    const results = await awaitAll(reply, subs);
    return {
      ...base,
      object: 'chat.completion',
      choices: results.map((f, index) => ({
        index,
        message: { role: 'assistant', content: f.text },
        logprobs: null,
        finish_reason: f.finishReason,
      })),
      usage: usageOf(results),
    };
  });

  return app;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

function usageOf(results: readonly Finished[]): Usage {
  const prompt = results.reduce((s, f) => s + f.promptTokens, 0);
  const completion = results.reduce((s, f) => s + f.outputIds.length, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Cancels `subs` when the client goes away before the response is complete. */
function cancelOnDisconnect(res: ServerResponse, subs: readonly Submission[]): void {
  res.on('close', () => {
    if (!res.writableFinished) for (const s of subs) s.cancel();
  });
}

async function awaitAll(reply: FastifyReply, subs: readonly Submission[]): Promise<Finished[]> {
  cancelOnDisconnect(reply.raw, subs);
  return Promise.all(subs.map((s) => s.result));
}

interface ChunkShapes {
  /** Sent once per choice before its text (chat: the role), or nothing. */
  first(index: number): object | undefined;
  delta(index: number, text: string): object;
  last(index: number, f: Finished): object;
  usage(u: Usage): object;
}

/** Server-sent events: `data: {json}` per chunk, `data: [DONE]` at the end. */
async function stream(
  reply: FastifyReply,
  subs: readonly Submission[],
  includeUsage: boolean,
  shapes: ChunkShapes,
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  cancelOnDisconnect(res, subs);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  const send = (chunk: object | string) => {
    if (!res.writableEnded && !res.destroyed)
      res.write(`data: ${typeof chunk === 'string' ? chunk : JSON.stringify(chunk)}\n\n`);
  };
  try {
    const results = await Promise.all(
      subs.map(async (s, index) => {
        const first = shapes.first(index);
        if (first) send(first);
        for await (const d of s) if (d.text) send(shapes.delta(index, d.text));
        const f = await s.result;
        if (f.finishReason !== 'cancelled') send(shapes.last(index, f));
        return f;
      }),
    );
    if (includeUsage) send(shapes.usage(usageOf(results)));
  } catch (e) {
    for (const s of subs) s.cancel();
    send(errorOf(e).body);
  }
  send('[DONE]');
  res.end();
}

/** Starts listening; resolves with the URL (the real port when `port` is 0). */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const realPort = typeof addr === 'object' && addr ? addr.port : port;
  const h = host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${realPort}`;
}
