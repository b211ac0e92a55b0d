// fuse-epilogue: matmul/linear outputs mapped through their elementwise reader in the
// matmul's store (matmul_map) compute what the unfused graphs do: on random graphs (CPU bit
// for bit, WebGPU against the CPU with each matmul kernel family) and on the real LoRA
// training step (loss and every updated param, both backends), with fewer dispatches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stepFeeds } from '../../../bench/step-feeds.ts';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { createBackend } from '../../../src/backends/index.ts';
import {
  WebGpuBackend,
  type WebGpuExecutable,
  type WebGpuOptions,
} from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { verify } from '../../../src/ir/verify.ts';
import { loadRecipe } from '../../../src/methods/index.ts';
import { loadModel } from '../../../src/models/llama/index.ts';
import { fuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { fuseEpilogue, unfuseEpilogue } from '../../../src/passes/fuse/matmul-map.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { arbGraph, randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    const d = Math.abs(a[i] - b[i]);
    m = Math.max(m, Number.isNaN(d) ? Infinity : d / (1 + Math.abs(a[i])));
  }
  return m;
}

const fuse = (g: Parameters<typeof fuseElementwise>[0]) => verify(fuseEpilogue(fuseElementwise(g)));

/** Random graphs in which something fuses (a few percent of arbGraph's). */
const fusing = (maxNodes: number) =>
  arbGraph({ maxNodes, floatOnly: true }).filter((g) => fuse(g).nodes.some((n) => n.op === 'matmul_map'));

describe('fuse-epilogue', () => {
  it('random graphs: the fused graph gives the unfused outputs bit for bit (CPU, f64 and f32)', () => {
    fc.assert(
      fc.property(fusing(24), fc.nat(1000), (g, seed) => {
        const f = fuse(g);
        const feeds = randomFeeds(g, seed);
        const w = randomWeights(g, seed);
        for (const precision of ['f64', 'f32'] as const) {
          const want = runGraph(g, feeds, w, { precision });
          const got = runGraph(f, feeds, w, { precision });
          const back = runGraph(verify(unfuseEpilogue(f)), feeds, w, { precision });
          for (const o of g.outputs) {
            expect(Array.from(got[o.name].data)).toEqual(Array.from(want[o.name].data));
            expect(Array.from(back[o.name].data)).toEqual(Array.from(want[o.name].data));
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('the LoRA branch add, a residual add and an activation fuse into their linears', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [6, 8]);
    const r = b.input('r', 'f32', [6, 8]);
    const base = b.linear(x, b.param('w', 'f32', [8, 8]), b.param('bias', 'f32', [8]));
    const lora = b.linear(b.linear(x, b.param('a', 'f32', [2, 8])), b.param('bb', 'f32', [8, 2]));
    const y = b.add(b.add(base, b.scale(lora, 0.5)), r);
    const z = b.silu(b.linear(y, b.param('w2', 'f32', [8, 8])));
    const g = b.build({ z });
    const f = fuse(g);
    expect(f.nodes.filter((n) => n.op === 'matmul_map').length).toBe(2);
    const feeds = randomFeeds(g, 1);
    const w = randomWeights(g, 1);
    expect(Array.from(runGraph(f, feeds, w).z.data)).toEqual(Array.from(runGraph(g, feeds, w).z.data));
  });

  for (const [label, opts] of [
    ['direct kernels', { kernels: 'cpu' }],
    ['register kernels', { kernels: 'cpu', softwareMatmul: 'register' }],
    ['GPU kernels (tiled, GEMV)', { kernels: 'gpu' }],
  ] as [string, WebGpuOptions][])
    it(`random graphs on WebGPU (${label}): matmul_map equals the CPU interpreter`, async () => {
      const be = new WebGpuBackend(opts);
      try {
        await be.ready();
      } catch {
        return; // no adapter: the webgpu suites say so
      }
      try {
        await fc.assert(
          fc.asyncProperty(fusing(16), fc.nat(1000), async (g, seed) => {
            const f = fuse(g);
            const feeds = randomFeeds(g, seed);
            const w = randomWeights(g, seed);
            const want = runGraph(g, feeds, w, { precision: 'f32' });
            const exe = await be.compile(f, w);
            const got = await exe.run({ feeds });
            exe.dispose();
            for (const o of g.outputs)
              expect(maxDiff(want[o.name].data, got[o.name].data)).toBeLessThan(1e-4);
          }),
          { numRuns: 10 },
        );
      } finally {
        be.dispose();
      }
    });

  const model = loadModel('examples/models/tiny-llama');
  const run = prepareRun(
    model,
    loadRecipe('examples/recipes/lora-tiny.json'),
    { batch: 2, seq: 16 },
    { seed: 0 },
  );

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the epilogue-fused LoRA training step equals the unfused one: losses and params over 2 steps`, async () => {
      expect(run.step.nodes.some((n) => n.op === 'matmul_map')).toBe(true);
      const plain = unfuseEpilogue(run.step);
      const be = await createBackend(backend);
      try {
        const [a, b] = await Promise.all([be.compile(plain, run.weights), be.compile(run.step, run.weights)]);
        const feeds = stepFeeds(2, 16);
        for (let k = 0; k < 2; k++) {
          const [x, y] = await Promise.all([a.run({ feeds: feeds(k) }), b.run({ feeds: feeds(k) })]);
          if (backend === 'cpu') expect(y.loss.data[0]).toBe(x.loss.data[0]);
          else expect(Math.abs(x.loss.data[0] - y.loss.data[0])).toBeLessThan(1e-5);
        }
        let worst = 0;
        for (const name of run.trainable) {
          const [p, q] = await Promise.all([a.readParam(name), b.readParam(name)]);
          worst = Math.max(worst, maxDiff(p.data, q.data));
        }
        expect(worst).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
        if (backend === 'webgpu') {
          const d = (e: unknown) => (e as WebGpuExecutable).stats.dispatches;
          expect(d(b)).toBeLessThan(d(a));
        }
        a.dispose();
        b.dispose();
      } finally {
        be.dispose();
      }
    });
});
