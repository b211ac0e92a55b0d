// The CPU reference interpreter: the executable specification of every op.
export { CpuBackend, CpuExecutable } from './backend.ts';
export { dropoutKeep } from './dropout.ts';
export { CpuRunError, type RunOptions, runGraph } from './interpreter.ts';
export type { CpuKernel, KernelContext, Precision } from './kernel.ts';
export { attrsOf, empty } from './kernel.ts';
export { CORE_KERNELS, getCpuKernel, registerCpuKernel } from './kernels.ts';
export { erf } from './math.ts';
