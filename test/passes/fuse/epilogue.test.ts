// fuse-epilogue: matmul/linear outputs mapped through their elementwise reader in the
// matmul's store (matmul_map) compute what the unfused graphs do: on random graphs (CPU bit
// for bit, WebGPU against the CPU with each matmul kernel family) and on the real LoRA
// training step (loss and every updated param, both backends), with fewer dispatches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { WebGpuBackend, type WebGpuOptions } from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { verify } from '../../../src/ir/verify.ts';
import { fuseElementwise } from '../../../src/passes/fuse/elementwise.ts';
import { fuseEpilogue, unfuseEpilogue } from '../../../src/passes/fuse/matmul-map.ts';
import { arbGraph, randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { bundledLoraRun, compareSteps, expectSameOnCpu, maxDiff } from './same.ts';

const fuse = (g: Parameters<typeof fuseElementwise>[0]) => verify(fuseEpilogue(fuseElementwise(g)));

/** Random graphs in which something fuses (a few percent of arbGraph's). */
const fusing = (maxNodes: number) =>
  arbGraph({ maxNodes, floatOnly: true }).filter((g) => fuse(g).nodes.some((n) => n.op === 'matmul_map'));

describe('fuse-epilogue', () => {
  it('random graphs: the fused graph gives the unfused outputs bit for bit (CPU, f64 and f32)', () => {
    fc.assert(
      fc.property(fusing(24), fc.nat(1000), (g, seed) => {
        const f = fuse(g);
        expectSameOnCpu(g, f, verify(unfuseEpilogue(f)), seed);
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

  it('reads per-column and one-value operands (a per-feature scale), on the CPU and WebGPU', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [5, 6]);
    const lin = b.linear(x, b.param('w', 'f32', [7, 6]));
    const y = b.mul(b.add(lin, b.param('s', 'f32', [1])), b.param('col', 'f32', [1, 7]));
    const g = b.build({ y });
    const f = fuse(g);
    expect(f.nodes.filter((n) => n.op === 'matmul_map').length).toBe(1);
    const feeds = randomFeeds(g, 3);
    const w = randomWeights(g, 3);
    const want = runGraph(g, feeds, w).y.data;
    expect(Array.from(runGraph(f, feeds, w).y.data)).toEqual(Array.from(want));
    for (const opts of [{ kernels: 'cpu' }, { kernels: 'gpu' }] as WebGpuOptions[]) {
      const be = new WebGpuBackend(opts);
      const exe = await be.compile(f, w);
      expect(maxDiff(want, (await exe.run({ feeds })).y.data)).toBeLessThan(1e-5);
      exe.dispose();
      be.dispose();
    }
  });

  it('looks through reshapes read only by the next (a view keeps the flat index)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 3, 4]);
    const r = b.input('r', 'f32', [6, 5]);
    const y = b.add(b.reshape(b.matmul(x, b.param('w', 'f32', [4, 5])), [6, 5]), r);
    const g = b.build({ y });
    const f = fuse(g);
    expect(f.nodes.filter((n) => n.op === 'matmul_map').length).toBe(1);
    expect(f.nodes.some((n) => n.op === 'reshape')).toBe(false);
    const feeds = randomFeeds(g, 2);
    const w = randomWeights(g, 2);
    expect(Array.from(runGraph(f, feeds, w).y.data)).toEqual(Array.from(runGraph(g, feeds, w).y.data));
    expect(Array.from(runGraph(verify(unfuseEpilogue(f)), feeds, w).y.data)).toEqual(
      Array.from(runGraph(g, feeds, w).y.data),
    );
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
          { numRuns: 5 },
        );
      } finally {
        be.dispose();
      }
    });

  const run = bundledLoraRun();

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the epilogue-fused LoRA training step equals the unfused one: losses and params over 2 steps`, async () => {
      expect(run.step.nodes.some((n) => n.op === 'matmul_map')).toBe(true);
      const plain = unfuseEpilogue(run.step);
      const r = await compareSteps(backend, plain, run.step, run, 2, 16);
      // CPU: the same kernels step by step, so the same numbers.
      expect(r.loss).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
      expect(r.params).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
      if (r.dispatches) expect(r.dispatches[1]).toBeLessThan(r.dispatches[0]);
    });
});
