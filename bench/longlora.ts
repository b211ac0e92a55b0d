// LongLoRA at 4x context: S2-Attn against full attention at the same length, in one run:
//   node bin/run-ts.js bench/longlora.ts [--model <dir|preset>] [--factor 4] [--steps 3]
// Stated config (default): the bundled tiny-llama (max_position_embeddings 512), one
// sequence of 4 x 512 = 2048 tokens, examples/recipes/longlora-tiny.json (LoRA r=8 on
// q/k/v/o, embeddings and norms trainable, group_size_ratio 1/4, no_wrap, activation
// checkpointing) against the same recipe with full attention (lora + the same
// modules_to_save: the same trainable params), on webgpu. Reports ms/step, tokens/s and
// device bytes (every buffer of the step; pooled intermediates).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { loadRecipe, parseRecipe, type Recipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { prepareRun } from '../src/train/setup.ts';
import { stepFeeds } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    factor: { type: 'string', default: '4' },
    steps: { type: 'string', default: '3' },
  },
});
const model = loadModel(a.model!);
const seq = Number(a.factor) * model.config.maxPositionEmbeddings;
const batch = 1;
const steps = Number(a.steps);
const s2 = loadRecipe('examples/recipes/longlora-tiny.json');
const {
  group_size_ratio: _r,
  variant: _v,
  trainable_params: _t,
  model_max_length: _m,
  ...loraKeys
} = s2.methods[0].options as Record<string, unknown>;
const full: Recipe = parseRecipe({
  methods: [{ method: 'lora', ...loraKeys }],
  optimizer: s2.optimizer,
  checkpointing: true,
  max_grad_norm: 1.0,
});
const feeds = stepFeeds(batch, seq);
const gpu = new WebGpuBackend();
await gpu.ready();
const rows = [];
for (const [name, recipe] of [
  ['S2-Attn (longlora, no_wrap)', s2],
  ['full attention (lora)', full],
] as const) {
  const run = prepareRun(model, recipe, { batch, seq }, { seed: 0 });
  const exe = (await gpu.compile(run.step, run.weights)) as WebGpuExecutable;
  await exe.run({ feeds: feeds(0), outputs: ['loss'] });
  const t0 = performance.now();
  for (let k = 1; k <= steps; k++) await exe.run({ feeds: feeds(k), outputs: ['loss'] });
  const ms = (performance.now() - t0) / steps;
  rows.push({
    name,
    ms,
    tokensPerS: (batch * seq * 1000) / ms,
    device: exe.memory.deviceBytes,
    pooled: exe.stats.pooledBytes,
  });
  exe.dispose();
}
gpu.dispose();
const result = {
  config: {
    model: model.source,
    seq,
    batch,
    steps,
    checkpointing: true,
    recipe: 'examples/recipes/longlora-tiny.json',
  },
  rows: rows.map((r) => ({
    variant: r.name,
    ms_per_step: r.ms,
    tokens_per_s: r.tokensPerS,
    device_bytes: r.device,
    pooled_bytes: r.pooled,
  })),
  speedup_s2_over_full: rows[1].ms / rows[0].ms,
  device_bytes_ratio_s2_over_full: rows[0].device / rows[1].device,
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'longlora.json'), `${JSON.stringify(result, null, 2)}\n`);
const MiB = (x: number) => num(x / 2 ** 20, 1);
printTable(
  `LongLoRA training step at ${a.factor}x context (${seq} tokens, batch ${batch}), ${model.source}, webgpu, activation checkpointing, mean of ${steps} steps`,
  [
    {
      header: 'attention',
      legend: 'S2-Attn (group 1/4, no_wrap) or full causal attention',
      cell: (r) => r.name,
    },
    { header: 'ms/step', legend: 'wall time of one step', cell: (r) => num(r.ms, 0) },
    { header: 'tokens/s', legend: 'seq / step time', cell: (r) => num(r.tokensPerS, 0) },
    { header: 'device MiB', legend: 'every device buffer of the step', cell: (r) => MiB(r.device) },
    { header: 'pool MiB', legend: 'pooled intermediates', cell: (r) => MiB(r.pooled) },
  ],
  rows,
);
process.exit(0);
