// Shared pieces of the server tests: a SessionEngine over the bundled tiny-llama with
// random PEFT adapters, served on 127.0.0.1 port 0 and reached with the `openai` client;
// and the reference answer of a request run alone (its own batch-1 decoding session with
// its adapter attached the ordinary way, `generate` of src/generate).
import OpenAI from 'openai';
import type { Backend } from '../../src/backends/backend.ts';
import { DecodeSession, generate } from '../../src/generate/index.ts';
import { type OpenedModel, openModel, tokenizerOf } from '../../src/models/open.ts';
import type { Tokenizer } from '../../src/models/tokenizer/index.ts';
import {
  ChatTemplate,
  createServer,
  listen,
  SessionEngine,
  type SessionEngineOptions,
} from '../../src/serve/index.ts';
import { type AdapterSpec, makeAdapter } from '../models/multi-lora-cases.ts';

export const MODEL_DIR = 'examples/models/tiny-llama';
export const BASE = 'tiny-llama';
export const model: OpenedModel = openModel(MODEL_DIR);
export const tok = tokenizerOf(model) as Tokenizer;

/** Eight adapters of different ranks, targets and kinds (two DoRA). */
export const SPECS: AdapterSpec[] = [
  { r: 2, targets: ['q_proj', 'v_proj'], alpha: 8, seed: 1 },
  { r: 4, targets: ['o_proj', 'down_proj'], alpha: 16, seed: 2 },
  { r: 8, targets: ['gate_proj', 'up_proj', 'down_proj'], alpha: 8, seed: 3 },
  { r: 1, targets: ['k_proj', 'q_proj'], alpha: 1, seed: 4 },
  { r: 3, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'], alpha: 16, seed: 5, dora: true },
  { r: 6, targets: ['up_proj'], alpha: 8, seed: 6 },
  { r: 5, targets: ['v_proj', 'gate_proj'], alpha: 16, seed: 7, dora: true },
  {
    r: 8,
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    alpha: 8,
    seed: 8,
  },
];

let dirs: string[] | undefined;
/** The adapters' folders, made once per test file. */
export function adapterDirs(): string[] {
  dirs ??= SPECS.map((s) => makeAdapter(model, s));
  return dirs;
}

export interface Served {
  readonly engine: SessionEngine;
  readonly url: string;
  readonly client: OpenAI;
  close(): Promise<void>;
}

/** An engine with adapters a0..a{n-1} loaded, served on 127.0.0.1:0. */
export async function serve(
  backend: Backend,
  o: Partial<SessionEngineOptions> & { adapters?: number; chat?: ChatTemplate; model?: OpenedModel },
): Promise<Served> {
  const engine = await SessionEngine.create(backend, o.model ?? model, tok, {
    maxBatch: 4,
    maxQueue: 64,
    maxLen: 128,
    slots: { max_loras: 8, max_lora_rank: 8 },
    name: BASE,
    ...o,
  });
  const d = adapterDirs();
  for (let i = 0; i < (o.adapters ?? 0); i++) await engine.loadAdapter(`a${i}`, d[i]);
  const app = createServer(engine, { chat: o.chat ?? ChatTemplate.forModel(MODEL_DIR) });
  const url = await listen(app, '127.0.0.1', 0);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 15_000 });
  return {
    engine,
    url,
    client,
    close: async () => {
      await app.close();
      await engine.close();
    },
  };
}

export interface Alone {
  readonly ids: number[];
  readonly text: string;
  readonly finishReason: string;
}

const EOS = [...(model.config.eosTokenIds ?? []), ...(tok.eosId !== undefined ? [tok.eosId] : [])];

/** Greedy decoding of `prompt` alone: a batch-1 session with adapter `adapter` (index into adapterDirs, -1 = base). */
export async function alone(
  backend: Backend,
  adapter: number,
  prompt: readonly number[],
  maxTokens: number,
  stop: readonly string[] = [],
  on: OpenedModel = model,
): Promise<Alone> {
  // (prompt: token ids as the server encodes them)
  const session = await DecodeSession.create(backend, on, {
    batch: 1,
    maxLen: prompt.length + maxTokens,
    adapters: adapter < 0 ? [] : [adapterDirs()[adapter]],
  });
  try {
    const [g] = await generate(session, [prompt], {
      maxNewTokens: maxTokens,
      sampling: { temperature: 0 },
      eos: EOS,
      stop,
      decode: (ids) => tok.decode(ids),
    });
    return { ids: g.outputIds, text: g.text ?? '', finishReason: g.finishReason };
  } finally {
    session.dispose();
  }
}

/** Polls `check` until it is true (or fails after `ms`). */
export async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
