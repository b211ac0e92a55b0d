// Matmul epilogues (fuse-epilogue, issue 21) on the training step, fused vs unfused in one
// run: node bin/run-ts.js bench/epilogue.ts [--model <dir|preset>] [--recipe f] [--batch N] [--seq N] [--rounds N]
// Default: the bundled tiny-llama, examples/recipes/lora-tiny.json, batch 4 x seq 64, f32,
// WebGPU. The same compiled step with its matmul_map nodes split back (unfuseEpilogue) is
// the unfused side; steps are timed in interleaved rounds, median per side, with dispatch
// counts and the load average. Writes bench/results/epilogue.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { unfuseEpilogue } from '../src/passes/fuse/matmul-map.ts';
import { prepareRun } from '../src/train/setup.ts';
import { STEP_BENCH_OPTIONS, stepFeeds } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: { ...STEP_BENCH_OPTIONS, rounds: { type: 'string', default: '7' } },
});
const [batch, seq, rounds] = [Number(a.batch), Number(a.seq), Number(a.rounds)];
const run = prepareRun(loadModel(a.model!), loadRecipe(a.recipe!), { batch, seq }, { seed: 0 });
const feeds = stepFeeds(batch, seq);
const load0 = loadavg()[0];
const gpu = new WebGpuBackend();
await gpu.ready();
const sides = [];
for (const [name, graph] of [
  ['epilogues fused', run.step],
  ['unfused (matmul, then map)', unfuseEpilogue(run.step)],
] as const) {
  const exe = (await gpu.compile(graph, run.weights)) as WebGpuExecutable;
  await exe.run({ feeds: feeds(0), outputs: ['loss'] });
  sides.push({ name, exe, times: [] as number[], matmulMaps: graph.ofOp('matmul_map').length });
}
const stepsPerRound = 3;
for (let r = 0; r < rounds; r++)
  for (const s of sides) {
    const t0 = performance.now();
    for (let k = 1; k <= stepsPerRound; k++) await s.exe.run({ feeds: feeds(k), outputs: ['loss'] });
    s.times.push((performance.now() - t0) / stepsPerRound);
  }
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const rows = sides.map((s) => ({
  name: s.name,
  ms: median(s.times),
  dispatches: s.exe.stats.dispatches,
  matmulMaps: s.matmulMaps,
}));
gpu.dispose();
const load = [load0, loadavg()[0]];
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(
  join('bench', 'results', 'epilogue.json'),
  `${JSON.stringify({ config: { model: a.model, recipe: a.recipe, batch, seq, rounds, stepsPerRound }, load_1min_start_end: load, rows }, null, 2)}\n`,
);
printTable(
  `matmul epilogues on the webgpu training step, ${a.model}, ${a.recipe}, batch ${batch} x seq ${seq}, median of ${rounds} interleaved rounds (1-min load ${num(load[0], 1)} -> ${num(load[1], 1)})`,
  [
    {
      header: 'graph',
      legend: 'the compiled step, or the same with matmul_map split back',
      cell: (r) => r.name,
    },
    { header: 'ms/step', legend: 'wall time of one step', cell: (r) => num(r.ms, 1) },
    { header: 'dispatches', legend: 'kernel dispatches per step', cell: (r) => String(r.dispatches) },
    { header: 'matmul_map', legend: 'matmuls with a fused epilogue', cell: (r) => String(r.matmulMaps) },
  ],
  rows,
);
process.exit(0);
