// Ops that autodiff emits: scatter_add (the transpose of gather) and one_hot.
// (greater, equal, sign and broadcast_to live with the elementwise kernels.)
import type { OpAttrs } from '../../ir/ops/index.ts';
import { normAxis } from '../../ir/shape.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';
import { aroundAxis } from './util.ts';

/**
 * out = zeros with the axis of length `size`; out[pre, idx[j...], post] += upd[pre, j..., post].
 * Repeated indices accumulate; an index outside [0, size) is an error (as gather's).
 */
export const scatter_add: CpuKernel = ([upd, idx], ctx) => {
  const { axis, size } = attrsOf<OpAttrs<'scatter_add'>>(ctx);
  const shape = ctx.node.type.shape;
  const ax = normAxis(axis, shape.length);
  const [outer, , inner] = aroundAxis(shape, ax);
  const m = idx.data.length;
  const acc = new Float64Array(outer * size * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      const k = idx.data[j];
      if (!(k >= 0 && k < size))
        throw new Error(`scatter_add index ${k} at position ${j} is outside [0, ${size})`);
      for (let i = 0; i < inner; i++) acc[(o * size + k) * inner + i] += upd.data[(o * m + j) * inner + i];
    }
  }
  const out = empty(ctx, upd.dtype, shape);
  out.data.set(acc);
  return out;
};

/** out[..., j] = (ids[...] == j); ids outside [0, depth) give an all-zero row. */
export const one_hot: CpuKernel = ([ids], ctx) => {
  const { depth, dtype } = attrsOf<OpAttrs<'one_hot'>>(ctx);
  const out = empty(ctx, dtype, ctx.node.type.shape);
  for (let r = 0; r < ids.data.length; r++) {
    const k = ids.data[r];
    if (k >= 0 && k < depth) out.data[r * depth + k] = 1;
  }
  return out;
};
