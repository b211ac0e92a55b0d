// The training step with and without the operand-prologue passes (issue 21: fuse-dropout,
// fuse-operand-map), in one process, interleaved rounds: dispatches and ms per step, min
// and median over the rounds. "neither" is the step as main compiled it before them.
//   node bin/run-ts.js bench/dropout-fuse.ts [--model <dir|preset>] [--recipe f] [--batch N] [--seq N] [--rounds N]
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { runPipeline } from '../src/passes/index.ts';
import { prepareRun, runPipelines } from '../src/train/setup.ts';
import { interleavedColumns, interleavedSteps, STEP_BENCH_OPTIONS } from './step-feeds.ts';
import { printTable } from './table.ts';

const { values: a } = parseArgs({
  options: { ...STEP_BENCH_OPTIONS, rounds: { type: 'string', default: '9' } },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const run = prepareRun(loadModel(a.model!), loadRecipe(a.recipe!), { batch, seq }, { seed: 0 });
/** The trainer's step compiled without the named passes. */
const without = (names: readonly string[]) =>
  runPipeline(
    run.adapted,
    runPipelines(run.recipe).train.filter((p) => !names.includes(p.name)),
    { log: () => {} },
  ).graph;
const backend = new WebGpuBackend();
await backend.ready();
const variants = await Promise.all(
  [
    { name: 'both', graph: run.step },
    { name: 'no fuse-operand-map', graph: without(['fuse-operand-map']) },
    { name: 'neither', graph: without(['fuse-operand-map', 'fuse-dropout']) },
  ].map(async (v) => ({ ...v, exe: (await backend.compile(v.graph, run.weights)) as WebGpuExecutable })),
);
const rows = await interleavedSteps(variants, Number(a.rounds), batch, seq, 8);
backend.dispose();
printTable(
  `the training step with and without fuse-dropout / fuse-operand-map (${a.model}, ${a.recipe}, batch ${batch} x seq ${seq}, webgpu)`,
  [
    {
      header: 'step',
      legend: 'which of the two passes ran (the other fuse passes always)',
      cell: (r) => r.name,
    },
    ...interleavedColumns(Number(a.rounds), 8),
  ],
  rows,
);
