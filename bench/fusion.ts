// Fused vs unfused training step on the bundled model, in one run (issue 21): the trainer's
// step graph as compiled (every fuse-* pass) against the same step compiled without the
// fuse-* passes, on WebGPU, alternating, with dispatches and modelled bytes per step
// (each dispatching node reads its inputs and writes its output once: the traffic fusion
// removes). Same losses are checked by test/passes/fuse; this measures.
//   node bin/run-ts.js bench/fusion.ts [--model <dir|preset>] [--recipe f] [--batch N] [--seq N] [--steps N]
// Writes bench/results/fusion.json and a table.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { byteSize } from '../src/ir/dtype.ts';
import type { Graph } from '../src/ir/graph.ts';
import { numel } from '../src/ir/shape.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { runPipeline } from '../src/passes/index.ts';
import { prepareRun, runPipelines } from '../src/train/setup.ts';
import { STEP_BENCH_OPTIONS, timeSteps } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: { ...STEP_BENCH_OPTIONS, steps: { type: 'string', default: '8' } },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const steps = Number(a.steps);
const run = prepareRun(loadModel(a.model!), loadRecipe(a.recipe!), { batch, seq }, { seed: 0 });
const unfusedPasses = runPipelines(run.recipe).train.filter((p) => !p.name.startsWith('fuse'));
const unfused = runPipeline(run.adapted, unfusedPasses, { log: () => {} }).graph;

/**
 * Bytes each kernel reads and writes once: its distinct inputs from outside it and its
 * values (a group kernel's members' values all counted, registers too: an upper bound).
 */
function modelledBytes(g: Graph, exe: WebGpuExecutable): number {
  const bytes = (id: number) => {
    const t = g.node(id).type;
    return byteSize(t.dtype, numel(t.shape));
  };
  let total = 0;
  for (const d of new Set(exe.dispatches.map((d) => d.members ?? [d.node]))) {
    const own = new Set(d.map((n) => n.id));
    const ins = new Set(d.flatMap((n) => n.inputs).filter((i) => !own.has(i)));
    total += [...own, ...ins].reduce((s, i) => s + bytes(i), 0);
  }
  return total;
}

const backend = new WebGpuBackend();
await backend.ready();
const variants = [
  { name: 'fused', graph: run.step },
  { name: 'unfused', graph: unfused },
];
const exes = await Promise.all(
  variants.map(async (v) => ({
    ...v,
    // The unfused step as the node-per-kernel schedule: no group kernels either.
    exe: (await backend.compile(v.graph, run.weights, { groups: v.name === 'fused' })) as WebGpuExecutable,
  })),
);
// Alternate so load on the machine hits both alike; best of three rounds each.
const ms = new Map<string, number>();
for (let round = 0; round < 3; round++)
  for (const v of exes) {
    const t = await timeSteps(v.exe, batch, seq, steps);
    ms.set(v.name, Math.min(ms.get(v.name) ?? Infinity, t.msPerStep));
  }
const rows = exes.map((v) => ({
  name: v.name,
  ms_per_step: ms.get(v.name)!,
  dispatches: v.exe.stats.dispatches,
  modelled_bytes: modelledBytes(v.graph, v.exe),
  device_bytes: v.exe.memory.deviceBytes,
}));
backend.dispose();
const [fused, plain] = rows;
const result = {
  date: new Date().toISOString(),
  config: { model: a.model, recipe: a.recipe, batch, seq, steps },
  fused,
  unfused: plain,
  speedup: plain.ms_per_step / fused.ms_per_step,
};
const file = join(dirname(fileURLToPath(import.meta.url)), 'results', 'fusion.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
printTable(
  `fused vs unfused training step (${a.model}, ${a.recipe}, batch ${batch} x seq ${seq}, webgpu)`,
  [
    {
      header: 'step',
      legend: 'fused: as the trainer compiles it; unfused: without the fuse-* passes or group kernels',
      cell: (r) => r.name,
    },
    {
      header: 'ms/step',
      legend: `best of 3 rounds of ${steps} steps, alternating`,
      cell: (r) => num(r.ms_per_step, 2),
    },
    { header: 'dispatches', legend: 'compute dispatches per step', cell: (r) => String(r.dispatches) },
    {
      header: 'modelled MB',
      legend: 'each kernel reads its inputs and writes its values once',
      cell: (r) => num(r.modelled_bytes / 1e6, 2),
    },
    {
      header: 'device MB',
      legend: 'every device buffer of the executable',
      cell: (r) => num(r.device_bytes / 1e6, 2),
    },
  ],
  rows,
  [`speed-up (unfused / fused ms): ${num(result.speedup, 2)}x`],
);
console.log(`wrote ${file}`);
