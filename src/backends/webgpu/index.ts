// The WebGPU backend (Dawn in Node): runtime, kernels, executor.
export {
  acquireDevice,
  type DawnBackend,
  type FeatureLevel,
  type GpuContext,
  lavapipeThreads,
  NoAdapterError,
  resolveOptions,
  WebGpuError,
  type WebGpuOptions,
} from './device.ts';
export { type TimedResult, WebGpuBackend, WebGpuExecutable } from './executor.ts';
export {
  type MapMember,
  type ReduceMember,
  registerMapMember,
  registerReduceMember,
} from './kernel-groups.ts';
export { BINARY, MATH, TERNARY, UNARY } from './kernels/elementwise.ts';
export { CORE_KERNELS, getKernel, registerKernel } from './kernels/index.ts';
export { broadcastIndex, broadcastKind, type MapSpec, mapKernel } from './kernels/map.ts';
export { linearProblem, matmulProblem, planMatmul, variantFor } from './kernels/matmul.ts';
export type {
  EpilogueRead,
  MatmulDropoutMask,
  MatmulEpilogue,
  MatmulOperandMap,
} from './kernels/matmul-parts.ts';
export { type ReducePrologue, reduction } from './kernels/reduce.ts';
export {
  type ElementwiseStep,
  progDesc,
  programShape,
  programWgsl,
  stepsMember,
  stepsWgsl,
  trailingRows,
} from './kernels/steps.ts';
export {
  canonicalKey,
  entry,
  foldDispatch,
  type Kernel,
  type KernelContext,
  type KernelPlan,
  type ProgramDesc,
  type SoftwareMatmul,
  type Step,
  Uniforms,
} from './program.ts';
