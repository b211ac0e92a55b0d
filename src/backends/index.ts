// Backend selection by name: `--backend webgpu|cpu` (default webgpu) ends up here.
import type { Backend, BackendName } from './backend.ts';
import { CpuBackend } from './cpu/index.ts';
import type { Precision } from './cpu/kernel.ts';
import { WebGpuBackend, type WebGpuOptions } from './webgpu/index.ts';
import type { PagingOptions } from './webgpu/paging.ts';

export interface BackendOptions {
  /** WebGPU adapter choice (backend, adapter name, feature level); env vars fill what is left out. */
  readonly webgpu?: WebGpuOptions & { readonly paging?: PagingOptions };
  /** CPU precision ('f32' default, 'f64' for the oracle). */
  readonly precision?: Precision;
}

export const BACKENDS: readonly BackendName[] = ['webgpu', 'cpu'];

/**
 * A backend by name. The WebGPU one acquires its device here, so a missing adapter
 * fails now with the remedy (NoAdapterError), not at the first compile.
 */
export async function createBackend(name: BackendName, opts: BackendOptions = {}): Promise<Backend> {
  switch (name) {
    case 'cpu':
      return new CpuBackend({ precision: opts.precision });
    case 'webgpu': {
      const b = new WebGpuBackend(opts.webgpu);
      await b.ready();
      return b;
    }
    default:
      throw new Error(`unknown backend '${name as string}' (choose one of: ${BACKENDS.join(', ')})`);
  }
}

export type { Backend, BackendName, Executable, RunRequest } from './backend.ts';
export { ASSIGN_PREFIX } from './backend.ts';
