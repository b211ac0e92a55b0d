// The WGSL QLoRA kernels against the CPU interpreter: the fused linear_4bit (GEMV and
// tiled paths, x W^T and x W, several output tiles, bias, odd in_features, partial last blocks, blocksizes
// 32..256, NF4/FP4, with and without double quantization), dequant_4bit, dequant_absmax.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { linear4bitPath } from '../../../src/backends/webgpu/kernels/quant4.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { emitDequant, settingsOf } from '../../../src/methods/qlora/index.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';
import { expectClose } from '../../ops/case.ts';
import { build, type Problem, problemArb } from './cases.ts';

// One problem per kernel path (GEMV / tiled x W^T / tiled x W, whole words / elements), double quant.
const pathExamples: Problem[] = [
  [[3], 24, false],
  [[3], 21, false],
  [[70], 40, false],
  [[70], 37, false],
  [[2, 5], 48, true],
  [[70], 19, true],
].map(([rows, inF, transpose]) => ({
  rows: rows as number[],
  outF: 13,
  inF: inF as number,
  blocksize: 64,
  quantType: 'nf4',
  doubleQuant: true,
  transpose: transpose as boolean,
  bias: !transpose,
  seed: 5,
}));
// More than one 64 x 512 output tile each way (row and column tile indexing, edges).
const multiTile: Problem[] = [
  [600, 16, false],
  [16, 520, true],
  [12, 517, true],
].map(([outF, inF, transpose]) => ({
  rows: [70],
  outF: outF as number,
  inF: inF as number,
  blocksize: 64,
  quantType: 'nf4',
  doubleQuant: false,
  transpose: transpose as boolean,
  bias: !transpose,
  seed: 7,
}));

await gpuSuite('qlora WGSL kernels vs cpu', ({ backend }) => {
  it('linear_4bit (fused dequant-matmul) on random shapes', async () => {
    const paths = new Set<string>();
    await fc.assert(
      fc.asyncProperty(problemArb, async (p) => {
        const c = build(p);
        const rows = p.rows.reduce((a, b) => a * b, 1);
        paths.add(
          `${linear4bitPath({ ...p, quant_type: p.quantType, out_features: p.outF, in_features: p.inF }, rows)}:${p.transpose}:${p.inF % 8 === 0 ? 'words' : 'elements'}`,
        );
        const want = runGraph(c.fused, c.feeds, c.weights).out;
        const exe = await backend.compile(c.fused, c.weights);
        try {
          const got = (await exe.run({ feeds: c.feeds })).out;
          expectClose(got, want, 2e-5, `linear_4bit ${JSON.stringify(p)}`);
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 24, examples: [...pathExamples, ...multiTile].map((e) => [e]) },
    );
    // Every path was exercised, whole-word and per-element decoding.
    expect([...paths].sort()).toEqual([
      'gemv:false:elements',
      'gemv:false:words',
      'tiled:false:elements',
      'tiled:false:words',
      'tiled:true:elements',
      'tiled:true:words',
    ]);
  });

  it('dequant_4bit and dequant_absmax', async () => {
    await fc.assert(
      fc.asyncProperty(problemArb, async (p) => {
        const c = build(p);
        const b = new GraphBuilder();
        const w = emitDequant(b, 'm.weight', [p.outF, p.inF], settingsOf(c.state));
        const g = b.build({ out: w, absmax: b.value(b.built.find((n) => n.id === w.id)!.inputs[1]) });
        const want = runGraph(g, {}, c.weights);
        const exe = await backend.compile(g, c.weights);
        try {
          const got = await exe.run({ feeds: {} });
          // absmax: one rounding apart at most (the GPU may contract mul + add).
          expectClose(got.absmax, want.absmax, 1e-7, 'dequant_absmax');
          expectClose(got.out, want.out, 1e-6, 'dequant_4bit');
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 30 },
    );
  });
});
