// The CPU kernel table: one entry per core op (TypeScript checks the coverage),
// plus kernels registered for ops added from outside the core (registerOp).
import type { CoreOpName } from '../../ir/ops/index.ts';
import { dropout } from './dropout.ts';
import * as ew from './elementwise.ts';
import * as grad from './grad.ts';
import type { CpuKernel } from './kernel.ts';
import * as layout from './layout.ts';
import * as linalg from './linalg.ts';
import * as nn from './nn.ts';
import * as reduce from './reduce.ts';
import * as sources from './sources.ts';

export const CORE_KERNELS = {
  input: sources.input,
  param: sources.param,
  const: sources.constant,
  matmul: linalg.matmul,
  linear: linalg.linear,
  ...ew.mathKernels,
  cast: ew.cast,
  dropout,
  sum: reduce.sum,
  mean: reduce.mean,
  max: reduce.max,
  softmax: reduce.softmax,
  log_softmax: reduce.log_softmax,
  rmsnorm: reduce.rmsnorm,
  layernorm: reduce.layernorm,
  cross_entropy: reduce.cross_entropy,
  cross_entropy_grad: reduce.cross_entropy_grad,
  reshape: layout.reshape,
  transpose: layout.transpose,
  permute: layout.permute,
  slice: layout.slice,
  concat: layout.concat,
  roll: layout.roll,
  gather: layout.gather,
  embedding: layout.embedding,
  rope: nn.rope,
  attention: nn.attention,
  attention_softmax: nn.attention_softmax,
  scatter_add: grad.scatter_add,
  one_hot: grad.one_hot,
  broadcast_to: ew.broadcast_to,
  // Identity: a kernel may return its input (inputs are read-only).
  stop_gradient: ([x]) => x,
} satisfies Record<CoreOpName, CpuKernel>;

const kernels = new Map<string, CpuKernel>(Object.entries(CORE_KERNELS));

/** Adds the CPU semantics of an op registered outside the core. Names must be new. */
export function registerCpuKernel(name: string, kernel: CpuKernel): void {
  if (kernels.has(name)) throw new Error(`a CPU kernel for op '${name}' is already registered`);
  kernels.set(name, kernel);
}

export function getCpuKernel(name: string): CpuKernel | undefined {
  return kernels.get(name);
}
