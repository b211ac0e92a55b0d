// Matmul kernels for software adapters side by side on whole training steps (issue 21):
//   node bin/run-ts.js bench/software-matmul.ts [--shape tiny|small] [--rounds N]
// The side-by-side bench's shapes and recipe (LoRA r=16 on q/k/v/o, AdamW, f32, random
// weights: preset 'tiny' batch 2 x 16, preset 'bench-small' batch 4 x 128), compiled once
// per software matmul family on the same adapter: 'texture' (the default: large products
// through scratch textures, the rest direct), 'direct' (4x4) and 'register' (8x4 tiles);
// steps are timed in interleaved rounds and the median per family reported, with the load
// average, so the ratios hold on a busy machine. Writes bench/results/software-matmul.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type SoftwareMatmul, WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { loadRecipe } from '../src/methods/index.ts';
import { loadModel } from '../src/models/llama/index.ts';
import { prepareRun } from '../src/train/setup.ts';
import { stepFeeds } from './step-feeds.ts';
import { num, printTable } from './table.ts';

const RECIPE = 'bench/baseline/lora-r16-qkvo.json';
const SHAPES = {
  tiny: { preset: 'tiny', batch: 2, seq: 16, steps: 10 },
  small: { preset: 'bench-small', batch: 4, seq: 128, steps: 1 },
} as const;
const KERNELS: readonly SoftwareMatmul[] = ['texture', 'direct', 'register'];

const { values: a } = parseArgs({
  options: { shape: { type: 'string' }, rounds: { type: 'string', default: '3' } },
});
const names = a.shape ? [a.shape] : Object.keys(SHAPES);
const rounds = Number(a.rounds);
const load0 = loadavg()[0];
const results = [];
for (const name of names) {
  const s = SHAPES[name as keyof typeof SHAPES];
  if (!s) {
    console.error(`--shape '${name}': expected one of ${Object.keys(SHAPES).join(', ')}`);
    process.exit(2);
  }
  const run = prepareRun(loadModel(s.preset, { seed: 0 }), loadRecipe(RECIPE), s, { seed: 0 });
  const feeds = stepFeeds(s.batch, s.seq);
  const compiled = [];
  for (const kernel of KERNELS) {
    const backend = new WebGpuBackend({ softwareMatmul: kernel });
    if (!(await backend.ready()).software) {
      console.log(`not a software adapter: the software matmul kernels are not used here`);
      process.exit(0);
    }
    const exe = (await backend.compile(run.step, run.weights)) as WebGpuExecutable;
    await exe.run({ feeds: feeds(0), outputs: ['loss'] }); // pipeline compilation
    compiled.push({ kernel, backend, exe, times: [] as number[] });
  }
  for (let r = 0; r < rounds; r++)
    for (const c of compiled) {
      const t0 = performance.now();
      for (let k = 1; k <= s.steps; k++) await c.exe.run({ feeds: feeds(k), outputs: ['loss'] });
      c.times.push((performance.now() - t0) / s.steps);
    }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  for (const c of compiled) {
    const ms = median(c.times);
    results.push({
      shape: name,
      ...s,
      kernel: c.kernel,
      ms_per_step: ms,
      tokens_per_s: (s.batch * s.seq * 1000) / ms,
    });
    c.exe.dispose();
    c.backend.dispose();
  }
}
const load = [load0, loadavg()[0]];
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(
  join('bench', 'results', 'software-matmul.json'),
  `${JSON.stringify({ recipe: RECIPE, rounds, load_1min_start_end: load, results }, null, 2)}\n`,
);
printTable(
  `training step on a software adapter by matmul kernel, median of ${rounds} interleaved rounds (1-min load ${num(load[0], 1)} -> ${num(load[1], 1)})`,
  [
    {
      header: 'shape',
      legend: 'preset, batch x seq',
      cell: (r) => `${r.shape}: ${r.preset} ${r.batch}x${r.seq}`,
    },
    {
      header: 'matmul kernel',
      legend:
        'texture = large products through scratch textures (the default), direct = 4x4, register = 8x4 register tiles',
      cell: (r) => r.kernel,
    },
    { header: 'ms/step', legend: 'wall time of one step', cell: (r) => num(r.ms_per_step, 1) },
    { header: 'tokens/s', legend: 'batch * seq / ms per step', cell: (r) => num(r.tokens_per_s, 0) },
  ],
  results,
);
process.exit(0);
