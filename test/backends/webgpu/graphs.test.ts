// Random small valid graphs end to end: WebGPU against the CPU interpreter on every output.
import fc from 'fast-check';
import { it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { arbGraph, randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { expectClose } from '../../ops/cases.ts';
import { gpuSuite } from './gpu.ts';

await gpuSuite('webgpu random graphs vs cpu', ({ backend }) => {
  it('every output matches', async () => {
    await fc.assert(
      fc.asyncProperty(arbGraph({ maxNodes: 12 }), fc.nat(1000), async (g, seed) => {
        const feeds = randomFeeds(g, seed);
        const weights = randomWeights(g, seed);
        const expected = runGraph(g, feeds, weights);
        const exe = await backend.compile(g, weights);
        try {
          const got = await exe.run({ feeds, outputs: g.outputs.map((o) => o.name) });
          // f16 values are rounded to f16 in device storage; the CPU keeps them as f32.
          const tol = g.nodes.some((n) => n.type.dtype === 'f16') ? 2e-3 : 1e-4;
          for (const o of g.outputs) expectClose(got[o.name], expected[o.name], tol, `output ${o.name}`);
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 30 },
    );
  });
});
