// Graph leaves: input (from the feeds), param (from the weight store), const.
// Float data is converted to the run's precision; integer data is used as is.
import { isFloat } from '../../ir/dtype.ts';
import type { OpAttrs } from '../../ir/ops/index.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { attrsOf, type CpuKernel, empty, type KernelContext, type Precision } from './kernel.ts';

/** The tensor with its float data in the given precision (no copy when it already is). */
export function inPrecision(t: Tensor, precision: Precision): Tensor {
  if (!isFloat(t.dtype)) return t;
  if (precision === 'f64')
    return t.data instanceof Float64Array ? t : { ...t, data: Float64Array.from(t.data) };
  return t.data instanceof Float32Array ? t : { ...t, data: Float32Array.from(t.data) };
}

function checkBound(what: string, name: string, t: Tensor, ctx: KernelContext): Tensor {
  const want = ctx.node.type;
  if (t.dtype !== want.dtype || !sameShape(t.shape, want.shape)) {
    throw new Error(
      `${what} '${name}' is ${t.dtype}${formatShape(t.shape)} but the graph expects ${want.dtype}${formatShape(want.shape)}`,
    );
  }
  return inPrecision(t, ctx.precision);
}

export const input: CpuKernel = (_, ctx) => {
  const { name } = attrsOf<OpAttrs<'input'>>(ctx);
  const t = ctx.feeds[name];
  const want = `${ctx.node.type.dtype}${formatShape(ctx.node.type.shape)}`;
  if (!t) throw new Error(`missing feed for input '${name}' (the graph expects ${want})`);
  return checkBound('feed for input', name, t, ctx);
};

export const param: CpuKernel = (_, ctx) => {
  const { name } = attrsOf<OpAttrs<'param'>>(ctx);
  const t = ctx.weights.get(name);
  const want = `${ctx.node.type.dtype}${formatShape(ctx.node.type.shape)}`;
  if (!t) throw new Error(`missing weight '${name}' (the graph expects ${want}); is it in the weight store?`);
  return checkBound('weight', name, t, ctx);
};

export const constant: CpuKernel = (_, ctx) => {
  const { value } = attrsOf<OpAttrs<'const'>>(ctx);
  const out = empty(ctx, ctx.node.type.dtype, ctx.node.type.shape);
  if (typeof value === 'number') out.data.fill(value);
  else out.data.set(value);
  return out;
};
