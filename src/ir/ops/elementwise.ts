// Elementwise ops with kernels of their own: cast, dropout. The math ops (unary,
// broadcasting binary and ternary, comparisons, gelu, scale, where) are in math.ts, every
// aspect at once.
import { z } from 'zod';
import { DTYPES, isFloat } from '../dtype.ts';
import { ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

export const cast = defineOp({
  name: 'cast',
  arity: 1,
  attrs: z.strictObject({ dtype: z.enum(DTYPES) }),
  infer: ([a], { dtype }) => {
    if (dtype === 'u4' || a.dtype === 'u4')
      throw new ShapeError('cast to or from packed u4 is not defined; use a dequantize op');
    return { dtype, shape: a.shape };
  },
  doc: 'convert element type (float -> int truncates toward zero, as PyTorch)',
});

export const dropout = defineOp({
  name: 'dropout',
  arity: [1, 2],
  attrs: z.strictObject({ p: z.number().min(0).lt(1), seed: z.number().int().nonnegative() }),
  infer: ([a, step]) => {
    if (!isFloat(a.dtype)) throw new ShapeError(`dropout needs a float input, got ${a.dtype}`);
    if (step && (step.shape.length !== 0 || (step.dtype !== 'u32' && step.dtype !== 'i32'))) {
      throw new ShapeError('dropout step input must be a u32/i32 scalar');
    }
    return a;
  },
  doc: 'inverted dropout with a counter-based hash mask of (seed, optional step input, element index)',
});
