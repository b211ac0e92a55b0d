// Decoding with the KV cache (src/generate), in one run:
//   node bin/run-ts.js bench/generate.ts [--model <dir|preset>] [--backend webgpu|cpu] [--steps 16]
// Stated config (default): the bundled tiny-llama, f32, greedy, webgpu.
// - decode tokens/s at batch 1 and 16: every row prefilled with a 32-token prompt, then
//   `steps` decode runs (one token per row each, argmax on the host), each timed end to end;
// - cache against full recompute at 256 tokens of context (batch 1): one decode step of
//   the cache graph against one run of the plain forward graph over the 257 tokens, i.e.
//   the cost of the next token either way, alternated step by step (target: the cache
//   >= 5x faster). Every figure is a median of per-step times.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BackendName, createBackend } from '../src/backends/index.ts';
import { argmax, DecodeSession } from '../src/generate/index.ts';
import { tensor } from '../src/ir/tensor.ts';
import { bindParams } from '../src/ir/weights.ts';
import { openModel } from '../src/models/open.ts';
import { prepareModel } from '../src/models/prepare.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    backend: { type: 'string', default: 'webgpu' },
    steps: { type: 'string', default: '16' },
  },
});
const model = openModel(a.model!);
const backendName = a.backend as BackendName;
const steps = Number(a.steps);
const backend = await createBackend(backendName);
const V = model.config.vocabSize;
const prompt = (n: number, salt: number) => Array.from({ length: n }, (_, i) => (i * 7 + salt * 13) % 256);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** A decode session of `batch` rows prefilled with `context` tokens, and its next-step function. */
async function decoder(batch: number, context: number) {
  const s = await DecodeSession.create(backend, model, { batch, maxLen: context + steps + 2 });
  const rows = Array.from({ length: batch }, (_, row) => ({ row, tokens: prompt(context, row) }));
  let logits = await s.prefill(rows);
  const step = async () => {
    logits = await s.step(logits.map((l, row) => ({ row, token: argmax(l) })));
  };
  await step(); // warm-up
  return { step, dispose: () => s.dispose() };
}

/** The plain forward graph over `seq` tokens (batch 1) and one next-token run of it. */
async function recomputer(seq: number) {
  const { graph, weights } = prepareModel(model, { batch: 1, seq });
  const exe = await backend.compile(graph, bindParams(graph, weights));
  const feeds = { input_ids: tensor('i32', [1, seq], prompt(seq, 0)) };
  const step = async () => {
    argmax((await exe.run({ feeds, outputs: ['logits'] })).logits.data.subarray((seq - 1) * V));
  };
  await step();
  return { step, dispose: () => exe.dispose() };
}

// Medians of per-step times: the host may be shared, and a median shrugs off a busy moment.
const rows: { name: string; batch: number; context: number; ms: number }[] = [];
for (const batch of [1, 16]) {
  const d = await decoder(batch, 32);
  const ms: number[] = [];
  for (let k = 0; k < steps; k++) ms.push(await timed(d.step));
  d.dispose();
  rows.push({ name: 'decode, cache', batch, context: 32, ms: median(ms) });
}
// At 256 tokens of context the two alternate step by step, so both see the same load.
const cached = await decoder(1, 256);
const full = await recomputer(257);
const [cacheMs, fullMs]: number[][] = [[], []];
for (let k = 0; k < steps; k++) {
  cacheMs.push(await timed(cached.step));
  fullMs.push(await timed(full.step));
}
cached.dispose();
full.dispose();
const cache256 = median(cacheMs);
const full256 = median(fullMs);
rows.push({ name: 'decode, cache', batch: 1, context: 256, ms: cache256 });
rows.push({ name: 'full recompute', batch: 1, context: 256, ms: full256 });
backend.dispose();

const result = {
  config: { model: model.source, backend: backendName, steps, dtype: 'f32', sampling: 'greedy' },
  rows: rows.map((r) => ({
    variant: r.name,
    batch: r.batch,
    context: r.context,
    ms_per_step: r.ms,
    tokens_per_s: (r.batch * 1000) / r.ms,
  })),
  cache_speedup_at_256: full256 / cache256,
  target_cache_speedup: 5,
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'generate.json'), `${JSON.stringify(result, null, 2)}\n`);
printTable(
  `Decoding, ${model.source}, ${backendName}, f32, greedy, median of ${steps} steps`,
  [
    {
      header: 'variant',
      legend: 'KV-cache decode step, or the plain forward graph over the whole context',
      cell: (r) => r.name,
    },
    { header: 'batch', legend: 'rows decoded together', cell: (r) => String(r.batch) },
    { header: 'context', legend: 'tokens already in each row', cell: (r) => String(r.context) },
    {
      header: 'ms/token step',
      legend: 'wall time of one next-token step (all rows), host argmax included',
      cell: (r) => num(r.ms, 2),
    },
    { header: 'tokens/s', legend: 'batch / step time', cell: (r) => num((r.batch * 1000) / r.ms, 1) },
  ],
  rows,
  [`cache speedup at 256 tokens of context: ${num(full256 / cache256, 1)}x (target >= 5x)`],
);
process.exit(0);
