// `peftc export --format webgpu-ts`: a standalone TypeScript package (ts-morph) with the WGSL
// kernels of the compiled inference graph, its plans and weights, and a typed runner.
import type { ExportFormat } from '../format.ts';

export const webgpuTs: ExportFormat = {
  name: 'webgpu-ts',
  summary: 'a standalone TypeScript package: WGSL kernels, plans, weights, typed runner (webgpu)',
  output: 'dir',
  flags: ['adapter', 'merge', 'quant'],
  run: async (o) => (await import('./export.ts')).runWebgpuTs(o),
};
