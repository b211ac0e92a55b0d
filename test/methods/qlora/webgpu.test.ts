// The WGSL QLoRA kernels against the CPU interpreter: the fused linear_4bit (GEMV and
// tiled paths, x W^T and x W, several output tiles, bias, odd in_features, partial last
// blocks, blocksizes 32..256, NF4/FP4, with and without double quantization),
// dequant_4bit, dequant_absmax. Random sizes over a fixed set of kernel variants
// (gpu-variants.ts), so the file compiles six linear_4bit pipelines, not one per draw.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { linear4bitPath } from '../../../src/backends/webgpu/kernels/quant4.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { emitDequant, settingsOf } from '../../../src/methods/qlora/index.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';
import { expectClose } from '../../ops/case.ts';
import { build, type Problem } from './cases.ts';
import { problemOf, VARIANTS, variantOf, variantProblemArb } from './gpu-variants.ts';

// Per variant (by index): an example with small odd sizes, and problems over more than
// one 64 x 512 output tile each way (row and column tile indexing, edges).
const examples: [number, Pick<Problem, 'rows' | 'outF' | 'inF'>][] = [
  [0, { rows: [70], outF: 13, inF: 24 }],
  [1, { rows: [70], outF: 13, inF: 19 }],
  [2, { rows: [2, 5], outF: 12, inF: 48 }],
  [3, { rows: [70], outF: 13, inF: 21 }],
  [4, { rows: [1], outF: 13, inF: 40 }],
  [5, { rows: [3], outF: 13, inF: 37 }],
  [0, { rows: [70], outF: 600, inF: 16 }],
  [2, { rows: [70], outF: 16, inF: 520 }],
  [3, { rows: [70], outF: 13, inF: 517 }],
];

await gpuSuite('qlora WGSL kernels vs cpu', ({ backend }) => {
  // One property per variant (a test compiles one linear_4bit pipeline, seconds on a cold
  // shader cache): 4 random sizes each, 24 in all, plus the examples.
  VARIANTS.forEach((v, k) => {
    it(`linear_4bit (fused dequant-matmul), ${v.name}, on random shapes`, async () => {
      const { quantType, blocksize, doubleQuant, transpose, bias } = v;
      const mine = examples
        .filter(([i]) => i === k)
        .map(([, e], j) => [{ ...e, quantType, blocksize, doubleQuant, transpose, bias, seed: 5 + j }]);
      await fc.assert(
        fc.asyncProperty(problemOf(v), async (p) => {
          expect(variantOf(p)?.name, `${JSON.stringify(p)} left its variant`).toBe(v.name);
          const rows = p.rows.reduce((a, b) => a * b, 1);
          const path = linear4bitPath(
            { ...p, quant_type: p.quantType, out_features: p.outF, in_features: p.inF },
            rows,
          );
          expect(path).toBe(v.gemvRows === undefined ? 'tiled' : 'gemv');
          const c = build(p);
          const want = runGraph(c.fused, c.feeds, c.weights).out;
          const exe = await backend.compile(c.fused, c.weights);
          try {
            const got = (await exe.run({ feeds: c.feeds })).out;
            expectClose(got, want, 2e-5, `linear_4bit ${JSON.stringify(p)}`);
          } finally {
            exe.dispose();
          }
        }),
        { numRuns: 4, examples: mine },
      );
      // A pipeline per variant so far: linear_4bit, and the dequant_4bit the fused graph
      // keeps from emitDequant, plus the one dequant_absmax; more means a draw left the list.
      expect(backend.cacheStats.pipelines).toBeLessThanOrEqual(2 * (k + 1) + 1);
    });
  });

  it('dequant_4bit and dequant_absmax', async () => {
    await fc.assert(
      fc.asyncProperty(variantProblemArb, async (p) => {
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
