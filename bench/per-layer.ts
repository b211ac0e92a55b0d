// Per-layer updates (`"optimizer": {"per_layer": true}`, GaLore's layer-wise optimizers)
// against the default step: device bytes of the compiled WebGPU training step, the pool
// (activations, gradients, new values) and everything the executable holds, in one run:
//   node bin/run-ts.js bench/per-layer.ts
// Stated config: the bundled tiny-llama with examples/recipes/galore-tiny.json (full-rank
// q,k,v,o,gate,up,down, GaLore rank 8) and lora-tiny.json, max_grad_norm off (per_layer
// refuses clipping), two shapes: batch 1 x seq 8 (weights dominate, where the gradients'
// share shows) and batch 4 x seq 64 (activations dominate). Nothing is run: the schedule's
// buffers are what compile allocates.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend } from '../src/backends/index.ts';
import type { WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { parseRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { prepareRun } from '../src/train/setup.ts';
import { num, printTable } from './table.ts';

const model = loadModel('examples/models/tiny-llama');
const be = await createBackend('webgpu');
const rows: Array<{ recipe: string; shape: string; pooled: [number, number]; device: [number, number] }> = [];
for (const file of ['galore-tiny.json', 'lora-tiny.json'])
  for (const [batch, seq] of [
    [1, 8],
    [4, 64],
  ]) {
    const j = JSON.parse(readFileSync(join('examples', 'recipes', file), 'utf8'));
    const mem = [false, true].map(async (perLayer) => {
      const recipe = parseRecipe({
        ...j,
        max_grad_norm: null,
        optimizer: { ...j.optimizer, per_layer: perLayer },
      });
      const run = prepareRun(model, recipe, { batch, seq }, { seed: 0 });
      const exe = (await be.compile(run.step, run.weights, { inPlaceAssigns: perLayer })) as WebGpuExecutable;
      const m = exe.memory;
      exe.dispose();
      return m;
    });
    const [a, b] = [await mem[0], await mem[1]];
    rows.push({
      recipe: file,
      shape: `${batch}x${seq}`,
      pooled: [a.pooledBytes, b.pooledBytes],
      device: [a.deviceBytes, b.deviceBytes],
    });
  }
be.dispose();
const kib = (x: number) => num(x / 1024, 1);
type Row = (typeof rows)[number];
printTable<Row>(
  'per-layer updates vs the default step (WebGPU, compiled training step of the bundled model)',
  [
    { header: 'recipe', legend: 'examples/recipes/ file, max_grad_norm off', cell: (r) => r.recipe },
    { header: 'batch x seq', legend: 'step shape', cell: (r) => r.shape },
    { header: 'pool KiB', legend: 'pooled buffers, default step', cell: (r) => kib(r.pooled[0]) },
    { header: 'per-layer pool KiB', legend: 'pooled buffers, per_layer', cell: (r) => kib(r.pooled[1]) },
    { header: 'device KiB', legend: 'all device buffers, default step', cell: (r) => kib(r.device[0]) },
    {
      header: 'per-layer device KiB',
      legend: 'all device buffers, per_layer',
      cell: (r) => kib(r.device[1]),
    },
    {
      header: 'saving',
      legend: '1 - per-layer device / default device',
      cell: (r) => `${num(100 * (1 - r.device[1] / r.device[0]), 1)}%`,
    },
  ],
  rows,
);
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'per-layer.json'), `${JSON.stringify({ rows }, null, 2)}\n`);
