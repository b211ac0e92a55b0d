// The kernel table: one WGSL lowering per op, keyed by op name. TypeScript checks
// that it covers every core op; ops added from outside the core register theirs.
import type { CoreOpName } from '../../../ir/ops/index.ts';
import type { Kernel } from '../program.ts';
import { elementwiseKernels } from './elementwise.ts';
import { gradKernels } from './grad.ts';
import { layoutKernels } from './layout.ts';
import { matmulKernels } from './matmul.ts';
import { nnKernels } from './nn.ts';
import { reduceKernels } from './reduce.ts';

const source: Kernel = () => 'source';

export const CORE_KERNELS = {
  input: source,
  param: source,
  const: source,
  ...matmulKernels,
  ...elementwiseKernels,
  ...reduceKernels,
  ...layoutKernels,
  ...nnKernels,
  ...gradKernels,
} satisfies Record<CoreOpName, Kernel>;

const extra = new Map<string, Kernel>();

/**
 * Adds the lowering of an op registered outside the core (with ir/ops `registerOp`);
 * like the op registry it is process-wide, and names must be new.
 */
export function registerKernel(op: string, kernel: Kernel): Kernel {
  if (op in CORE_KERNELS || extra.has(op))
    throw new Error(`a WebGPU kernel for op '${op}' is already registered`);
  extra.set(op, kernel);
  return kernel;
}

export function getKernel(op: string): Kernel | undefined {
  return (CORE_KERNELS as Record<string, Kernel>)[op] ?? extra.get(op);
}
