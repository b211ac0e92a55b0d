// The OpenAI-compatible server: an Engine (engine.ts) answering requests, the runtime
// behind `peftc serve` (session-engine.ts: continuous batching over a multi-LoRA
// decoding session), chat templates and the HTTP layer (fastify).
export { type ChatMessage, ChatTemplate, DEFAULT_CHAT_TEMPLATE, type RenderedChat } from './chat.ts';
export * from './engine.ts';
export { createServer, listen, type ServerOptions } from './server.ts';
export { SessionEngine, type SessionEngineOptions } from './session-engine.ts';
