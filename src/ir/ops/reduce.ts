// Reductions and normalisations over axes.
import { z } from 'zod';
import { isFloat } from '../dtype.ts';
import type { TensorType } from '../graph.ts';
import { normAxes, normAxis, ShapeError, sameShape } from '../shape.ts';
import { defineOp } from './def.ts';

const reduceAttrs = z.strictObject({ axes: z.array(z.number().int()), keepdims: z.boolean().default(false) });

export function reducedShape(shape: readonly number[], axes: readonly number[], keepdims: boolean): number[] {
  const ax = normAxes(axes, shape.length);
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!ax.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

function reduction(name: string, doc: string) {
  return defineOp({
    name,
    arity: 1,
    attrs: reduceAttrs,
    infer: ([a], { axes, keepdims }) => ({ dtype: a.dtype, shape: reducedShape(a.shape, axes, keepdims) }),
    doc,
  });
}

export const sum = reduction('sum', 'sum over axes');
export const mean = reduction('mean', 'mean over axes');
export const max = reduction('max', 'max over axes');

function softmaxLike(name: string, doc: string) {
  return defineOp({
    name,
    arity: 1,
    attrs: z.strictObject({ axis: z.number().int().default(-1) }),
    infer: ([a], { axis }) => {
      normAxis(axis, a.shape.length);
      if (!isFloat(a.dtype)) throw new ShapeError(`${name} needs a float input`);
      return a;
    },
    doc,
  });
}

export const softmax = softmaxLike('softmax', 'numerically stable softmax along an axis');
export const log_softmax = softmaxLike('log_softmax', 'log(softmax(x)) along an axis, computed stably');

function checkNormWeight(name: string, x: TensorType, w: TensorType | undefined, what: string): void {
  const last = x.shape[x.shape.length - 1];
  if (x.shape.length === 0) throw new ShapeError(`${name} needs an input of rank >= 1`);
  if (w && !sameShape(w.shape, [last])) {
    throw new ShapeError(
      `${name} ${what} must have shape [${last}] (the last axis of x), got [${w.shape.join(',')}]`,
    );
  }
}

export const rmsnorm = defineOp({
  name: 'rmsnorm',
  arity: 2,
  attrs: z.strictObject({ eps: z.number().positive() }),
  infer: ([x, w]) => {
    checkNormWeight('rmsnorm', x, w, 'weight');
    return x;
  },
  doc: 'x * rsqrt(mean(x^2, last axis) + eps) * weight (LlamaRMSNorm, computed in f32)',
});

export const layernorm = defineOp({
  name: 'layernorm',
  arity: [2, 3],
  attrs: z.strictObject({ eps: z.number().positive() }),
  infer: ([x, w, b]) => {
    checkNormWeight('layernorm', x, w, 'weight');
    checkNormWeight('layernorm', x, b, 'bias');
    return x;
  },
  doc: '(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance, as PyTorch)',
});

/** cross_entropy's attrs, which its gradient op takes as they are (autodiff copies them over). */
const crossEntropyAttrs = z.strictObject({
  ignore_index: z.number().int().default(-100),
  reduction: z.enum(['mean', 'sum', 'none']).default('mean'),
});

export const cross_entropy = defineOp({
  name: 'cross_entropy',
  arity: 2,
  attrs: crossEntropyAttrs,
  infer: ([logits, labels], { reduction }) => {
    if (logits.shape.length !== 2)
      throw new ShapeError(`cross_entropy logits must be [N, V], got [${logits.shape}]`);
    if (labels.dtype !== 'i32') throw new ShapeError(`cross_entropy labels must be i32, got ${labels.dtype}`);
    if (!sameShape(labels.shape, [logits.shape[0]])) {
      throw new ShapeError(`cross_entropy labels must be [${logits.shape[0]}], got [${labels.shape}]`);
    }
    return { dtype: logits.dtype, shape: reduction === 'none' ? [logits.shape[0]] : [] };
  },
  doc: 'softmax cross-entropy; labels equal to ignore_index count for nothing; mean over the counted rows',
});

/**
 * cross_entropy's gradient with respect to its logits, one op (autodiff's rule emits it):
 * row i is (softmax(logits_i) - one_hot(label_i)) * g_i where label_i counts (is not
 * ignore_index; a label outside [0, V) has no hot entry), 0 where it does not; g_i is the
 * cotangent `cot` (reduction 'sum'), cot / max(counted rows, 1) ('mean') or cot[i] ('none').
 */
export const cross_entropy_grad = defineOp({
  name: 'cross_entropy_grad',
  arity: 3,
  attrs: crossEntropyAttrs,
  infer: ([logits, labels, cot], { reduction }) => {
    if (logits.shape.length !== 2)
      throw new ShapeError(`cross_entropy_grad logits must be [N, V], got [${logits.shape}]`);
    const n = logits.shape[0];
    if (labels.dtype !== 'i32' || !sameShape(labels.shape, [n]))
      throw new ShapeError(
        `cross_entropy_grad labels must be i32 [${n}], got ${labels.dtype} [${labels.shape}]`,
      );
    const want = reduction === 'none' ? [n] : [];
    if (cot.dtype !== logits.dtype || !sameShape(cot.shape, want))
      throw new ShapeError(
        `cross_entropy_grad cotangent must be ${logits.dtype} [${want}], got ${cot.dtype} [${cot.shape}]`,
      );
    return logits;
  },
  doc: "cross_entropy's gradient wrt the logits: (softmax - one_hot) * the row's share of the cotangent",
});
