// Compile time and memory plan of full training steps, without weights (issue 21's
// "compile time of a 7B-shaped training graph"): `peftc plan`'s own code, in this process,
// the first call of each (what a user waits for after the process started).
//   node bin/run-ts.js bench/compile.ts
// Writes bench/results/compile.json and a table.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planStep } from '../src/cli/commands/plan.ts';
import { num, printTable } from './table.ts';

const CASES = [
  { model: 'examples/models/tiny-llama', recipe: 'examples/recipes/lora-tiny.json', batch: 4, seq: 64 },
  { model: 'llama-2-7b', recipe: 'examples/recipes/qlora-7b-plan.json', batch: 1, seq: 512 },
  { model: 'llama-2-13b', recipe: 'examples/recipes/qlora-7b-plan.json', batch: 1, seq: 512 },
  { model: 'llama-2-70b', recipe: 'examples/recipes/qlora-7b-plan.json', batch: 1, seq: 512 },
];

const rows = [];
for (const c of CASES) {
  const t0 = performance.now();
  const r = await planStep({ ...c, target: 'software' });
  rows.push({
    ...c,
    compile_ms: r.compile_ms,
    wall_ms: performance.now() - t0,
    peak_bytes: r.peak_bytes,
    dispatches: r.dispatches,
    kernels: r.kernels,
  });
}

const file = join(dirname(fileURLToPath(import.meta.url)), 'results', 'compile.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), rows }, null, 2)}\n`);
printTable(
  'training-step compile + plan (no weights, software-adapter kernels)',
  [
    { header: 'model', legend: 'preset or model dir', cell: (r) => r.model },
    {
      header: 'recipe',
      legend: 'recipe file',
      cell: (r) => r.recipe.replace('examples/recipes/', ''),
      align: 'left',
    },
    { header: 'batch x seq', legend: 'step shape', cell: (r) => `${r.batch} x ${r.seq}` },
    {
      header: 'compile ms',
      legend: 'model graph + methods + autodiff + optimizer + fusion + memory plan',
      cell: (r) => num(r.compile_ms, 0),
    },
    {
      header: 'peak GiB',
      legend: 'planned device bytes of the step (what the executor allocates)',
      cell: (r) => num(r.peak_bytes / 2 ** 30, 3),
    },
    { header: 'dispatches', legend: 'WebGPU dispatches per step', cell: (r) => String(r.dispatches) },
  ],
  rows,
);
console.log(`wrote ${file}`);
