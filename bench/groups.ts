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
import { STEP_BENCH_OPTIONS, timeSteps } from './step-feeds.ts';
import { num, printTable } from './table.ts';

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
const ms = new Map<string, number[]>();
for (let r = 0; r < Number(a.rounds); r++)
  for (const v of variants) {
    const t = await timeSteps(v.exe, batch, seq, 6);
    ms.set(v.name, [...(ms.get(v.name) ?? []), t.msPerStep]);
  }
backend.dispose();
const rows = variants.map((v) => {
  const sorted = [...(ms.get(v.name) ?? [])].sort((x, y) => x - y);
  return {
    name: v.name,
    dispatches: v.exe.stats.dispatches,
    min: sorted[0],
    median: sorted[sorted.length >> 1],
  };
});
printTable(
  `the training step with and without group kernels (${a.model}, ${a.recipe}, batch ${batch} x seq ${seq}, webgpu)`,
  [
    {
      header: 'step',
      legend: 'groups: as the trainer compiles it; no groups: CompileOptions.groups false',
      cell: (r) => r.name,
    },
    { header: 'dispatches', legend: 'compute dispatches per step', cell: (r) => String(r.dispatches) },
    {
      header: 'min ms',
      legend: `fastest of ${a.rounds} interleaved rounds of 6 steps`,
      cell: (r) => num(r.min, 2),
    },
    { header: 'median ms', legend: 'median of those rounds', cell: (r) => num(r.median, 2) },
  ],
  rows,
);
