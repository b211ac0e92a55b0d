// Audit (issue 4, "Must show"):
// - with CI set and no adapter, the WebGPU test helper fails loudly instead of skipping;
// - a tensor over the binding limit is a clear error on whatever adapter runs the tests
//   (runtime.test.ts uses a fixed 160 MiB, which only exceeds lavapipe's 128 MiB; a GPU
//   adapter binds far more, so here the size comes from the device's own limits).
import { afterEach, expect, it } from 'vitest';
import { WebGpuError } from '../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';

const savedCi = process.env.CI;
afterEach(() => {
  if (savedCi === undefined) delete process.env.CI;
  else process.env.CI = savedCi;
});

it('in CI, the WebGPU suites fail loudly when there is no adapter (never skip)', async () => {
  process.env.CI = 'true';
  // A Dawn backend this platform lacks: no adapter at all (a wrong adapter name on a
  // backend that has one lists the adapters instead of the install help).
  const err = await gpuSuite('never runs', () => {}, {
    backend: process.platform === 'darwin' ? 'd3d12' : 'metal',
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(/WebGPU tests need an adapter in CI: .*npm run setup/);
});

await gpuSuite('webgpu limits (audit)', ({ backend }) => {
  it("a tensor one element over this adapter's binding limit is refused before allocation, naming it", async () => {
    const gpu = await backend.ready();
    const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    const rows = Math.ceil((Math.floor(limit / 4) + 1) / 1024);
    const b = new GraphBuilder();
    const x = b.input('too_big', 'f32', [rows, 1024]);
    const g = b.build({ y: b.scale(x, 2) });
    const err = await backend.compile(g, new MapWeightStore()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebGpuError);
    expect((err as Error).message).toMatch(
      new RegExp(`too_big.*f32\\[${rows},1024\\].*binds at most .*maxStorageBufferBindingSize`),
    );
  });
});
