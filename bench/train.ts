// Training-step throughput and memory, CPU interpreter vs WebGPU, in one run:
//   node bin/run-ts.js bench/train.ts [--model <dir|preset>] [--batch N] [--seq N] [--steps N] [--recipe f]
// Stated config (default): the bundled tiny-llama, recipe examples/recipes/lora-tiny.json
// (LoRA r=8 on all 7 linears of both layers, AdamW), batch 4, seq 64, f32.
// Memory: what a LoRA step keeps on the device, by kind, from the real buffers:
// frozen weights + adapters + optimizer state + activations (pooled intermediates).
// Frozen weights get no gradient buffer: autodiff emits no gradient node for them
// (test/passes/autodiff/autodiff.test.ts checks it), so none appears in the pool.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Executable } from '../src/backends/backend.ts';
import { CpuBackend } from '../src/backends/cpu/index.ts';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { byteSize } from '../src/ir/dtype.ts';
import type { Graph } from '../src/ir/graph.ts';
import { numel } from '../src/ir/shape.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { peakLiveBytes } from '../src/passes/liveness.ts';
import { prepareRun } from '../src/train/setup.ts';
import { STEP_BENCH_OPTIONS, timeSteps } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    ...STEP_BENCH_OPTIONS,
    steps: { type: 'string', default: '8' },
  },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const steps = Number(a.steps);
const model = loadModel(a.model!);
const recipe = loadRecipe(a.recipe!);
const run = prepareRun(model, recipe, { batch, seq }, { seed: 0 });

function bytesOf(g: Graph, role: string, filter: (name: string) => boolean = () => true): number {
  return g
    .params()
    .filter((p) => p.attrs.role === role && filter(String(p.attrs.name)))
    .reduce((s, p) => s + byteSize(p.type.dtype, numel(p.type.shape)), 0);
}

const time = (exe: Executable) => timeSteps(exe, batch, seq, steps);

const frozen = bytesOf(run.step, 'frozen');
const adapters = bytesOf(run.step, 'trainable');
const optimizerState = bytesOf(run.step, 'state');
const cpu = await time(await new CpuBackend().compile(run.step, run.weights));
const gpuBackend = new WebGpuBackend();
await gpuBackend.ready();
const gpuExe = (await gpuBackend.compile(run.step, run.weights)) as WebGpuExecutable;
const gpu = await time(gpuExe);
const activations = gpuExe.stats.pooledBytes;
// Every device buffer the executable holds (params, states, pool, inputs, consts, uniforms).
const allDeviceBuffers = gpuExe.memory.deviceBytes;
gpuBackend.dispose();

const result = {
  config: { model: model.source, recipe: a.recipe, batch, seq, steps, dtype: 'f32' },
  tokens_per_s: {
    cpu: cpu.tokensPerS,
    webgpu: gpu.tokensPerS,
    ratio_webgpu_over_cpu: gpu.tokensPerS / cpu.tokensPerS,
  },
  ms_per_step: { cpu: cpu.msPerStep, webgpu: gpu.msPerStep },
  device_memory_bytes: {
    frozen_weights: frozen,
    adapters,
    optimizer_state: optimizerState,
    activations_pooled: activations,
    total: frozen + adapters + optimizerState + activations,
    all_device_buffers: allDeviceBuffers,
    peak_live_intermediates_in_graph_order: peakLiveBytes(run.step),
  },
};
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', 'train.json'), `${JSON.stringify(result, null, 2)}\n`);
const kib = (x: number) => num(x / 1024, 1);
printTable(
  `training step, ${result.config.model}, LoRA (${a.recipe}), batch ${batch} x seq ${seq}, f32, mean of ${steps} steps`,
  [
    {
      header: 'backend',
      legend: 'cpu = the reference interpreter, webgpu = the current adapter',
      cell: (r) => r.name,
    },
    { header: 'tokens/s', legend: 'batch * seq / wall time of one step', cell: (r) => num(r.tokensPerS, 0) },
    {
      header: 'ms/step',
      legend: 'wall time of one step (forward, backward, optimizer)',
      cell: (r) => num(r.msPerStep, 1),
    },
  ],
  [
    { name: 'cpu', ...cpu },
    { name: 'webgpu', ...gpu },
  ],
);
printTable(
  'device memory of the webgpu step',
  [
    { header: 'kind', legend: 'what the buffers hold', cell: (r) => r[0] },
    { header: 'KiB', legend: 'bytes / 1024, from the real buffers', cell: (r) => kib(r[1]) },
  ],
  [
    ['frozen weights', frozen],
    ['adapters', adapters],
    ['optimizer state', optimizerState],
    ['activations (pooled)', activations],
    ['total', result.device_memory_bytes.total],
    ['all device buffers (measured)', allDeviceBuffers],
  ] as [string, number][],
  ['  (all device buffers also counts inputs, constants and uniforms)'],
);
process.exit(0);
