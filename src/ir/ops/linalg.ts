// Matrix products. `linear` stays whole (HF nn.Linear) so method passes can match it.
import { z } from 'zod';
import { isFloat } from '../dtype.ts';
import { broadcastShapes, formatShape, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

export const matmul = defineOp({
  name: 'matmul',
  arity: 2,
  attrs: z.strictObject({
    transpose_a: z.boolean().default(false),
    transpose_b: z.boolean().default(false),
  }),
  infer: ([a, b], { transpose_a, transpose_b }) => {
    if (a.shape.length < 2 || b.shape.length < 2) {
      throw new ShapeError(
        `matmul needs rank >= 2 inputs, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`,
      );
    }
    if (a.dtype !== b.dtype) throw new ShapeError(`matmul inputs differ in dtype: ${a.dtype} vs ${b.dtype}`);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const [m, k] = transpose_a ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
    const [k2, n] = transpose_b ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
    if (k !== k2) {
      throw new ShapeError(
        `matmul inner sizes differ: ${formatShape(a.shape)}${transpose_a ? 'ᵀ' : ''} x ${formatShape(b.shape)}${transpose_b ? 'ᵀ' : ''} (${k} vs ${k2})`,
      );
    }
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return { dtype: a.dtype, shape: [...batch, m, n] };
  },
  doc: 'batched a @ b over the last two axes, with optional transposes; batch axes broadcast',
});

export const linear = defineOp({
  name: 'linear',
  arity: [2, 3],
  attrs: z.strictObject({}),
  infer: ([x, w, b]) => {
    if (w.shape.length !== 2)
      throw new ShapeError(`linear weight must be [out, in], got ${formatShape(w.shape)}`);
    if (!isFloat(x.dtype) || !isFloat(w.dtype)) throw new ShapeError('linear needs float input and weight');
    const [out, inF] = w.shape;
    const last = x.shape[x.shape.length - 1];
    if (x.shape.length === 0 || last !== inF) {
      throw new ShapeError(
        `linear input ${formatShape(x.shape)} does not end in in_features=${inF} (weight [${out},${inF}])`,
      );
    }
    if (b && (b.shape.length !== 1 || b.shape[0] !== out)) {
      throw new ShapeError(`linear bias must be [${out}], got ${formatShape(b.shape)}`);
    }
    return { dtype: x.dtype, shape: [...x.shape.slice(0, -1), out] };
  },
  doc: 'y = x W^T + b with W [out, in] (torch.nn.Linear)',
});
