// The shape of one row of the op table. Each row gives the attrs schema (zod) and
// the shape/dtype rule. The math ops carry their CPU function, WGSL expression and
// derivative too (math.ts); the other ops' CPU kernels, VJPs and WGSL lowerings live in
// backends/cpu, passes/autodiff and backends/webgpu, keyed by the same op name (README.md).
import type { z } from 'zod';
import type { Attrs, TensorType } from '../graph.ts';

export interface OpDef<A extends Attrs = Attrs> {
  readonly name: string;
  /** Exact input count, or [min, max] (max = Infinity for variadic ops). */
  readonly arity: number | readonly [number, number];
  readonly attrs: z.ZodType<A>;
  /** Result type from input types and attrs; throws ShapeError with a reason on bad input. */
  readonly infer: (inputs: readonly TensorType[], attrs: A) => TensorType;
  readonly doc: string;
}

export function defineOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  return def;
}
