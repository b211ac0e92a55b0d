// Elementwise ops with attrs or kernels of their own: gelu, scale, where, cast, dropout.
// The math ops (unary, broadcasting binary, comparisons) are in math.ts, every aspect at once.
import { z } from 'zod';
import { DTYPES, isFloat } from '../dtype.ts';
import type { TensorType } from '../graph.ts';
import { broadcastShapes, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

const none = z.strictObject({});

function sameDtype(op: string, ts: readonly TensorType[]): void {
  for (const t of ts) {
    if (t.dtype !== ts[0].dtype) {
      throw new ShapeError(`${op} needs inputs of one dtype, got ${ts.map((x) => x.dtype).join(' and ')}`);
    }
  }
}

export const gelu = defineOp({
  name: 'gelu',
  arity: 1,
  attrs: z.strictObject({ approximate: z.enum(['none', 'tanh']).default('none') }),
  infer: ([a]) => a,
  doc: "GELU, exact (erf) or PyTorch's tanh approximation",
});

export const scale = defineOp({
  name: 'scale',
  arity: 1,
  attrs: z.strictObject({ factor: z.number() }),
  infer: ([a]) => a,
  doc: 'x * factor (a compile-time scalar, e.g. the LoRA scaling alpha / r)',
});

export const where = defineOp({
  name: 'where',
  arity: 3,
  attrs: none,
  infer: ([c, a, b]) => {
    sameDtype('where', [a, b]);
    return { dtype: a.dtype, shape: broadcastShapes(broadcastShapes(c.shape, a.shape), b.shape) };
  },
  doc: 'cond != 0 ? a : b, broadcasting all three',
});

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
