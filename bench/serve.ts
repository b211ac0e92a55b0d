// The OpenAI-compatible server end to end, in one run (an HTTP client, the `openai`
// package, against the server on 127.0.0.1):
//   node bin/run-ts.js bench/serve.ts [--model <dir>] [--backend webgpu|cpu] [--requests 64]
//     [--max-tokens 32] [--max-batch 8] [--adapters 8] [--rank 8]
// Stated config (default): the bundled tiny-llama, f32, webgpu, 64 concurrent greedy
// completions (prompts of 8-20 tokens, `ignore_eos`, 32 tokens each), three variants:
// - mixed: request i on adapter i mod 8 (8 distinct adapters decoded together, SGMV);
// - one adapter: every request on adapter 0 (same batch, one slot);
// - unbatched: the mixed requests with --max-batch 1 (one request at a time).
// Reported: completion tokens/s over the whole burst, requests/s, median and p95 latency
// and time to first token (every request streams).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { type BackendName, createBackend } from '../src/backends/index.ts';
import { openModel, tokenizerOf } from '../src/models/open.ts';
import { createServer, listen, SessionEngine } from '../src/serve/index.ts';
import { writeRandomAdapters } from './random-adapters.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    backend: { type: 'string', default: 'webgpu' },
    requests: { type: 'string', default: '64' },
    'max-tokens': { type: 'string', default: '32' },
    'max-batch': { type: 'string', default: '8' },
    adapters: { type: 'string', default: '8' },
    rank: { type: 'string', default: '8' },
  },
});
const N = Number(a.requests);
const maxTokens = Number(a['max-tokens']);
const maxBatch = Number(a['max-batch']);
const nAdapters = Number(a.adapters);
const rank = Number(a.rank);
const backendName = a.backend as BackendName;
const model = openModel(a.model!);
const tok = tokenizerOf(model);

const { dirs, root: adapterRoot } = writeRandomAdapters(model, nAdapters, rank, 200);
const prompts = Array.from({ length: N }, (_, i) =>
  Array.from({ length: 8 + (i % 13) }, (_, j) => (i * 31 + j * 7) % 256),
);

interface Row {
  name: string;
  batch: number;
  seconds: number;
  tokens: number;
  latency: number[];
  ttft: number[];
}

const backend = await createBackend(backendName);
const pct = (xs: number[], p: number) =>
  [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function burst(name: string, batch: number, adapterOf: (i: number) => number): Promise<Row> {
  const engine = await SessionEngine.create(backend, model, tok, {
    name: 'base',
    maxBatch: batch,
    maxQueue: N,
    maxLen: 32 + maxTokens,
    slots: { max_loras: nAdapters, max_lora_rank: rank },
  });
  for (const [i, d] of dirs.entries()) await engine.loadAdapter(`a${i}`, d);
  const app = createServer(engine);
  const url = await listen(app, '127.0.0.1', 0);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 600_000 });
  const one = async (i: number) => {
    const t0 = performance.now();
    let first = 0;
    let tokens = 0;
    const stream = await client.completions.create({
      model: `a${adapterOf(i)}`,
      prompt: prompts[i],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    } as never);
    for await (const c of stream as unknown as AsyncIterable<OpenAI.Completion>) {
      if (!first && c.choices.length) first = performance.now() - t0;
      if (c.usage) tokens = c.usage.completion_tokens;
    }
    return { ms: performance.now() - t0, ttft: first, tokens };
  };
  await one(0); // warm-up: the prefill and decode graphs compiled
  const t0 = performance.now();
  const results = await Promise.all(prompts.map((_, i) => one(i)));
  const seconds = (performance.now() - t0) / 1000;
  await app.close();
  await engine.close();
  return {
    name,
    batch,
    seconds,
    tokens: results.reduce((s, r) => s + r.tokens, 0),
    latency: results.map((r) => r.ms),
    ttft: results.map((r) => r.ttft),
  };
}

const rows: Row[] = [];
rows.push(await burst(`mixed (${nAdapters} adapters)`, maxBatch, (i) => i % nAdapters));
rows.push(await burst('one adapter', maxBatch, () => 0));
rows.push(await burst(`unbatched (${nAdapters} adapters)`, 1, (i) => i % nAdapters));
backend.dispose();

const result = {
  config: {
    model: model.source,
    backend: backendName,
    requests: N,
    max_tokens: maxTokens,
    rank,
    adapters: nAdapters,
  },
  rows: rows.map((r) => ({
    variant: r.name,
    max_batch: r.batch,
    completion_tokens: r.tokens,
    seconds: r.seconds,
    tokens_per_s: r.tokens / r.seconds,
    requests_per_s: N / r.seconds,
    latency_ms_p50: pct(r.latency, 0.5),
    latency_ms_p95: pct(r.latency, 0.95),
    ttft_ms_p50: pct(r.ttft, 0.5),
  })),
  mixed_over_one_adapter: rows[0].tokens / rows[0].seconds / (rows[1].tokens / rows[1].seconds),
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'serve.json'), `${JSON.stringify(result, null, 2)}\n`);
printTable(
  `peftc serve, ${model.source}, ${backendName}, ${N} concurrent streamed completions of ${maxTokens} tokens`,
  [
    { header: 'variant', legend: 'which adapters the requests name, and the batch', cell: (r) => r.name },
    { header: 'max-batch', legend: 'rows decoded together', cell: (r) => String(r.batch) },
    {
      header: 'tokens/s',
      legend: 'completion tokens of the burst / its wall time',
      cell: (r) => num(r.tokens / r.seconds, 1),
    },
    { header: 'req/s', legend: 'requests / wall time of the burst', cell: (r) => num(N / r.seconds, 2) },
    {
      header: 'p50 ms',
      legend: 'median request latency (client side)',
      cell: (r) => num(pct(r.latency, 0.5), 0),
    },
    { header: 'p95 ms', legend: '95th percentile latency', cell: (r) => num(pct(r.latency, 0.95), 0) },
    {
      header: 'ttft p50 ms',
      legend: 'median time to the first streamed chunk',
      cell: (r) => num(pct(r.ttft, 0.5), 0),
    },
  ],
  rows,
  [`mixed / one adapter throughput: ${num(result.mixed_over_one_adapter, 2)}`],
);
rmSync(adapterRoot, { recursive: true, force: true });
process.exit(0);
