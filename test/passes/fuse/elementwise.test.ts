// fuse-elementwise: fused graphs compute what the unfused ones do, on random graphs (CPU in
// f64 and f32, WebGPU against the CPU) and on the real training step (loss and every
// updated param, both backends), with far fewer dispatches; unfuse is its inverse.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { printGraph } from '../../../src/ir/printer.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { verify } from '../../../src/ir/verify.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { loadRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { fuseElementwise, MAX_INPUTS, unfuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { Rng } from '../../../src/util/rng.ts';
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

  it('a cheap value two trees share is recomputed in each, not kept as a kernel of its own', () => {
    // AdamW's shape: the clipped gradient c = g * coef feeds both moment updates.
    const b = new GraphBuilder();
    const [g, coef, m, v] = ['g', 'coef', 'm', 'v'].map((n) => b.input(n, 'f32', [8]));
    const c = b.mul(g, coef);
    const m2 = b.add(b.scale(m, 0.9), b.scale(c, 0.1));
    const v2 = b.add(b.scale(v, 0.999), b.scale(b.mul(c, c), 0.001));
    const graph = b.build({ m2, v2 });
    const f = fuseElementwise(graph);
    expect(f.nodes.filter((n) => n.op === 'mul')).toHaveLength(0);
    expect(f.nodes.filter((n) => n.op === 'fused_map')).toHaveLength(2);
    const rng = new Rng(3);
    const feeds = Object.fromEntries(
      ['g', 'coef', 'm', 'v'].map((n) => [
        n,
        tensor(
          'f32',
          [8],
          Array.from({ length: 8 }, () => rng.normal()),
        ),
      ]),
    );
    const want = runGraph(graph, feeds, new MapWeightStore());
    const got = runGraph(f, feeds, new MapWeightStore());
    for (const k of ['m2', 'v2']) expect(Array.from(got[k].data)).toEqual(Array.from(want[k].data));
  });

  it('a reduction of an elementwise value made for it alone is one fused_reduce (CPU bit for bit, WebGPU to 1e-4)', async () => {
    const be = await createBackend('webgpu');
    const shapeArb = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 });
    try {
      await fc.assert(
        fc.asyncProperty(
          shapeArb,
          fc.constantFrom('sum', 'mean', 'max'),
          fc.boolean(),
          fc.boolean(),
          fc.nat(1000),
          async (shape, kind, keepdims, bcast, seed) => {
            const b = new GraphBuilder();
            const x = b.input('x', 'f32', shape);
            // A broadcast second operand (its last axis only), as masks and scales come.
            const y = b.input('y', 'f32', bcast ? [shape[shape.length - 1]] : shape);
            const axes = shape.map((_, i) => i).filter((i) => (seed >> i) & 1);
            const pre = b.exp(b.mul(b.sub(x, y), x));
            const r =
              kind === 'sum'
                ? b.sum(pre, axes, keepdims)
                : kind === 'mean'
                  ? b.mean(pre, axes, keepdims)
                  : b.max(pre, axes, keepdims);
            const g = b.build({ r });
            const f = verify(fuseElementwise(g));
            expect(f.nodes.map((n) => n.op).filter((o) => o !== 'input')).toEqual(['fused_reduce']);
            const feeds = randomFeeds(g, seed);
            const want = runGraph(g, feeds, new MapWeightStore(), { precision: 'f32' });
            const got = runGraph(f, feeds, new MapWeightStore(), { precision: 'f32' });
            expect(Array.from(got.r.data)).toEqual(Array.from(want.r.data));
            const back = runGraph(verify(unfuseElementwise(f)), feeds, new MapWeightStore(), {
              precision: 'f32',
            });
            expect(Array.from(back.r.data)).toEqual(Array.from(want.r.data));
            const exe = await be.compile(f, new MapWeightStore());
            const gpu = await exe.run({ feeds });
            exe.dispose();
            const scale = Math.max(1, ...Array.from(want.r.data, Math.abs));
            expect(maxDiff(want.r.data, gpu.r.data) / scale).toBeLessThan(1e-5);
          },
        ),
        { numRuns: 25 },
      );
    } finally {
      be.dispose();
    }
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
