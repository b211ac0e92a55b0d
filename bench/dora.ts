// DoRA's cost over plain LoRA, in one run, on the same targets, on WebGPU (lavapipe here):
//   node bin/run-ts.js bench/dora.ts [--model <dir|preset>] [--batch N] [--seq N] [--rounds N]
// Stated config (default): the bundled tiny-llama, LoRA r=8 alpha 16 on all 7 linears of
// both layers (examples/recipes/lora-tiny.json), AdamW, batch 4, seq 64, f32; variants:
// plain LoRA, DoRA with the factored row norm (peftc's default), DoRA with PEFT's dense
// form (W + s B A materialised every step). Steps are timed in interleaved rounds (each
// round runs every variant), and the median per variant is reported, so machine load
// hits all variants alike. Also: device bytes of each step, the largest [out, in]
// intermediate a step holds (the dense W + s B A shows there), and QLoRA + DoRA + LoRA+
// memory by kind for the bundled model (real buffers) and for LLaMA-2-7B shapes (from
// the compiled graph, nothing allocated).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { byteSize } from '../src/ir/dtype.ts';
import type { Graph } from '../src/ir/graph.ts';
import { numel } from '../src/ir/shape.ts';
import { loadRecipe, parseRecipe, type Recipe, recipePipeline } from '../src/methods/index.ts';
import { buildLlama, loadModel, PRESETS } from '../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../src/passes/index.ts';
import { peakLiveBytes } from '../src/passes/liveness.ts';
import { prepareRun, trainSettings } from '../src/train/setup.ts';
import { STEP_BENCH_OPTIONS, stepFeeds } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    ...STEP_BENCH_OPTIONS,
    rounds: { type: 'string', default: '7' },
    steps: { type: 'string', default: '3' },
  },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const rounds = Number(a.rounds);
const stepsPerRound = Number(a.steps);
const model = loadModel(a.model!);
const base = loadRecipe(a.recipe!);
const json = (r: Recipe) =>
  JSON.parse(
    JSON.stringify({ ...r, methods: r.methods.map((m) => ({ method: m.method, ...(m.options as object) })) }),
  );

function variant(extra: Record<string, unknown>): Recipe {
  const j = json(base);
  j.methods = j.methods.map((m: Record<string, unknown>) => (m.method === 'lora' ? { ...m, ...extra } : m));
  return parseRecipe(j);
}

const variants = [
  { name: 'lora', recipe: variant({}) },
  { name: 'dora (factored norm)', recipe: variant({ use_dora: true, dora_norm: 'factored' }) },
  { name: 'dora (dense, as PEFT)', recipe: variant({ use_dora: true, dora_norm: 'dense' }) },
];

function bytesByRole(g: Graph): Record<string, number> {
  const out: Record<string, number> = { frozen: 0, trainable: 0, state: 0 };
  for (const p of g.params()) out[String(p.attrs.role)] += byteSize(p.type.dtype, numel(p.type.shape));
  return out;
}

/** The largest intermediate (not a param) whose shape is a 2-D [out, in] of some linear weight. */
function largestWeightShaped(g: Graph): number {
  const weightShapes = new Set(
    g
      .params()
      .filter((p) => p.attrs.role === 'frozen' && p.type.shape.length === 2)
      .map((p) => p.type.shape.join('x')),
  );
  let best = 0;
  for (const n of g.nodes) {
    if (n.op === 'param' || n.type.shape.length !== 2 || !weightShapes.has(n.type.shape.join('x'))) continue;
    // A dense W + s B A is built inside the magnitude's scope.
    if (n.scope.includes('lora_magnitude_vector'))
      best = Math.max(best, byteSize(n.type.dtype, numel(n.type.shape)));
  }
  return best;
}

const feeds = stepFeeds(batch, seq);
const gpu = new WebGpuBackend();
await gpu.ready();
const compiled: Array<{ name: string; exe: WebGpuExecutable; graph: Graph; times: number[] }> = [];
for (const v of variants) {
  const run = prepareRun(model, v.recipe, { batch, seq }, { seed: 0 });
  const exe = (await gpu.compile(run.step, run.weights)) as WebGpuExecutable;
  await exe.run({ feeds: feeds(0), outputs: ['loss'] }); // pipeline compilation
  compiled.push({ name: v.name, exe, graph: run.step, times: [] });
}
for (let r = 0; r < rounds; r++) {
  for (const c of compiled) {
    const t0 = performance.now();
    for (let k = 1; k <= stepsPerRound; k++) await c.exe.run({ feeds: feeds(k), outputs: ['loss'] });
    c.times.push((performance.now() - t0) / stepsPerRound);
  }
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const loraMs = median(compiled[0].times);
const rows = compiled.map((c) => ({
  name: c.name,
  ms: median(c.times),
  ratio: median(c.times) / loraMs,
  device: c.exe.memory.deviceBytes,
  pooled: c.exe.stats.pooledBytes,
  dense: largestWeightShaped(c.graph),
}));

// QLoRA + DoRA + LoRA+ memory by kind: the bundled model (real buffers) ...
const composedRecipe = loadRecipe('examples/recipes/qlora-dora-loraplus.json');
const composed = prepareRun(model, composedRecipe, { batch, seq }, { seed: 0 });
const composedExe = (await gpu.compile(composed.step, composed.weights)) as WebGpuExecutable;
const bundledKinds = {
  frozen: 0,
  trainable: 0,
  state: 0,
  ...bytesByRole(composed.step),
  activations_pooled: composedExe.stats.pooledBytes,
};
gpu.dispose();

// ... and LLaMA-2-7B shapes: the same passes on the graph alone (no weights: frozen bytes are
// the 4-bit storage the qlora pass declares), activations as the peak of live intermediates.
const big = { batch: 1, seq: 512 };
const g7 = buildLlama(PRESETS['llama-2-7b'], big, { loss: true, logits: false });
const m7 = runPipeline(g7, recipePipeline(composedRecipe), { log: () => {} }).graph;
const s7 = runPipeline(m7, phasePasses('train', { train: trainSettings(composedRecipe) }), {
  log: () => {},
}).graph;
const llama7b = {
  frozen: 0,
  trainable: 0,
  state: 0,
  ...bytesByRole(s7),
  activations_peak_live: peakLiveBytes(s7),
};

const result = {
  config: {
    model: model.source,
    recipe: a.recipe,
    batch,
    seq,
    rounds,
    steps_per_round: stepsPerRound,
    dtype: 'f32',
  },
  step: rows.map((r) => ({
    variant: r.name,
    ms_per_step_median: r.ms,
    ratio_over_lora: r.ratio,
    device_bytes: r.device,
    activations_pooled_bytes: r.pooled,
    largest_dense_weight_intermediate_bytes: r.dense,
  })),
  qlora_dora_loraplus_bytes: { bundled: bundledKinds, 'llama-2-7b (batch 1 x seq 512)': llama7b },
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'dora.json'), `${JSON.stringify(result, null, 2)}\n`);
const kib = (x: number) => num(x / 1024, 1);
printTable(
  `DoRA vs LoRA training step on webgpu, ${model.source}, same targets (${a.recipe}), batch ${batch} x seq ${seq}, median of ${rounds} interleaved rounds x ${stepsPerRound} steps`,
  [
    {
      header: 'variant',
      legend: 'LoRA; DoRA with the factored or the dense (PEFT) row norm',
      cell: (r) => r.name,
    },
    { header: 'ms/step', legend: 'median wall time of one step', cell: (r) => num(r.ms, 1) },
    {
      header: 'x LoRA',
      legend: 'ms/step over plain LoRA (target for DoRA: <= 1.15)',
      cell: (r) => num(r.ratio, 3),
    },
    { header: 'device KiB', legend: 'every device buffer of the step', cell: (r) => kib(r.device) },
    { header: 'pool KiB', legend: 'pooled intermediates', cell: (r) => kib(r.pooled) },
    {
      header: 'dense W+sBA KiB',
      legend: 'largest [out, in] intermediate DoRA builds (0: none)',
      cell: (r) => kib(r.dense),
    },
  ],
  rows,
);
const MiB = (x: number) => num(x / 2 ** 20, 1);
printTable(
  'QLoRA + DoRA + LoRA+ (examples/recipes/qlora-dora-loraplus.json): device bytes by kind',
  [
    {
      header: 'kind',
      legend: 'frozen (4-bit storage and the rest), adapters, optimizer state, activations',
      cell: (r) => r[0],
    },
    { header: `bundled, b${batch}xs${seq} MiB`, legend: 'real buffers', cell: (r) => MiB(r[1]) },
    {
      header: 'llama-2-7b, b1xs512 MiB',
      legend: 'from the compiled graph, nothing allocated',
      cell: (r) => MiB(r[2]),
    },
  ],
  [
    ['frozen weights', bundledKinds.frozen, llama7b.frozen],
    ['adapters (trainable)', bundledKinds.trainable, llama7b.trainable],
    ['optimizer state', bundledKinds.state, llama7b.state],
    ['activations', bundledKinds.activations_pooled, llama7b.activations_peak_live],
  ] as [string, number, number][],
  ['  (bundled activations: the pool the executor allocates; 7B: peak live intermediates in graph order)'],
);
process.exit(0);
