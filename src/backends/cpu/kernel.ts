// What a CPU kernel is: a pure function from input tensors (and the node, for its
// attrs and type) to one output tensor. Kernels never write into their inputs;
// a result may share data with an input (reshape), so tensors are read-only.
import type { DType } from '../../ir/dtype.ts';
import { isFloat } from '../../ir/dtype.ts';
import type { Node } from '../../ir/graph.ts';
import { numel, type Shape } from '../../ir/shape.ts';
import { allocFor, type Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';

/** 'f32' rounds every float result to f32 (as a GPU would); 'f64' keeps every float value in f64. */
export type Precision = 'f32' | 'f64';

export interface KernelContext {
  readonly node: Node;
  readonly precision: Precision;
  /** Runtime inputs by name (read by the `input` kernel). */
  readonly feeds: Readonly<Record<string, Tensor>>;
  /** Parameters by name (read by the `param` kernel). */
  readonly weights: WeightStore;
}

export type CpuKernel = (inputs: readonly Tensor[], ctx: KernelContext) => Tensor;

/** A zeroed tensor for a result: floats in the run's precision, integers in their own array type. */
export function empty(ctx: { precision: Precision }, dtype: DType, shape: Shape): Tensor {
  const n = numel(shape);
  const data = isFloat(dtype) && ctx.precision === 'f64' ? new Float64Array(n) : allocFor(dtype, n);
  return { dtype, shape: [...shape], data };
}

/** The node's attrs, typed by the caller (the op table's schema has already checked them). */
export function attrsOf<A>(ctx: KernelContext): A {
  return ctx.node.attrs as unknown as A;
}
