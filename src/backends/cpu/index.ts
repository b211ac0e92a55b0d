// The CPU reference interpreter: the executable specification of every op.

export { erf } from '../../ir/ops/scalar.ts';
export { CpuBackend, CpuExecutable } from './backend.ts';
export { dropoutKeep } from './dropout.ts';
export { CpuRunError, type RunOptions, runGraph } from './interpreter.ts';
export type { CpuKernel, KernelContext, Precision } from './kernel.ts';
export { attrsOf, empty } from './kernel.ts';
export { CORE_KERNELS, getCpuKernel, registerCpuKernel } from './kernels.ts';
