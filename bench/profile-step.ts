// Where the WebGPU training step spends its time: each dispatch timed on its own with
// timestamp queries, grouped by (op, kernel, shapes), top groups by total GPU time.
//   node bin/run-ts.js bench/profile-step.ts [--model <dir>] [--recipe f] [--batch N] [--seq N]
//     [--reps N] [--top N] [--by-op]
// Same default config as bench/train.ts (tiny-llama, lora-tiny.json, batch 4, seq 64).
// Per-dispatch passes add a little time of their own; the sum is printed beside the
// whole-step GPU time of ordinary runs (one pass) and their wall time per step.
import { parseArgs } from 'node:util';
import { WebGpuBackend } from '../src/backends/webgpu/index.ts';
import { formatShape } from '../src/ir/shape.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { prepareRun } from '../src/train/setup.ts';
import { STEP_BENCH_OPTIONS, stepFeeds } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    ...STEP_BENCH_OPTIONS,
    reps: { type: 'string', default: '3' },
    top: { type: 'string', default: '25' },
    'by-op': { type: 'boolean', default: false },
  },
});
const batch = Number(a.batch);
const seq = Number(a.seq);
const reps = Number(a.reps);
const run = prepareRun(loadModel(a.model!), loadRecipe(a.recipe!), { batch, seq }, { seed: 0 });
const feeds = stepFeeds(batch, seq);

const backend = new WebGpuBackend({
  timestamps: true,
  dawnFlags: ['disable-dawn-features=timestamp_quantization'],
});
const gpu = await backend.ready();
if (!gpu.timestamps) throw new Error(`adapter ${gpu.adapterInfo} offers no timestamp-query; cannot profile`);
const exe = await backend.compile(run.step, run.weights);
await exe.runTimed({ feeds: feeds(0), outputs: ['loss'] }); // warm-up

// Whole-step timing (one compute pass), as bench/train.ts runs it.
let wholeGpu = 0;
let wholeWall = 0;
for (let r = 1; r <= reps; r++) {
  const t = await exe.runTimed({ feeds: feeds(r), outputs: ['loss'] });
  wholeGpu += (t.gpuMs ?? 0) / reps;
  wholeWall += t.wallMs / reps;
}

// Per-dispatch timing: the median of `reps` runs for each dispatch.
const samples: number[][] = exe.dispatches.map(() => []);
for (let r = 1; r <= reps; r++) {
  const t = await exe.runTimed({ feeds: feeds(r), outputs: ['loss'] }, { perDispatch: true });
  t.dispatchMs?.forEach((ms, k) => {
    samples[k].push(ms);
  });
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0;

/** The kernel key without the fields the row already shows. */
function kernelOf(key: string): string {
  const { program, writes: _ } = JSON.parse(key) as { program: Record<string, unknown>; writes: unknown };
  const { op: _op, dtypes: _d, ...rest } = program;
  return JSON.stringify(rest).replace(/"/g, '');
}

interface Group {
  op: string;
  kernel: string;
  shape: string;
  count: number;
  ms: number;
}
const groups = new Map<string, Group>();
exe.dispatches.forEach((d, k) => {
  const n = d.node;
  const shape = a['by-op']
    ? ''
    : `${n.inputs.map((i) => formatShape(run.step.node(i).type.shape)).join(' ')} -> ${formatShape(n.type.shape)}`;
  const kernel = a['by-op'] ? '' : kernelOf(d.key);
  const id = `${n.op}|${kernel}|${shape}`;
  const g = groups.get(id) ?? { op: n.op, kernel, shape, count: 0, ms: 0 };
  g.count++;
  g.ms += median(samples[k]);
  groups.set(id, g);
});
const sorted = [...groups.values()].sort((x, y) => y.ms - x.ms);
const total = sorted.reduce((s, g) => s + g.ms, 0);

console.log(
  `training step on ${gpu.adapterInfo}: ${run.step.nodes.length} nodes, ${exe.dispatches.length} dispatches, batch ${batch} x seq ${seq}`,
);
console.log(
  `whole step (one pass): GPU ${wholeGpu.toFixed(1)} ms, wall ${wholeWall.toFixed(1)} ms; per-dispatch sum ${total.toFixed(1)} ms (median of ${reps})`,
);
printTable(
  `top ${Number(a.top)} dispatch groups by GPU time`,
  [
    {
      header: 'GPU ms',
      legend: "sum over the group of each dispatch's median time (timestamp queries)",
      cell: (g) => num(g.ms),
    },
    { header: '%', legend: 'share of the per-dispatch sum', cell: (g) => num((100 * g.ms) / total, 1) },
    { header: 'count', legend: 'dispatches in the group', cell: (g) => String(g.count) },
    { header: 'op', legend: 'IR op', cell: (g) => g.op, align: 'left' },
    {
      header: 'kernel',
      legend: 'kernel variant (its key without op and dtypes)',
      cell: (g) => g.kernel,
      align: 'left',
    },
    { header: 'shapes', legend: 'input shapes -> output shape', cell: (g) => g.shape, align: 'left' },
  ],
  sorted.slice(0, Number(a.top)),
);
const byOp = new Map<string, { ms: number; count: number }>();
for (const g of sorted) {
  const o = byOp.get(g.op) ?? { ms: 0, count: 0 };
  o.ms += g.ms;
  o.count += g.count;
  byOp.set(g.op, o);
}
console.log(
  `by op: ${[...byOp]
    .sort((x, y) => y[1].ms - x[1].ms)
    .map(([op, o]) => `${op} ${o.ms.toFixed(1)} ms/${o.count}`)
    .join(', ')}`,
);
backend.dispose();
process.exit(0);
