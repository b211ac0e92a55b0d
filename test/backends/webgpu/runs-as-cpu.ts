// Test helper: a graph compiled on WebGPU and on the CPU backend, run side by side a few
// times (params carry over through assigns), every asked output and every param close.
import { expect } from 'vitest';
import type { Executable } from '../../../src/backends/backend.ts';
import { CpuBackend } from '../../../src/backends/cpu/index.ts';
import type { WebGpuBackend } from '../../../src/backends/webgpu/index.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import type { Tensor } from '../../../src/ir/tensor.ts';
import type { WeightStore } from '../../../src/ir/weights.ts';
import { expectClose } from '../../ops/case.ts';

export async function expectRunsAsCpu(
  backend: WebGpuBackend,
  g: Graph,
  weights: WeightStore,
  opts: {
    /** Feeds of run k. */
    readonly feeds: (k: number) => Record<string, Tensor>;
    readonly outputs: readonly string[];
    readonly runs?: number;
    readonly tol: number;
    /** Checked on the compiled WebGPU executable before it runs. */
    readonly check?: (exe: Executable) => void;
  },
): Promise<void> {
  const ref = await new CpuBackend().compile(g, weights);
  const exe = await backend.compile(g, weights);
  try {
    opts.check?.(exe);
    for (let k = 0; k < (opts.runs ?? 3); k++) {
      const feeds = opts.feeds(k);
      const want = await ref.run({ feeds, outputs: [...opts.outputs] });
      const got = await exe.run({ feeds, outputs: [...opts.outputs] });
      for (const o of opts.outputs) expectClose(got[o], want[o], opts.tol, `output ${o} (run ${k})`);
    }
    for (const p of g.params()) {
      const name = String(p.attrs.name);
      expectClose(await exe.readParam(name), await ref.readParam(name), opts.tol, `param ${name}`);
    }
  } finally {
    exe.dispose();
    ref.dispose();
  }
  expect(true).toBe(true);
}
