// fuse-elementwise: fused graphs compute what the unfused ones do, on random graphs (CPU in
// f64 and f32, WebGPU against the CPU) and on the real training step (loss and every
// updated param, both backends), with far fewer dispatches; unfuse is its inverse.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { printGraph } from '../../../src/ir/printer.ts';
import { verify } from '../../../src/ir/verify.ts';
import { loadRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { fuseElementwise, MAX_INPUTS, unfuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { arbGraph, randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { compareSteps, expectSameOnCpu, maxDiff } from './same.ts';

describe('fuse-elementwise', () => {
  it('random graphs: the fused graph gives the same outputs (CPU, f64 and f32); unfuse gives the same too', () => {
    let fusedSome = 0;
    fc.assert(
      fc.property(arbGraph({ maxNodes: 24, floatOnly: true }), fc.nat(1000), (g, seed) => {
        const f = verify(fuseElementwise(g));
        if (f.nodes.some((n) => n.op === 'fused_map')) fusedSome++;
        expectSameOnCpu(g, f, verify(unfuseElementwise(f)), seed);
      }),
      { numRuns: 60 },
    );
    expect(fusedSome).toBeGreaterThan(10);
  });

  it('random graphs on WebGPU: fused kernels equal the CPU interpreter', async () => {
    const be = await createBackend('webgpu');
    try {
      await fc.assert(
        fc.asyncProperty(arbGraph({ maxNodes: 20, floatOnly: true }), fc.nat(1000), async (g, seed) => {
          const f = fuseElementwise(g);
          const feeds = randomFeeds(g, seed);
          const w = randomWeights(g, seed);
          const want = runGraph(g, feeds, w, { precision: 'f32' });
          const exe = await be.compile(f, w);
          const got = await exe.run({ feeds });
          exe.dispose();
          for (const o of g.outputs) expect(maxDiff(want[o.name].data, got[o.name].data)).toBeLessThan(1e-4);
        }),
        { numRuns: 15 },
      );
    } finally {
      be.dispose();
    }
  });

  it(`a tree keeps at most ${MAX_INPUTS} external inputs; outputs and shared values stay unfused`, () => {
    const b = new GraphBuilder();
    const xs = Array.from({ length: 9 }, (_, i) => b.input(`x${i}`, 'f32', [4]));
    const shared = b.exp(xs[0]);
    const sum = xs.slice(1).reduce((acc, x) => b.add(acc, x), shared);
    const g = b.build({ y: b.mul(sum, shared), s: shared });
    const f = fuseElementwise(g);
    for (const n of f.nodes)
      if (n.op === 'fused_map') expect(n.inputs.length).toBeLessThanOrEqual(MAX_INPUTS);
    // `shared` is an output: it stays a node of its own.
    expect(f.nodes.some((n) => n.op === 'exp')).toBe(true);
    expect(printGraph(f)).toContain('fused_map');
  });

  const model = loadModel('examples/models/tiny-llama');
  const run = prepareRun(
    model,
    loadRecipe('examples/recipes/qlora-dora-loraplus.json'),
    { batch: 2, seq: 16 },
    { seed: 0 },
  );

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the fused training step (QLoRA + DoRA + LoRA+) equals the unfused one: losses and params over 2 steps`, async () => {
      const plain = unfuseElementwise(run.step);
      expect(run.step.nodes.some((n) => n.op === 'fused_map')).toBe(true);
      const r = await compareSteps(backend, plain, run.step, run, 2, 16);
      expect(r.loss).toBeLessThan(backend === 'cpu' ? 1e-12 : 1e-5);
      expect(r.params).toBeLessThan(backend === 'cpu' ? 1e-12 : 1e-5);
      if (r.dispatches) expect(r.dispatches[1]).toBeLessThan(0.7 * r.dispatches[0]);
    });
});
