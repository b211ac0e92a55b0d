// `npm run bench`: every benchmark in turn, each in its own process (each owns a
// WebGPU device): kernels (matmul GFLOP/s, elementwise GB/s), 4-bit linears (bytes
// moved, GB/s), training steps (tokens/s, device memory), cpu vs webgpu side by side,
// the exported webgpu-ts package against `peftc logits` (bench/export-webgpu-ts.ts),
// and peftc beside PyTorch + PEFT (bench/side-by-side.ts; the baseline's venv comes from
// `bash bench/baseline/setup.sh`, and the run says so when it is not installed).
// Results: bench/results/*.json, then one summary table (bench/summary.ts). Pass
// `-- --only <name>` to run one.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const BENCHES: { name: string; file: string; args?: string[] }[] = [
  { name: 'kernels', file: 'bench/run.ts', args: ['--name', 'kernels'] },
  { name: 'software-matmul', file: 'bench/software-matmul.ts' },
  { name: 'epilogue', file: 'bench/epilogue.ts' },
  { name: 'quant4', file: 'bench/quant4.ts' },
  { name: 'train', file: 'bench/train.ts' },
  { name: 'dora', file: 'bench/dora.ts' },
  { name: 'longlora', file: 'bench/longlora.ts' },
  { name: 'galore', file: 'bench/galore.ts' },
  { name: 'per-layer', file: 'bench/per-layer.ts' },
  { name: 'multi-lora', file: 'bench/multi-lora.ts' },
  { name: 'side-by-side', file: 'bench/side-by-side.ts' },
  { name: 'fusion', file: 'bench/fusion.ts' },
  { name: 'compile', file: 'bench/compile.ts' },
  { name: 'generate', file: 'bench/generate.ts' },
  { name: 'serve', file: 'bench/serve.ts' },
  { name: 'export-webgpu-ts', file: 'bench/export-webgpu-ts.ts' },
];

const { values } = parseArgs({ options: { only: { type: 'string' } } });
const runner = join(import.meta.dirname, '..', 'bin', 'run-ts.js');
let failed = 0;
for (const b of BENCHES) {
  if (values.only && values.only !== b.name) continue;
  console.log(`\n== ${b.name} (${b.file})`);
  const r = spawnSync(process.execPath, [runner, b.file, ...(b.args ?? [])], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench ${b.name} failed with exit code ${r.status}`);
  }
}
// One table of issue 21's figures from whatever results exist (each says which bench made it).
spawnSync(process.execPath, [runner, 'bench/summary.ts'], { stdio: 'inherit' });
process.exit(failed ? 1 : 0);
