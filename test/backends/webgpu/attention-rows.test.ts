// The thread-per-row attention takes several query rows per invocation on software
// adapters (each key and value load serves them all): 4 where the query length allows,
// else 2, else 1, and 1 on GPUs. Whatever it takes, the rows equal the CPU's, with GQA,
// causality past the diagonal offset (t > s), masks with -inf, and fully masked rows.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { planNode } from '../../../src/backends/webgpu/kernel-plan.ts';
import type { KernelPlan } from '../../../src/backends/webgpu/program.ts';
import { Rng } from '../../../src/util/rng.ts';
import { expectClose, OUT, opCase, randTensor } from '../../ops/case.ts';
import { gpuSuite } from './gpu.ts';

function attentionCase(rng: Rng, s: number, t: number, masked: boolean, causal: boolean) {
  const [b, hkv, group] = [1 + Math.floor(rng.next() * 2), 1 + Math.floor(rng.next() * 2), 2];
  const [d, dv] = [1 + Math.floor(rng.next() * 9), 1 + Math.floor(rng.next() * 9)];
  const ins = [
    randTensor(rng, 'f32', [b, hkv * group, s, d]),
    randTensor(rng, 'f32', [b, hkv, t, d]),
    randTensor(rng, 'f32', [b, hkv, t, dv]),
  ];
  if (masked) {
    const mask = randTensor(rng, 'f32', [1, 1, s, t], { lo: -2, hi: 2 });
    for (let i = 0; i < mask.data.length; i++) if (rng.next() < 0.3) mask.data[i] = -Infinity;
    // One row with every key masked: zeros, as the CPU gives.
    mask.data.fill(-Infinity, 0, t);
    ins.push(mask);
  }
  return opCase('attention', ins, { causal, scale: null });
}

it('takes 4, 2 or 1 rows per invocation on software adapters, 1 on GPUs', () => {
  const rows = (s: number, software: boolean) => {
    const c = attentionCase(new Rng(1), s, 9, false, true);
    const node = c.graph.nodes.find((n) => n.op === 'attention');
    const plan = planNode(c.graph, node!, { f16: false, software }) as KernelPlan;
    return plan.steps[0].desc.rowsPerInvocation;
  };
  expect([8, 6, 5].map((s) => rows(s, true))).toEqual([4, 2, 1]);
  expect(rows(8, false)).toBe(1);
});

await gpuSuite(
  'attention, several query rows per invocation',
  ({ backend }) => {
    it('equals the CPU', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          fc.constantFrom(2, 4, 6, 8, 12),
          fc.integer({ min: 0, max: 5 }),
          fc.boolean(),
          fc.boolean(),
          async (seed, s, extra, masked, causal) => {
            const c = attentionCase(new Rng(seed), s, s + extra, masked, causal);
            const expected = runGraph(c.graph, c.feeds, c.weights)[OUT];
            const exe = await backend.compile(c.graph, c.weights);
            try {
              const got = (await exe.run({ feeds: c.feeds }))[OUT];
              expectClose(got, expected, 2e-5, `attention s ${s} t ${s + extra}`);
            } finally {
              exe.dispose();
            }
          },
        ),
        { numRuns: 25 },
      );
    });
  },
  { kernels: 'cpu' },
);
