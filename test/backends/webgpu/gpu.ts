// Test helper: one WebGPU backend per test file. With no adapter, CI fails loudly with
// the reason; elsewhere the WebGPU tests are skipped with the reason printed.
import { afterAll, describe } from 'vitest';
import { NoAdapterError, WebGpuBackend, type WebGpuOptions } from '../../../src/backends/webgpu/index.ts';

export interface GpuFixture {
  readonly backend: WebGpuBackend;
}

async function probe(opts: WebGpuOptions): Promise<WebGpuBackend | string> {
  const backend = new WebGpuBackend(opts);
  try {
    await backend.ready();
    return backend;
  } catch (e) {
    if (!(e instanceof NoAdapterError)) throw e;
    if (process.env.CI) throw new Error(`WebGPU tests need an adapter in CI: ${e.message}`);
    return e.message;
  }
}

/**
 * `describe` over a live backend (disposed after the file), or a skipped `describe`
 * that says why when no adapter exists outside CI.
 */
export async function gpuSuite(
  name: string,
  body: (gpu: GpuFixture) => void,
  opts: WebGpuOptions = {},
): Promise<void> {
  const b = await probe(opts);
  if (typeof b === 'string') {
    console.warn(`[webgpu tests skipped] ${name}: ${b}`);
    describe.skip(name, () => body({ backend: undefined as unknown as WebGpuBackend }));
    return;
  }
  afterAll(() => b.dispose());
  describe(name, () => body({ backend: b }));
}
