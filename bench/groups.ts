// The training step as compiled with and without group kernels (kernels over several
// nodes, backends/webgpu/kernel-groups.ts), in one process, interleaved rounds: dispatches
// and ms per step, min and median over the rounds (issue 21). Also the figure for an A/B
// of two commits: run it in a worktree of each, alternating, and compare the `groups` rows.
//   node bin/run-ts.js bench/groups.ts [--model <dir|preset>] [--recipe f] [--batch N] [--seq N] [--rounds N]
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { prepareRun } from '../src/train/setup.ts';
import { interleavedColumns, interleavedSteps, STEP_BENCH_OPTIONS } from './step-feeds.ts';
import { printTable } from './table.ts';

const { values: a } = parseArgs({
  options: { ...STEP_BENCH_OPTIONS, rounds: { type: 'string', default: '8' } },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const run = prepareRun(loadModel(a.model!), loadRecipe(a.recipe!), { batch, seq }, { seed: 0 });
const backend = new WebGpuBackend();
await backend.ready();
const variants = [
  { name: 'groups', exe: (await backend.compile(run.step, run.weights)) as WebGpuExecutable },
  {
    name: 'no groups',
    exe: (await backend.compile(run.step, run.weights, { groups: false })) as WebGpuExecutable,
  },
];
const rows = await interleavedSteps(variants, Number(a.rounds), batch, seq, 6);
backend.dispose();
printTable(
  `the training step with and without group kernels (${a.model}, ${a.recipe}, batch ${batch} x seq ${seq}, webgpu)`,
  [
    {
      header: 'step',
      legend: 'groups: as the trainer compiles it; no groups: CompileOptions.groups false',
      cell: (r) => r.name,
    },
    ...interleavedColumns(Number(a.rounds), 6),
  ],
  rows,
);
