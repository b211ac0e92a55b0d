// 4-bit linear: the fused dequant-matmul (linear_4bit, after fuse-dequant) against a
// dequantize-then-matmul pipeline (dequant_4bit writes the f32 weight, then linear), in
// one run on the current WebGPU adapter (part of `npm run bench`; defaults take ~15 s
// on lavapipe with 2 cores):
//   node bin/run-ts.js bench/quant4.ts [--out 2048] [--in 2048] [--gemm-rows 64] [--reps 5] [--name quant4]
// Bytes moved are modeled from each kernel's access pattern (no hardware counters in
// WebGPU): every buffer a dispatch reads or writes, counted once per dispatch, and
// operands re-read once per tile where the tiled kernel walks them again. `ideal` is
// packed codes + absmax storage (as stored: u8 + nested f32 + map with double quant)
// + activations in and out, each once. The fused kernel reads the stored absmax directly
// (with double quant: u8 codes + nested absmax + map, decoded in place). GB/s = modeled bytes / GPU time (timestamp
// queries when the adapter has them, else wall time).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebGpuBackend, type WebGpuExecutable } from '../src/backends/webgpu/index.ts';
import { linear4bitPath, TILE_M, TILE_N } from '../src/backends/webgpu/kernels/quant4.ts';
import { quantStateToTensors } from '../src/io/bitsandbytes.ts';
import { GraphBuilder } from '../src/ir/builder.ts';
import type { Graph } from '../src/ir/graph.ts';
import { tensor } from '../src/ir/tensor.ts';
import { MapWeightStore } from '../src/ir/weights.ts';
import { emitDequant, fuseDequant, settingsOf } from '../src/methods/qlora/index.ts';
import { quantizeWeight } from '../src/quant/quant-state.ts';
import { Rng } from '../src/util/rng.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string', default: '2048' },
    in: { type: 'string', default: '2048' },
    'gemm-rows': { type: 'string', default: '64' },
    reps: { type: 'string', default: '5' },
    name: { type: 'string', default: 'quant4' },
  },
});
const OUT = Number(a.out);
const IN = Number(a.in);
const REPS = Number(a.reps);
// The core tiled matmul's square tile (the dequant -> linear pipeline).
const TILE = 64;

const rng = new Rng(1);
const W = Float32Array.from({ length: OUT * IN }, () => rng.normal(0, 0.02));

interface Row {
  case: string;
  path: string;
  ms: number;
  timer: string;
  bytes: number;
  ideal: number;
  ratio: number;
  gbps: number;
  idealGbps: number;
}

function graphFor(rows: number, dq: boolean) {
  const s = quantizeWeight(W, [OUT, IN], { quantType: 'nf4', doubleQuant: dq });
  const weights = new MapWeightStore(quantStateToTensors('w', s));
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [rows, IN]);
  const y = b.linear(x, emitDequant(b, 'w', [OUT, IN], settingsOf(s)));
  const plain = b.build({ y });
  const x0 = tensor(
    'f32',
    [rows, IN],
    Float32Array.from({ length: rows * IN }, () => rng.normal(0, 1)),
  );
  return { plain, fused: fuseDequant(plain), weights, feeds: { x: x0 }, state: s };
}

async function time(exe: WebGpuExecutable, feeds: Record<string, ReturnType<typeof tensor>>) {
  await exe.runTimed({ feeds, outputs: [] });
  const ts: number[] = [];
  let timer = 'wall';
  for (let i = 0; i < REPS; i++) {
    const t = await exe.runTimed({ feeds, outputs: [] });
    if (t.gpuMs !== undefined && t.gpuMs > 0) timer = 'timestamp';
    ts.push(t.gpuMs !== undefined && t.gpuMs > 0 ? t.gpuMs : t.wallMs);
  }
  ts.sort((p, q) => p - q);
  return { ms: ts[ts.length >> 1], timer };
}

const backend = new WebGpuBackend();
const rows: Row[] = [];
try {
  for (const dq of [false, true]) {
    for (const m of [1, Number(a['gemm-rows'])]) {
      const c = graphFor(m, dq);
      const n = OUT * IN;
      const blocks = Math.ceil(n / 64);
      const packed = Math.ceil(n / 2);
      // Absmax as stored, and the f32 absmax dequant_absmax writes (only the pipeline has it).
      const stored = dq ? blocks + Math.ceil(blocks / 256) * 4 + 256 * 4 : blocks * 4;
      const absF32 = blocks * 4;
      const dqKernel = dq ? stored + absF32 : 0; // dequant_absmax: read stored, write f32
      const xBytes = m * IN * 4;
      const yBytes = m * OUT * 4;
      const ideal = packed + stored + xBytes + yBytes;
      const path = linear4bitPath(
        { quant_type: 'nf4', blocksize: 64, out_features: OUT, in_features: IN, transpose: false },
        m,
      );
      const mTiles = Math.ceil(m / TILE);
      const nTiles = Math.ceil(OUT / TILE);
      // Fused tiled: W once per TILE_M-row tile, X once per TILE_N-column tile.
      const wReads = path === 'gemv' ? 1 : Math.ceil(m / TILE_M);
      const xReads = path === 'gemv' ? 1 : Math.ceil(OUT / TILE_N);
      const fusedBytes = wReads * (packed + stored) + xReads * xBytes + yBytes;
      // Pipeline: dequant_4bit reads codes + f32 absmax and writes W (4n); linear reads W (per M tile).
      const linReads = m <= 4 ? 1 : mTiles;
      const pipeBytes =
        dqKernel + packed + absF32 + 4 * n + linReads * 4 * n + (m <= 4 ? 1 : nTiles) * xBytes + yBytes;
      for (const [label, g, bytes, p] of [
        ['fused linear_4bit', c.fused, fusedBytes, path],
        ['dequant -> linear', c.plain, pipeBytes, m <= 4 ? 'gemv' : 'tiled'],
      ] as [string, Graph, number, string][]) {
        const exe = await backend.compile(g, c.weights);
        const t = await time(exe, c.feeds);
        exe.dispose();
        rows.push({
          case: `${label} M=${m} ${OUT}x${IN} nf4 bs64${dq ? ' +dq' : ''}`,
          path: p,
          ms: t.ms,
          timer: t.timer,
          bytes,
          ideal,
          ratio: bytes / ideal,
          gbps: bytes / t.ms / 1e6,
          idealGbps: ideal / t.ms / 1e6,
        });
      }
    }
  }
} finally {
  backend.dispose();
}

const file = join(dirname(fileURLToPath(import.meta.url)), 'results', `${a.name}.json`);
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify({ shape: [OUT, IN], reps: REPS, rows }, null, 2)}\n`);
printTable<Row>(
  `4-bit linear (nf4, blocksize 64), W ${OUT}x${IN}, median of ${REPS} runs`,
  [
    {
      header: 'case',
      legend: 'path, M = activation rows, W shape; +dq = double-quantized absmax (u8 codes + nested absmax)',
      cell: (r) => r.case,
    },
    {
      header: 'kernel',
      legend: 'the kernel the path runs: gemv (few rows) or tiled',
      cell: (r) => r.path,
      align: 'left',
    },
    { header: 'GPU ms', legend: 'median time of one run', cell: (r) => num(r.ms, 3) },
    {
      header: 'timer',
      legend: 'timestamp = GPU timestamp queries, wall = submit to onSubmittedWorkDone',
      cell: (r) => r.timer,
      align: 'left',
    },
    {
      header: 'MB moved',
      legend: "modeled bytes read + written by the path's dispatches (MB = 1e6 bytes)",
      cell: (r) => num(r.bytes / 1e6),
    },
    {
      header: 'x ideal',
      legend:
        'MB moved / ideal MB (packed codes + stored absmax + activations in and out, each once); 1 = no re-reads',
      cell: (r) => num(r.ratio, 3),
    },
    { header: 'GB/s', legend: 'MB moved / GPU ms (modeled bandwidth)', cell: (r) => num(r.gbps) },
  ],
  rows,
);
console.log(`wrote ${file}`);
process.exit(0);
