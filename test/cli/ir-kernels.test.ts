// `peftc ir --kernels` plans without a device; this checks the plan against what the
// WebGPU backend really schedules when it compiles the same graph (same nodes, same
// pipeline cache keys, same order), for an eval graph and a train-step graph.

import { join } from 'node:path';
import { expect, it } from 'vitest';
import { listKernels } from '../../src/backends/webgpu/kernel-list.ts';
import { loadRecipe } from '../../src/methods/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';

const R = join(import.meta.dirname, '..', '..', 'examples', 'recipes', 'qlora-tiny.json');

await gpuSuite('ir --kernels matches the schedule', ({ backend }) => {
  it('lists the dispatches the backend makes of the eval and train graphs', async () => {
    const run = prepareRun(loadModel('tiny'), loadRecipe(R), { batch: 1, seq: 8 }, { seed: 0 });
    const gpu = await backend.ready();
    for (const graph of [run.forward, run.step]) {
      const planned = listKernels(graph, {
        f16: gpu.f16,
        software: gpu.software,
        storageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      });
      const exe = await backend.compile(graph, run.weights);
      try {
        const real = exe.dispatches.map((d) => `%${d.node.id} ${d.key}`);
        expect(planned.dispatches.map((d) => `%${d.node.id} ${d.key}`)).toEqual(real);
        expect(planned.pipelines).toBe(new Set(real.map((k) => k.split(' ')[1])).size);
      } finally {
        exe.dispose();
      }
    }
  }, 60_000);
});
