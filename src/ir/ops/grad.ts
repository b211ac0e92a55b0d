// Ops that reverse-mode autodiff needs besides the forward ones: scatter_add (the
// transpose of gather/embedding), one_hot, and broadcast_to (the transpose of a sum).
// The comparisons and sign the VJPs use as masks are math ops (math.ts).
import { z } from 'zod';

import { broadcastShapes, formatShape, normAxis, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

export const scatter_add = defineOp({
  name: 'scatter_add',
  arity: 2,
  attrs: z.strictObject({ axis: z.number().int(), size: z.number().int().nonnegative() }),
  infer: ([upd, idx], { axis, size }) => {
    if (idx.dtype !== 'i32' && idx.dtype !== 'u32')
      throw new ShapeError(`scatter_add indices must be i32/u32, got ${idx.dtype}`);
    const r = upd.shape.length - idx.shape.length + 1;
    const ax = normAxis(axis, Math.max(r, 1));
    const mid = upd.shape.slice(ax, ax + idx.shape.length);
    if (mid.length !== idx.shape.length || mid.some((d, i) => d !== idx.shape[i])) {
      throw new ShapeError(
        `scatter_add updates ${formatShape(upd.shape)} do not hold indices ${formatShape(idx.shape)} at axis ${axis}`,
      );
    }
    return {
      dtype: upd.dtype,
      shape: [...upd.shape.slice(0, ax), size, ...upd.shape.slice(ax + idx.shape.length)],
    };
  },
  doc: 'the transpose of gather: out (zeros, axis of length size) += updates at each index; repeated indices accumulate',
});

export const one_hot = defineOp({
  name: 'one_hot',
  arity: 1,
  attrs: z.strictObject({ depth: z.number().int().positive(), dtype: z.enum(['f32', 'f16']).default('f32') }),
  infer: ([ids], { depth, dtype }) => {
    if (ids.dtype !== 'i32' && ids.dtype !== 'u32')
      throw new ShapeError(`one_hot ids must be i32/u32, got ${ids.dtype}`);
    return { dtype, shape: [...ids.shape, depth] };
  },
  doc: 'out[..., j] = (ids[...] == j); ids out of [0, depth) give an all-zero row',
});

export const broadcast_to = defineOp({
  name: 'broadcast_to',
  arity: 1,
  attrs: z.strictObject({ shape: z.array(z.number().int().nonnegative()) }),
  infer: ([a], { shape }) => {
    const b = broadcastShapes(a.shape, shape);
    if (b.length !== shape.length || b.some((d, i) => d !== shape[i])) {
      throw new ShapeError(`cannot broadcast ${formatShape(a.shape)} to ${formatShape(shape)}`);
    }
    return { dtype: a.dtype, shape: [...shape] };
  },
  doc: 'NumPy broadcast to a target shape',
});

export const stop_gradient = defineOp({
  name: 'stop_gradient',
  arity: 1,
  attrs: z.strictObject({}),
  infer: ([x]) => x,
  doc: 'identity forward; autodiff passes no gradient through it (a detached value, e.g. DoRA row norms)',
});
