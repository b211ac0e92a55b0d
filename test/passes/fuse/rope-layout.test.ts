// fuse-rope-layout: the transposes around rope (attention's head layout) fold into rope's
// layout_in / layout_out. Random shapes: the folded graph gives the original's outputs bit
// for bit on the CPU and within rounding on WebGPU; a transpose read elsewhere, or a rope
// that is an output, stays; the bundled training step loses its q/k transposes and keeps
// its losses and params.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { verify } from '../../../src/ir/verify.ts';
import { fuseRopeLayout } from '../../../src/passes/fuse/rope-layout.ts';
import { runPipeline } from '../../../src/passes/index.ts';
import { runPipelines } from '../../../src/train/setup.ts';
import { randomWeights } from '../../arbitrary/graphs.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';
import { bundledLoraRun, compareSteps, expectSameOnCpu, maxDiff } from './same.ts';

/** Folds in (x bshd), out (z bhsd), both (w bshd), and one refused (u: its transpose is also an output). */
function ropeGraph(b: number, s: number, h: number, d: number, perBatch: boolean): Graph {
  const g = new GraphBuilder();
  const positions = Array.from({ length: perBatch ? b * s : s }, (_, i) => (i * 7) % 50);
  const pos = g.const(positions, perBatch ? [b, s] : [s], 'i32');
  const bshd = (name: string) => g.param(name, 'f32', [b, s, h, d]);
  const swap = (v: ReturnType<GraphBuilder['param']>) => g.transpose(v, 1, 2);
  const folded = g.rope(swap(bshd('x')), pos);
  const out = swap(g.rope(g.param('z', 'f32', [b, h, s, d]), pos, { inverse: true }));
  const both = swap(g.rope(swap(bshd('w')), pos, { theta: 500 }));
  const kept = swap(bshd('u'));
  return g.build({ folded: g.scale(folded, 2), out, both, kept, ropeOfKept: g.rope(kept, pos) });
}

const dims = fc.record({
  b: fc.integer({ min: 1, max: 2 }),
  s: fc.integer({ min: 1, max: 5 }),
  h: fc.integer({ min: 1, max: 3 }),
  half: fc.integer({ min: 1, max: 3 }),
  perBatch: fc.boolean(),
});

const count = (g: Graph, op: string) => g.nodes.filter((n) => n.op === op).length;

describe('fuse-rope-layout', () => {
  it('random shapes: the folded graph gives the same outputs bit for bit (CPU, f64 and f32)', () => {
    fc.assert(
      fc.property(dims, fc.nat(1000), ({ b, s, h, half, perBatch }, seed) => {
        const g = ropeGraph(b, s, h, 2 * half, perBatch);
        const f = verify(fuseRopeLayout(g));
        // Five transposes before (x, z's rope, w twice, u); u's stays.
        expect(count(g, 'transpose')).toBe(5);
        expect(count(f, 'transpose')).toBe(1);
        const layouts = f.nodes
          .filter((n) => n.op === 'rope')
          .map((n) => `${n.attrs.layout_in}>${n.attrs.layout_out}`);
        expect(layouts.sort()).toEqual(['bhsd>bhsd', 'bhsd>bshd', 'bshd>bhsd', 'bshd>bshd']);
        expectSameOnCpu(g, f, g, seed);
      }),
      { numRuns: 25 },
    );
  });

  it('leaves a graph without foldable transposes as it is', () => {
    const g = new GraphBuilder();
    const x = g.param('x', 'f32', [1, 2, 3, 4]);
    const r = g.rope(x, g.const([0, 1, 2], [3], 'i32'));
    const graph = g.build({ r, t: g.transpose(r, 1, 2) });
    // The rope is an output: its transpose cannot take it over.
    expect(fuseRopeLayout(graph)).toBe(graph);
  });

  const run = bundledLoraRun();
  const without = runPipeline(
    run.adapted,
    runPipelines(run.recipe).train.filter((p) => p.name !== 'fuse-rope-layout'),
    { log: () => {} },
  ).graph;

  it("the bundled step: q's and k's transposes (forward and backward, 2 layers) fold into the ropes", () => {
    expect(count(without, 'transpose') - count(run.step, 'transpose')).toBe(8);
    expect(count(run.step, 'rope')).toBe(count(without, 'rope'));
  });

  for (const backend of ['cpu', 'webgpu'] as const)
    it(`${backend}: the step with folded layouts equals the step without: losses and params over 2 steps`, async () => {
      const r = await compareSteps(backend, without, run.step, run, 2, 16);
      expect(r.loss).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
      expect(r.params).toBeLessThanOrEqual(backend === 'cpu' ? 0 : 1e-5);
    });
});

await gpuSuite('fuse-rope-layout on WebGPU', ({ backend }) => {
  it('random shapes: the folded graph equals the CPU interpreter', async () => {
    await fc.assert(
      fc.asyncProperty(dims, fc.nat(1000), async ({ b, s, h, half, perBatch }, seed) => {
        const g = ropeGraph(b, s, h, 2 * half, perBatch);
        const w = randomWeights(g, seed);
        const want = runGraph(g, {}, w, { precision: 'f32' });
        const exe = await backend.compile(verify(fuseRopeLayout(g)), w);
        try {
          const got = await exe.run({ feeds: {} });
          for (const o of g.outputs) expect(maxDiff(want[o.name].data, got[o.name].data)).toBeLessThan(1e-5);
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 4 },
    );
  });
});
