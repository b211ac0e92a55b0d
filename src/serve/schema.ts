// Request bodies of the OpenAI-compatible API (METHODS.md "OpenAI completion API"), as
// zod schemas: ranges as OpenAI documents them, vLLM's extensions top_k,
// repetition_penalty and ignore_eos. Fields this server does not implement are accepted only at their
// neutral value (n 1, penalties 0, no logprobs, ...) and refused otherwise, never ignored;
// fields it does not know are dropped (clients send many optional ones).
import { z } from 'zod';
import type { SamplingOptions } from '../generate/index.ts';
import { badRequest } from './engine.ts';

const tokenIds = z.array(z.number().int().min(0)).min(1);

const common = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(0).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** vLLM's extension: sample among the k most likely (0 or -1 = off). */
  top_k: z.number().int().min(-1).nullish(),
  /** vLLM's extension: Hugging Face's repetition penalty (1 = off). */
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  /** vLLM's extension: keep generating past end-of-sequence tokens (to max_tokens or a stop string). */
  ignore_eos: z.boolean().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  seed: z
    .number()
    .int()
    .min(-(2 ** 53) + 1)
    .max(2 ** 53 - 1)
    .nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  user: z.string().nullish(),
};

export const completionRequest = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  best_of: z.number().int().min(1).nullish(),
  suffix: z.string().nullish(),
});
export type CompletionRequest = z.output<typeof completionRequest>;

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const chatRequest = z.object({
  ...common,
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
        content: z.union([z.string(), z.array(textPart)]).nullish(),
        name: z.string().nullish(),
      }),
    )
    .min(1),
  max_completion_tokens: z.number().int().min(0).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  tools: z.array(z.unknown()).nullish(),
  response_format: z.object({ type: z.string() }).loose().nullish(),
});
export type ChatRequest = z.output<typeof chatRequest>;

export const loraRequest = z.object({
  lora_name: z.string().min(1),
  lora_path: z.string().min(1).optional(),
});

/** Parses `body` with `schema`, or throws a 400 naming the first bad field and why. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body))
    throw badRequest('the request body must be a JSON object');
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = issue.path.map(String).join('.') || null;
  throw badRequest(`${param ?? 'body'}: ${issue.message}`, param);
}

/** Refuses fields this server accepts only at their neutral value. */
export function refuseUnsupported(req: CompletionRequest | ChatRequest): void {
  const refuse = (param: string, why: string) => {
    throw badRequest(`${param}: ${why}`, param);
  };
  if ((req.n ?? 1) !== 1)
    refuse('n', 'only n = 1 is supported (one choice per prompt); send separate requests');
  if (req.presence_penalty) refuse('presence_penalty', 'not supported; use repetition_penalty');
  if (req.frequency_penalty) refuse('frequency_penalty', 'not supported; use repetition_penalty');
  if (req.logit_bias && Object.keys(req.logit_bias).length) refuse('logit_bias', 'not supported');
  if ('echo' in req && req.echo) refuse('echo', 'not supported');
  if ('best_of' in req && (req.best_of ?? 1) !== 1) refuse('best_of', 'only best_of = 1 is supported');
  if ('suffix' in req && req.suffix) refuse('suffix', 'not supported');
  if (req.logprobs) refuse('logprobs', 'not supported');
  if ('tools' in req && req.tools?.length) refuse('tools', 'tool calls are not supported');
  if ('response_format' in req && req.response_format && req.response_format.type !== 'text')
    refuse('response_format', 'only {"type": "text"} is supported');
}

/**
 * The sampling options of a request, with OpenAI's defaults (temperature 1, top_p 1);
 * temperature 0 is greedy. Without a seed each request draws its own.
 */
export function samplingOf(req: CompletionRequest | ChatRequest): SamplingOptions {
  const topK = req.top_k ?? 0;
  return {
    temperature: req.temperature ?? 1,
    topP: req.top_p ?? 1,
    topK: topK > 0 ? topK : undefined,
    repetitionPenalty: req.repetition_penalty ?? undefined,
    seed: req.seed ?? Math.floor(Math.random() * 2 ** 31),
  };
}

export function stopOf(req: CompletionRequest | ChatRequest): string[] {
  const s = req.stop;
  return s == null ? [] : typeof s === 'string' ? [s] : s;
}
