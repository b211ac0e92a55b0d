// Generation: KV-cache decoding sessions, sampling in Hugging Face's order, the decoding loop.
export { kvFeeds, MASKED, type RowFeed } from './feeds.ts';
export { type GenerateOptions, type Generation, generate } from './generate.ts';
export { type Accepted, type FinishReason, heldBack, RowDecoder, type RowOptions } from './row.ts';
export { argmax, isGreedy, processLogits, Sampler, type SamplingOptions, softmax } from './sampling.ts';
export {
  CacheFullError,
  DecodeSession,
  type KvGraphFactory,
  type ModelSessionOptions,
  type SessionOptions,
} from './session.ts';
