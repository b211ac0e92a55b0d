// Every core op on WebGPU against the CPU interpreter (the oracle), on the shared
// random cases of test/ops/cases.ts.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { CORE_OPS } from '../../../src/ir/ops/index.ts';
import { DEFAULT_TOL, expectClose, OUT, opCases } from '../../ops/cases.ts';
import { gpuSuite } from './gpu.ts';

/** Extra tolerance where the GPU's f32 math differs from the CPU's f64 accumulation. */
const GPU_TOL: Partial<Record<string, number>> = {
  exp: 1e-5,
  pow: 1e-5,
  gelu: 2e-6,
  rope: 1e-4,
};

await gpuSuite('webgpu kernels vs cpu interpreter', ({ backend }) => {
  for (const op of CORE_OPS) {
    it(op, async () => {
      const c = opCases[op];
      expect(c, `op '${op}' has no case in test/ops/cases.ts`).toBeDefined();
      await fc.assert(
        fc.asyncProperty(c.arb, async (cs) => {
          const expected = runGraph(cs.graph, cs.feeds, cs.weights)[OUT];
          const exe = await backend.compile(cs.graph, cs.weights);
          try {
            const got = (await exe.run({ feeds: cs.feeds }))[OUT];
            const f16 = cs.graph.nodes.some((n) => n.type.dtype === 'f16');
            const tol = Math.max(c.tol ?? DEFAULT_TOL, GPU_TOL[op] ?? 0, f16 ? 1e-3 : 0);
            expectClose(got, expected, tol, `${op} on webgpu`);
          } finally {
            exe.dispose();
          }
        }),
        { numRuns: 25 },
      );
    });
  }
});
