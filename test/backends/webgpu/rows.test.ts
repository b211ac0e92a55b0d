// Row kernels (reductions, softmax, norms, cross-entropy and its gradient, attention) in both layouts:
// a workgroup per row ('gpu' kernels) and an invocation per row ('cpu' kernels, what
// lavapipe gets), on rows shorter and longer than a workgroup and counts of rows that
// leave part of the last workgroup idle. The CPU interpreter is the oracle.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { CORE_OPS } from '../../../src/ir/ops/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { Rng } from '../../../src/util/rng.ts';
import { expectClose, OUT, opCase, randTensor } from '../../ops/case.ts';
import { gpuSuite } from './gpu.ts';

const ROW_LENGTHS = [1, 5, 64, 65, 130, 300];
const ROW_COUNTS = [1, 3, 65];

interface RowCase {
  readonly op: string;
  readonly build: (rng: Rng, rows: number, n: number) => ReturnType<typeof opCase>;
}

/** A reduction (`axes`) or softmax (`axis`) over the rows of a rank-3 input. */
const unary = (op: string, key: 'axes' | 'axis'): RowCase => ({
  op,
  build: (rng, rows, n) => {
    // Rows split over two axes, the reduced one sometimes in the middle (strided rows).
    const mid = rng.next() < 0.5;
    const axis = mid ? 1 : 2;
    const shape = mid ? [rows, n, 1] : [1, rows, n];
    return opCase(op, [randTensor(rng, 'f32', shape)], key === 'axes' ? { axes: [axis] } : { axis });
  },
});

const CASES: RowCase[] = [
  unary('sum', 'axes'),
  unary('mean', 'axes'),
  unary('max', 'axes'),
  unary('softmax', 'axis'),
  unary('log_softmax', 'axis'),
  {
    op: 'rmsnorm',
    build: (rng, rows, n) =>
      opCase('rmsnorm', [randTensor(rng, 'f32', [rows, n]), randTensor(rng, 'f32', [n])], { eps: 1e-5 }),
  },
  {
    op: 'layernorm',
    build: (rng, rows, n) =>
      opCase(
        'layernorm',
        [randTensor(rng, 'f32', [rows, n]), randTensor(rng, 'f32', [n]), randTensor(rng, 'f32', [n])],
        { eps: 1e-5 },
      ),
  },
  {
    op: 'cross_entropy',
    build: (rng, rows, n) => {
      const labels = Array.from({ length: rows }, () =>
        rng.next() < 0.2 ? -100 : Math.floor(rng.next() * n),
      );
      return opCase(
        'cross_entropy',
        [randTensor(rng, 'f32', [rows, n], { lo: -6, hi: 6 }), tensor('i32', [rows], labels)],
        { ignore_index: -100, reduction: ['mean', 'sum', 'none'][Math.floor(rng.next() * 3)] },
      );
    },
  },
  {
    op: 'cross_entropy_grad',
    build: (rng, rows, n) => {
      const labels = Array.from({ length: rows }, () =>
        rng.next() < 0.2 ? -100 : Math.floor(rng.next() * n),
      );
      const reduction = (['mean', 'sum', 'none'] as const)[Math.floor(rng.next() * 3)];
      return opCase(
        'cross_entropy_grad',
        [
          randTensor(rng, 'f32', [rows, n], { lo: -6, hi: 6 }),
          tensor('i32', [rows], labels),
          randTensor(rng, 'f32', reduction === 'none' ? [rows] : []),
        ],
        { ignore_index: -100, reduction },
      );
    },
  },
  {
    // rows = b * hq * s query rows; n = t keys (causal: s <= t keeps every row non-empty).
    op: 'attention',
    build: (rng, rows, n) => {
      const s = Math.min(rows, n);
      const d = 1 + Math.floor(rng.next() * 9);
      const dv = 1 + Math.floor(rng.next() * 9);
      const ins = [
        randTensor(rng, 'f32', [1, 2, s, d]),
        randTensor(rng, 'f32', [1, 1, n, d]),
        randTensor(rng, 'f32', [1, 1, n, dv]),
      ];
      if (rng.next() < 0.5) {
        const mask = randTensor(rng, 'f32', [1, 1, s, n]);
        for (let i = 0; i < mask.data.length; i++) if (rng.next() < 0.3) mask.data[i] = -Infinity;
        ins.push(mask);
      }
      return opCase('attention', ins, { causal: rng.next() < 0.5, scale: null });
    },
  },
];

it('the cases cover real ops', () => {
  for (const c of CASES) expect(CORE_OPS).toContain(c.op);
});

for (const kernels of ['gpu', 'cpu'] as const) {
  await gpuSuite(
    `webgpu row kernels (${kernels} kernels)`,
    ({ backend }) => {
      for (const c of CASES) {
        it(c.op, async () => {
          await fc.assert(
            fc.asyncProperty(
              fc.integer({ min: 0, max: 2 ** 31 - 1 }),
              fc.constantFrom(...ROW_COUNTS),
              fc.constantFrom(...ROW_LENGTHS),
              async (seed, rows, n) => {
                const cs = c.build(new Rng(seed), rows, n);
                const expected = runGraph(cs.graph, cs.feeds, cs.weights)[OUT];
                const exe = await backend.compile(cs.graph, cs.weights);
                try {
                  const got = (await exe.run({ feeds: cs.feeds }))[OUT];
                  expectClose(got, expected, 2e-5, `${c.op} rows ${rows} x ${n} (${kernels})`);
                } finally {
                  exe.dispose();
                }
              },
            ),
            { numRuns: 12 },
          );
        });
      }
    },
    { kernels },
  );
}
