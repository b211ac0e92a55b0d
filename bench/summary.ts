// Issue 21's one table: the figures `npm run bench` gathers across its benchmarks, each
// beside its target, from bench/results/*.json (written by the benches that ran; a figure
// whose bench has not run says which to run). Run last by bench/all.ts, or alone:
//   node bin/run-ts.js bench/summary.ts
// Writes bench/results/summary.json.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SOFTWARE_MATMUL } from '../src/backends/webgpu/kernels/matmul.ts';
import { num, printTable } from './table.ts';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');

// biome-ignore lint/suspicious/noExplicitAny: bench JSON files, read by field below
type Json = any;
function read(name: string): Json | undefined {
  const f = join(dir, `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}

interface Row {
  readonly metric: string;
  readonly value?: number;
  readonly digits: number;
  readonly target: string;
  readonly met?: boolean;
  /** The bench the figure comes from (`npm run bench -- --only <bench>`). */
  readonly bench: string;
  readonly date?: string;
}

const rows: Row[] = [];
const add = (r: Row) => rows.push(r);

const kernels = read('kernels');
// Software adapters time each matmul on two kernel families ('... [texture]'): the default one counts.
const mm = kernels?.rows.find(
  (r: Json) =>
    r.name === 'matmul 512x512x512' || r.name === `matmul 512x512x512 [${DEFAULT_SOFTWARE_MATMUL}]`,
);
add({
  metric: `f32 matmul 512^3, GFLOP/s (${kernels?.adapter ?? 'webgpu'})`,
  value: mm?.gpuRate,
  digits: 2,
  target: '>= 12 on lavapipe',
  met: mm && /llvmpipe|lavapipe/.test(kernels.adapter) ? mm.gpuRate >= 12 : undefined,
  bench: 'kernels',
  date: kernels?.date,
});

const q4 = read('quant4');
const gemv = q4?.rows.find(
  (r: Json) => r.case.startsWith('fused linear_4bit M=1 ') && !r.case.includes('+dq'),
);
add({
  metric: '4-bit GEMV (fused linear_4bit, M=1), GB/s of ideal bytes',
  value: gemv?.idealGbps,
  digits: 2,
  target: 'bytes moved <= 1.2x ideal',
  met: gemv ? gemv.ratio <= 1.2 : undefined,
  bench: 'quant4',
});

const fusion = read('fusion');
add({
  metric: 'fused / unfused training step speed-up (bundled model), x',
  value: fusion?.speedup,
  digits: 2,
  target: '>= 1.5',
  met: fusion ? fusion.speedup >= 1.5 : undefined,
  bench: 'fusion',
  date: fusion?.date,
});
add({
  metric: 'dispatches per fused step (bundled model)',
  value: fusion?.fused?.dispatches,
  digits: 0,
  target: '<= 1/3 of the unfused step (one kernel per node) in the same run',
  met: fusion ? fusion.fused.dispatches <= fusion.unfused.dispatches / 3 : undefined,
  bench: 'fusion',
  date: fusion?.date,
});
add({
  metric: 'modelled bytes per fused step / unfused',
  value: fusion ? fusion.fused.modelled_bytes / fusion.unfused.modelled_bytes : undefined,
  digits: 3,
  target: '(lower is better)',
  bench: 'fusion',
  date: fusion?.date,
});

const sbs = read('side-by-side');
for (const name of ['tiny', 'small']) {
  const s = sbs?.shapes?.find((x: Json) => x.name === name);
  add({
    metric: `${name} shape: peftc webgpu / PyTorch + PEFT tokens/s, x`,
    value: s?.ratio_over_pytorch?.peftc_webgpu,
    digits: 3,
    target: name === 'tiny' ? '>= 1' : 'reported (~0.06 is what lavapipe allows)',
    met: s && name === 'tiny' ? s.ratio_over_pytorch.peftc_webgpu >= 1 : undefined,
    bench: 'side-by-side',
    date: sbs?.date,
  });
  if (name === 'small') {
    // Both from this machine's last runs of their benches: the step's rate over the matmul's.
    const rate = s?.webgpu_product_gflop_per_s;
    const share = typeof rate === 'number' && mm ? rate / mm.gpuRate : undefined;
    add({
      metric: 'small shape: step GFLOP/s (its matmuls and linears) / the 512^3 matmul GFLOP/s',
      value: share,
      digits: 3,
      target: '>= 0.8',
      met: share === undefined ? undefined : share >= 0.8,
      bench: 'side-by-side + kernels',
      date: sbs?.date,
    });
  }
  add({
    metric: `${name} shape: the same over PyTorch + PEFT on 1 thread, x`,
    value: s?.ratio_over_pytorch_1_thread?.peftc_webgpu ?? undefined,
    digits: 3,
    target: '(reported)',
    bench: 'side-by-side',
    date: sbs?.date,
  });
}

const compile = read('compile');
const c7 = compile?.rows.find((r: Json) => r.model === 'llama-2-7b');
add({
  metric: 'llama-2-7b QLoRA step (b1 x s512, checkpointing): compile + plan, ms',
  value: c7?.compile_ms,
  digits: 0,
  target: '<= 2000',
  met: c7 ? c7.compile_ms <= 2000 : undefined,
  bench: 'compile',
  date: compile?.date,
});
add({
  metric: 'llama-2-7b QLoRA step: planned device memory, GiB',
  value: c7 ? c7.peak_bytes / 2 ** 30 : undefined,
  digits: 3,
  target: '<= 5',
  met: c7 ? c7.peak_bytes / 2 ** 30 <= 5 : undefined,
  bench: 'compile',
  date: compile?.date,
});

writeFileSync(
  join(dir, 'summary.json'),
  `${JSON.stringify({ date: new Date().toISOString(), rows }, null, 2)}\n`,
);
printTable<Row>(
  'issue 21 summary (bench/results/summary.json)',
  [
    { header: 'metric', legend: 'what is measured, and its unit', cell: (r) => r.metric },
    {
      header: 'value',
      legend: 'the figure from the bench named in the last column',
      cell: (r) => num(r.value, r.digits),
    },
    { header: 'target', legend: "issue 21's target", cell: (r) => r.target, align: 'left' },
    {
      header: 'met',
      legend: 'yes / no; - where the bench has not run here (run it) or the target is not a number',
      cell: (r) => (r.met === undefined ? '-' : r.met ? 'yes' : 'no'),
    },
    {
      header: 'bench',
      legend: 'the bench that produced it: npm run bench -- --only <bench>',
      cell: (r) => r.bench,
      align: 'left',
    },
  ],
  rows,
);
