// The register-tiled matmul for software adapters (issue 21, opt-in) against the CPU
// interpreter: fast-check over shapes with ragged edges (M, N not multiples of the 8x8
// tile, K not a multiple of 4), both transposes, broadcast batches, linear with a bias;
// and which kernel each adapter kind plans.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { listKernels } from '../../../src/backends/webgpu/kernel-list.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { Rng } from '../../../src/util/rng.ts';
import { randTensor } from '../../ops/case.ts';
import { expectClose } from '../../ops/cases.ts';
import { gpuSuite } from './gpu.ts';
import { matmulGraph, weightsOf } from './matmul-graphs.ts';

const kernelsOf = (g: Graph, software: boolean, softwareMatmul?: 'register' | 'direct') =>
  listKernels(g, { f16: false, software, softwareMatmul }).dispatches.map(
    (d) => JSON.parse(d.key).program.kernel,
  );

it('software adapters plan the direct kernel or, when asked, the register one; hardware ones the tiled one', () => {
  const g = matmulGraph(64, 32, 48, false, true, [], []);
  expect(kernelsOf(g, true)).toEqual(['direct']);
  expect(kernelsOf(g, true, 'register')).toEqual(['register']);
  expect(kernelsOf(g, false)).toEqual(['tiled']);
  expect(kernelsOf(matmulGraph(2, 32, 48, false, true, [], []), false)).toEqual(['gemv']);
});

await gpuSuite(
  'webgpu register-tiled matmul (software kernels)',
  ({ backend }) => {
    async function check(
      g: Graph,
      w: MapWeightStore,
      feeds: Record<string, never> = {},
      what = '',
      tol = 1e-5,
    ) {
      const exe = await backend.compile(g, w);
      try {
        expectClose((await exe.run({ feeds })).y, runGraph(g, feeds, w).y, tol, what);
      } finally {
        exe.dispose();
      }
    }
    it('equals the cpu reference on random shapes, transposes and broadcast batches', async () => {
      const dim = fc.integer({ min: 1, max: 21 });
      const batch = fc.constantFrom<[number[], number[]]>(
        [[], []],
        [[2], [2]],
        [[2, 1], [3]],
        [[1], [2]],
        [[3], []],
      );
      await fc.assert(
        fc.asyncProperty(
          dim,
          fc.integer({ min: 0, max: 13 }),
          dim,
          fc.boolean(),
          fc.boolean(),
          batch,
          async (m, k, n, ta, tb, [ba, bb]) => {
            const g = matmulGraph(m, k, n, ta, tb, ba, bb);
            await check(
              g,
              weightsOf(g, m * 31 + k * 7 + n),
              {},
              `${m}x${k}x${n} ta=${ta} tb=${tb} [${ba}]x[${bb}]`,
            );
          },
        ),
        { numRuns: 6 },
      );
    });
    it('257x129x65 (every edge ragged) in three layouts, 64x64x64 with B transposed', async () => {
      for (const [m, k, n, ta, tb] of [
        [257, 129, 65, false, false],
        [257, 129, 65, true, false],
        [257, 129, 65, false, true],
        [64, 64, 64, false, true],
      ] as [number, number, number, boolean, boolean][]) {
        const g = matmulGraph(m, k, n, ta, tb, [], []);
        await check(g, weightsOf(g, m + n), {}, `${m}x${k}x${n} ta=${ta} tb=${tb}`, 1e-4);
      }
    });
    it('linear with a bias, odd sizes', async () => {
      for (const [x, out] of [
        [[2, 3, 20], 23],
        [[5, 16], 9],
        [[33, 7], 40],
      ] as [number[], number][]) {
        const b = new GraphBuilder();
        const inF = x[x.length - 1];
        const y = b.linear(
          b.param('x', 'f32', x),
          b.param('w', 'f32', [out, inF]),
          b.param('bias', 'f32', [out]),
        );
        const g = b.build({ y });
        await check(g, weightsOf(g, out), {}, `linear ${x} -> ${out}`);
      }
    });
    it('linear with an f16 weight and bias (where the adapter has shader-f16)', async () => {
      if (!(await backend.ready()).f16) return;
      for (const [x, out] of [
        [[9, 16], 12],
        [[10, 7], 5],
      ] as [number[], number][]) {
        const b = new GraphBuilder();
        const inF = x[x.length - 1];
        const y = b.linear(
          b.param('x', 'f32', x),
          b.param('w', 'f16', [out, inF]),
          b.param('bias', 'f16', [out]),
        );
        const g = b.build({ y });
        const rng = new Rng(out);
        const w = new MapWeightStore();
        for (const p of g.params()) w.set(String(p.attrs.name), randTensor(rng, p.type.dtype, p.type.shape));
        // f16 values are rounded to f16 in device storage, the CPU keeps them as f32 (the
        // earlier direct kernel differs from the CPU by the same 7e-3 here).
        await check(g, w, {}, `f16 linear ${x} -> ${out}`, 1e-2);
      }
    });
  },
  { kernels: 'cpu', softwareMatmul: 'register' },
);
