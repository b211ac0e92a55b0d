// Matmul and linear on edge shapes, for both kernel families (GPU tiles with
// workgroup memory, and the CPU-adapter direct kernel), against the CPU interpreter.
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Shape } from '../../../src/ir/shape.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { Rng } from '../../../src/util/rng.ts';
import { randTensor } from '../../ops/case.ts';
import { expectClose } from '../../ops/cases.ts';
import { gpuSuite } from './gpu.ts';

interface MM {
  a: Shape;
  b: Shape;
  ta?: boolean;
  tb?: boolean;
}

const SHAPES: [string, MM][] = [
  ['1x1x1', { a: [1, 1], b: [1, 1] }],
  ['GEMV 1xKxN', { a: [1, 37], b: [37, 70] }],
  ['GEMV 3xKxN, B transposed', { a: [3, 64], b: [50, 64], tb: true }],
  ['17x33x65', { a: [17, 33], b: [33, 65] }],
  ['17x32x64 (vec4 paths)', { a: [17, 32], b: [32, 64] }],
  ['70x20x130 both transposed', { a: [20, 70], b: [130, 20], ta: true, tb: true }],
  ['A transposed, K%4 = 0', { a: [8, 66], b: [8, 5], ta: true }],
  ['batched broadcast [2,1] x [3]', { a: [2, 1, 9, 12], b: [3, 12, 7] }],
  ['batched both sides broadcast', { a: [1, 3, 5, 8], b: [2, 1, 8, 6] }],
  ['K = 0 gives zeros', { a: [5, 0], b: [0, 6] }],
];

for (const kernels of ['gpu', 'cpu'] as const) {
  await gpuSuite(
    `webgpu matmul edges (${kernels} kernels)`,
    ({ backend }) => {
      for (const [name, s] of SHAPES) {
        it(name, async () => {
          const rng = new Rng(name.length * 7919);
          const b = new GraphBuilder();
          const y = b.matmul(b.param('a', 'f32', s.a), b.param('b', 'f32', s.b), {
            transpose_a: !!s.ta,
            transpose_b: !!s.tb,
          });
          const g = b.build({ y });
          const w = new MapWeightStore()
            .set('a', randTensor(rng, 'f32', s.a))
            .set('b', randTensor(rng, 'f32', s.b));
          const exe = await backend.compile(g, w);
          const got = (await exe.run({ feeds: {} })).y;
          exe.dispose();
          expectClose(got, runGraph(g, {}, w).y, 1e-5, name);
        });
      }
      it('linear with bias on [2,3,K] and odd sizes, and a decode-sized GEMV', async () => {
        for (const [x, out] of [
          [[2, 3, 19], 23],
          [[1, 1, 64], 33],
          [[4, 40], 9],
        ] as [number[], number][]) {
          const rng = new Rng(out);
          const b = new GraphBuilder();
          const inF = x[x.length - 1];
          const y = b.linear(
            b.input('x', 'f32', x),
            b.param('w', 'f32', [out, inF]),
            b.param('b', 'f32', [out]),
          );
          const g = b.build({ y });
          const w = new MapWeightStore()
            .set('w', randTensor(rng, 'f32', [out, inF]))
            .set('b', randTensor(rng, 'f32', [out]));
          const feeds = { x: randTensor(rng, 'f32', x) };
          const exe = await backend.compile(g, w);
          const got = (await exe.run({ feeds })).y;
          exe.dispose();
          expectClose(got, runGraph(g, feeds, w).y, 1e-5, `linear ${x} -> ${out}`);
        }
      });
      it('shares one pipeline between matmuls of different sizes (sizes are uniforms)', async () => {
        const before = backend.cacheStats.pipelines;
        for (const m of [40, 41, 77]) {
          const b = new GraphBuilder();
          const y = b.matmul(b.input('a', 'f32', [m, 12]), b.input('b', 'f32', [12, 5]));
          const exe = await backend.compile(b.build({ y }), new MapWeightStore());
          exe.dispose();
        }
        expect(backend.cacheStats.pipelines - before).toBeLessThanOrEqual(1);
      });
    },
    { kernels },
  );
}
