// A bounded load test of the server: 64 concurrent requests (half of them streamed) over 8
// adapters of different ranks, targets and kinds (LoRA and DoRA), batched continuously 8
// rows at a time, within a time limit. No response is lost or duplicated, and none is
// mixed up: each equals that request decoded alone with its adapter (greedy).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { Rng } from '../../src/util/rng.ts';
import { adapterDirs, alone, type Served, SPECS, serve, tok } from './helpers.ts';

const backend = new CpuBackend();
const N = 64;
const LIMIT_MS = 15_000;

interface Req {
  readonly model: string;
  readonly adapter: number;
  readonly prompt: string;
  readonly maxTokens: number;
  readonly stream: boolean;
}

const rng = new Rng(23);
const WORDS = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'once', 'upon', 'time', 'river', 'stone', 'light'];
const requests: Req[] = Array.from({ length: N }, (_, i) => {
  const words = Array.from(
    { length: 1 + Math.floor(rng.next() * 6) },
    () => WORDS[Math.floor(rng.next() * WORDS.length)],
  );
  return {
    model: `a${i % SPECS.length}`,
    adapter: i % SPECS.length,
    prompt: `${i}: ${words.join(' ')}`,
    maxTokens: 1 + Math.floor(rng.next() * 12),
    stream: i % 2 === 1,
  };
});

let s: Served;
beforeAll(async () => {
  adapterDirs();
  s = await serve(backend, { maxBatch: 8, maxQueue: N, maxLen: 64, adapters: SPECS.length });
}, 20_000);
afterAll(async () => {
  await s?.close();
});

async function ask(r: Req): Promise<{ id: string; text: string; finish: string | null }> {
  const body = { model: r.model, prompt: r.prompt, max_tokens: r.maxTokens, temperature: 0 };
  if (!r.stream) {
    const c = await s.client.completions.create(body);
    return { id: c.id, text: c.choices[0].text, finish: c.choices[0].finish_reason };
  }
  let id = '';
  let text = '';
  let finish: string | null = null;
  for await (const c of await s.client.completions.create({ ...body, stream: true })) {
    id = c.id;
    text += c.choices[0]?.text ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { id, text, finish };
}

it(`${N} concurrent requests over ${SPECS.length} adapters: none lost, duplicated or mixed up`, async () => {
  const t0 = Date.now();
  let peak = 0;
  const sample = setInterval(() => {
    peak = Math.max(peak, s.engine.stats().running);
  }, 5);
  const answers = await Promise.all(requests.map(ask)).finally(() => clearInterval(sample));
  const elapsed = Date.now() - t0;
  expect(peak).toBeGreaterThan(1); // requests were decoded together, on different adapters
  expect(elapsed).toBeLessThan(LIMIT_MS);
  expect(answers).toHaveLength(N);
  expect(new Set(answers.map((a) => a.id)).size).toBe(N);
  for (const [i, r] of requests.entries()) {
    const ref = await alone(backend, r.adapter, tok.encode(r.prompt), r.maxTokens);
    expect(answers[i].text, `request ${i} (${r.model}, ${JSON.stringify(r.prompt)})`).toBe(ref.text);
    expect(answers[i].finish).toBe(ref.finishReason);
  }
  expect(s.engine.stats()).toMatchObject({ running: 0, waiting: 0 });
  console.log(
    `load test: ${N} requests over ${SPECS.length} adapters in ${elapsed} ms (cpu, max-batch 8, peak ${peak} rows busy)`,
  );
}, 20_000);
