// DoRA (both norm forms) and PiSSA / OLoRA on WebGPU against the CPU interpreter, forward
// and gradients of every trainable param, on random small models (test/methods/properties
// testModel with random widths, biases and ranks): the same graphs the generic property
// suite checks on the CPU.
import fc from 'fast-check';
import { it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { autodiff, GRAD_PREFIX } from '../../src/passes/autodiff/index.ts';
import { randomFeeds, randomWeights } from '../arbitrary/graphs.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { expectClose } from '../ops/case.ts';
import { arbModelShape, testModel } from './properties.ts';

const VARIANTS: Record<string, Record<string, unknown>> = {
  'dora (factored)': { use_dora: true, init_lora_weights: false },
  'dora (dense)': { use_dora: true, dora_norm: 'dense', init_lora_weights: false },
  'dora on biased modules': { use_dora: true, init_lora_weights: false, lora_dropout: 0 },
  pissa: { init_lora_weights: 'pissa' },
  olora: { init_lora_weights: 'olora' },
};

await gpuSuite('LoRA variants on webgpu vs cpu', ({ backend }) => {
  for (const [name, extra] of Object.entries(VARIANTS)) {
    it(`${name}: outputs and gradients equal the cpu interpreter`, async () => {
      await fc.assert(
        fc.asyncProperty(
          arbModelShape.map((s) => ({ ...s, bias: name.includes('biased') ? true : s.bias })),
          fc.integer({ min: 1, max: 3 }),
          fc.nat(1000),
          async (shape, r, seed) => {
            const base = testModel(shape);
            const baseW = randomWeights(base, seed);
            const o = loraOptions.parse({
              r: Math.min(r, shape.dim, shape.hidden),
              lora_alpha: 4,
              target_modules: ['q_proj', 'o_proj', 'down_proj'],
              ...extra,
            });
            const inj = injectLora(base, o, baseW);
            // loss = sum(y): gradients of every trainable param.
            const g = autodiff(sumLoss(inj.graph), { loss: 'loss' });
            const w = bindParams(g, inj.weights!, seed);
            const feeds = randomFeeds(base, seed);
            const outs = g.outputs.map((x) => x.name).filter((n) => n === 'y' || n.startsWith(GRAD_PREFIX));
            const want = runGraph(g, feeds, w, { outputs: outs });
            const exe = await backend.compile(g, w);
            try {
              const got = await exe.run({ feeds, outputs: outs });
              for (const n of outs) expectClose(got[n], want[n], 1e-4, `${name} ${n}`);
            } finally {
              exe.dispose();
            }
          },
        ),
        { numRuns: 3 },
      );
    });
  }
});

/** The graph with a scalar `loss` = sum of y added. */
function sumLoss(g: Graph): Graph {
  const b = GraphBuilder.from(g);
  const y = b.value(g.output('y').id);
  const loss = b.sum(y, [...y.type.shape.keys()]);
  return b.build({ y, loss });
}
