// npm run bench [-- --name <label>] [--quick]: f32 matmul GFLOP/s and bandwidth-bound
// kernels' GB/s on the current WebGPU adapter, side by side with the CPU interpreter.
// GPU time comes from timestamp queries where the adapter has them, else wall time
// around submit + onSubmittedWorkDone. Writes bench/results/<name>.json and a table.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { runGraph } from '../src/backends/cpu/index.ts';
import { WebGpuBackend } from '../src/backends/webgpu/index.ts';
import { DEFAULT_SOFTWARE_MATMUL } from '../src/backends/webgpu/kernels/matmul.ts';
import { GraphBuilder } from '../src/ir/builder.ts';
import type { Graph } from '../src/ir/graph.ts';
import { tensor } from '../src/ir/tensor.ts';
import { MapWeightStore } from '../src/ir/weights.ts';
import { Rng } from '../src/util/rng.ts';
import { num, printTable } from './table.ts';

interface Case {
  readonly name: string;
  readonly graph: Graph;
  readonly weights: MapWeightStore;
  /** Useful work per run: FLOPs for matmuls, bytes moved for bandwidth kernels. */
  readonly flops?: number;
  readonly bytes?: number;
  readonly reps: number;
  readonly cpuReps: number;
  /** Runs on the second backend (software adapters: the other matmul kernel family). */
  readonly alt?: boolean;
}

function weightsFor(g: Graph): MapWeightStore {
  const rng = new Rng(1);
  const w = new MapWeightStore();
  for (const p of g.params()) {
    const t = tensor('f32', p.type.shape);
    for (let i = 0; i < t.data.length; i++) t.data[i] = rng.uniform(-1, 1);
    w.set(String(p.attrs.name), t);
  }
  return w;
}

function matmulCase(m: number, k: number, n: number, reps: number, cpuReps: number): Case {
  const b = new GraphBuilder();
  const y = b.matmul(b.param('a', 'f32', [m, k]), b.param('b', 'f32', [k, n]));
  const graph = b.build({ y });
  return {
    name: `matmul ${m}x${k}x${n}`,
    graph,
    weights: weightsFor(graph),
    flops: 2 * m * n * k,
    reps,
    cpuReps,
  };
}

function linearCase(m: number, k: number, n: number, reps: number, cpuReps: number): Case {
  const b = new GraphBuilder();
  const y = b.linear(b.param('x', 'f32', [m, k]), b.param('w', 'f32', [n, k]));
  const graph = b.build({ y });
  return {
    name: `linear (GEMV) ${m}x${k}x${n}`,
    graph,
    weights: weightsFor(graph),
    flops: 2 * m * n * k,
    reps,
    cpuReps,
  };
}

function addCase(n: number, reps: number): Case {
  const b = new GraphBuilder();
  const y = b.add(b.param('a', 'f32', [n]), b.param('b', 'f32', [n]));
  const graph = b.build({ y });
  return { name: `add ${n}`, graph, weights: weightsFor(graph), bytes: 12 * n, reps, cpuReps: 3 };
}

function copyCase(n: number, reps: number): Case {
  const b = new GraphBuilder();
  const y = b.cast(b.param('a', 'f32', [n]), 'f32');
  const graph = b.build({ y });
  return { name: `copy ${n}`, graph, weights: weightsFor(graph), bytes: 8 * n, reps, cpuReps: 3 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const nameArg = args[args.indexOf('--name') + 1];

const backend = new WebGpuBackend({
  timestamps: true,
  dawnFlags: ['disable-dawn-features=timestamp_quantization'],
});
const gpu = await backend.ready();
// Software adapters (lavapipe): each matmul also on the other kernel family, right after
// it in the same run (issue 21: register tiles against the earlier 4x4 direct kernels).
const ALT_SOFTWARE_MATMUL = DEFAULT_SOFTWARE_MATMUL === 'direct' ? 'texture' : 'direct';
const alt = gpu.software
  ? new WebGpuBackend({
      timestamps: true,
      dawnFlags: ['disable-dawn-features=timestamp_quantization'],
      softwareMatmul: ALT_SOFTWARE_MATMUL,
    })
  : undefined;
await alt?.ready();
const withAlt = (c: Case): Case[] =>
  alt
    ? [
        { ...c, name: `${c.name} [${DEFAULT_SOFTWARE_MATMUL}]` },
        { ...c, name: `${c.name} [${ALT_SOFTWARE_MATMUL}]`, alt: true, cpuReps: 0 },
      ]
    : [c];
const cases: Case[] = [
  ...withAlt(matmulCase(128, 128, 128, 10, 3)),
  ...withAlt(matmulCase(512, 512, 512, quick ? 3 : 6, 1)),
  ...withAlt(matmulCase(257, 129, 65, 6, 2)),
  linearCase(1, 2048, 2048, 10, 2),
  linearCase(4, 2048, 2048, 10, 2),
  addCase(1 << 22, 10),
  copyCase(1 << 22, 10),
];
if (!/llvmpipe|lavapipe|swiftshader/i.test(gpu.adapterInfo) && !quick) {
  cases.push(matmulCase(2048, 2048, 2048, 10, 0), matmulCase(4096, 4096, 4096, 10, 0), addCase(1 << 26, 20));
}

interface Row {
  name: string;
  gpuMs: number;
  timer: 'timestamp' | 'wall';
  gpuRate: number;
  cpuMs?: number;
  cpuRate?: number;
  unit: string;
}

const rows: Row[] = [];
const bar = new cliProgress.SingleBar(
  { format: 'bench {bar} {value}/{total} {case}', clearOnComplete: true },
  cliProgress.Presets.shades_classic,
);
bar.start(cases.length, 0, { case: '' });
for (const c of cases) {
  bar.update({ case: c.name });
  const exe = await (c.alt && alt ? alt : backend).compile(c.graph, c.weights);
  await exe.runTimed({ feeds: {}, outputs: [] }); // warm-up: pipeline caches, first touch
  const gpuTimes: number[] = [];
  let timer: Row['timer'] = 'wall';
  for (let r = 0; r < c.reps; r++) {
    const t = await exe.runTimed({ feeds: {}, outputs: [] });
    if (t.gpuMs !== undefined && t.gpuMs > 0) timer = 'timestamp';
    gpuTimes.push(t.gpuMs !== undefined && t.gpuMs > 0 ? t.gpuMs : t.wallMs);
  }
  exe.dispose();
  const cpuTimes: number[] = [];
  for (let r = 0; r < c.cpuReps; r++) {
    const t0 = performance.now();
    runGraph(c.graph, {}, c.weights);
    cpuTimes.push(performance.now() - t0);
  }
  const work = c.flops ?? c.bytes ?? 0;
  const rate = (ms: number) => work / (ms * 1e-3) / 1e9;
  const gpuMs = median(gpuTimes);
  const cpuMs = cpuTimes.length ? median(cpuTimes) : undefined;
  rows.push({
    name: c.name,
    gpuMs,
    timer,
    gpuRate: rate(gpuMs),
    cpuMs,
    cpuRate: cpuMs === undefined ? undefined : rate(cpuMs),
    unit: c.flops ? 'GFLOP/s' : 'GB/s',
  });
  bar.increment();
}
bar.stop();
backend.dispose();
alt?.dispose();

const label =
  nameArg && !nameArg.startsWith('--') ? nameArg : gpu.adapterInfo.split(' ').slice(0, 2).join('-');
const slug = label
  .toLowerCase()
  .replace(/[^a-z0-9]+/g, '-')
  .replace(/^-|-$/g, '');
const out = join(dirname(fileURLToPath(import.meta.url)), 'results', `${slug}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify({ adapter: gpu.adapterInfo, date: new Date().toISOString(), node: process.version, load: loadavg(), rows }, null, 2)}\n`,
);

console.log(
  `adapter: ${gpu.adapterInfo}; 1/5/15-min load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ')}`,
);
const timerLegend =
  'how the GPU ms were taken: timestamp = GPU timestamp queries, wall = submit to onSubmittedWorkDone';
for (const unit of ['GFLOP/s', 'GB/s'] as const) {
  const work = unit === 'GFLOP/s' ? 'FLOPs (2*M*N*K)' : 'bytes read + written';
  printTable<Row>(
    unit === 'GFLOP/s' ? 'compute-bound kernels' : 'bandwidth-bound kernels',
    [
      {
        header: 'case',
        legend: 'the op and its shape (M x K x N for matmuls, elements otherwise)',
        cell: (r) => r.name,
      },
      { header: `webgpu ${unit}`, legend: `${work} / webgpu time`, cell: (r) => num(r.gpuRate) },
      { header: 'webgpu ms', legend: 'median time of one run on the adapter', cell: (r) => num(r.gpuMs, 3) },
      { header: 'timer', legend: timerLegend, cell: (r) => r.timer, align: 'left' },
      {
        header: `cpu ${unit}`,
        legend: `${work} / cpu time (the reference interpreter)`,
        cell: (r) => num(r.cpuRate, 3),
      },
      {
        header: 'cpu ms',
        legend: 'median wall time of one cpu run (- = not run at this size)',
        cell: (r) => num(r.cpuMs, 1),
      },
    ],
    rows.filter((r) => r.unit === unit),
  );
}
console.log(`wrote ${out}`);
process.exit(0);
