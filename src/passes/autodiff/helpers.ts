// Small building blocks the VJP rules share.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { DType } from '../../ir/dtype.ts';
import { oneMinus, scalarLike } from '../../ir/ops/math.ts';
import { reducedShape } from '../../ir/ops/reduce.ts';
import { type Shape, sameShape } from '../../ir/shape.ts';

/** Reshape only when the shape differs, so the graph stays small. */
export function reshapeTo(b: GraphBuilder, x: Value, shape: Shape): Value {
  return sameShape(x.type.shape, shape) ? x : b.reshape(x, [...shape]);
}

/**
 * The transpose of NumPy broadcasting: sums a cotangent of the broadcast shape over the
 * axes that broadcasting added or stretched, then reshapes to the input's shape.
 */
export function unbroadcast(b: GraphBuilder, g: Value, shape: Shape): Value {
  const gs = g.type.shape;
  if (sameShape(gs, shape)) return g;
  const lead = gs.length - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < gs.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && gs[i] !== 1)) axes.push(i);
  }
  const summed = axes.length ? b.sum(g, axes, false) : g;
  return reshapeTo(b, summed, shape);
}

/** A reduction's cotangent brought back to the input's shape (keepdims, then broadcast). */
export function expandReduced(
  b: GraphBuilder,
  g: Value,
  inShape: Shape,
  axes: readonly number[],
  keepdims: boolean,
): Value {
  const kept = keepdims ? g : reshapeTo(b, g, reducedShape(inShape, axes, true));
  return sameShape(kept.type.shape, inShape) ? kept : b.broadcastTo(kept, [...inShape]);
}

/** Cast only when the dtype differs. */
export function castTo(b: GraphBuilder, x: Value, dtype: DType): Value {
  return x.type.dtype === dtype ? x : b.cast(x, dtype);
}

export { oneMinus, scalarLike };
