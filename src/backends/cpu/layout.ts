// Data movement: reshape, transpose, permute, slice, concat, roll, gather, embedding.
// Index errors (gather/embedding out of range) name the offending position.
import type { OpAttrs } from '../../ir/ops/index.ts';
import { normAxis, strides } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { attrsOf, type CpuKernel, empty, type KernelContext } from './kernel.ts';
import { aroundAxis, stridedIndex } from './util.ts';

/** Same elements, new shape: shares the input's data (tensors are read-only). */
export const reshape: CpuKernel = ([x], ctx) => ({
  dtype: x.dtype,
  shape: [...ctx.node.type.shape],
  data: x.data,
});

/** out[i_0, ..., i_r] = x at index i_k on axis perm[k]. */
function permuteAxes(x: Tensor, perm: readonly number[], ctx: KernelContext): Tensor {
  const outShape = perm.map((p) => x.shape[p]);
  const out = empty(ctx, x.dtype, outShape);
  const xs = strides(x.shape);
  const src = stridedIndex(
    outShape,
    perm.map((p) => xs[p]),
  );
  for (let o = 0; o < out.data.length; o++) out.data[o] = x.data[src[o]];
  return out;
}

export const permute: CpuKernel = ([x], ctx) => permuteAxes(x, attrsOf<OpAttrs<'permute'>>(ctx).perm, ctx);

export const transpose: CpuKernel = ([x], ctx) => {
  const { dim0, dim1 } = attrsOf<OpAttrs<'transpose'>>(ctx);
  const perm = x.shape.map((_, i) => i);
  const i = normAxis(dim0, x.shape.length);
  const j = normAxis(dim1, x.shape.length);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permuteAxes(x, perm, ctx);
};

export const slice: CpuKernel = ([x], ctx) => {
  const { axis, start, end } = attrsOf<OpAttrs<'slice'>>(ctx);
  const [outer, n, inner] = aroundAxis(x.shape, normAxis(axis, x.shape.length));
  const len = end - start;
  const out = empty(ctx, x.dtype, ctx.node.type.shape);
  for (let o = 0; o < outer; o++) {
    out.data.set(x.data.subarray((o * n + start) * inner, (o * n + end) * inner), o * len * inner);
  }
  return out;
};

export const concat: CpuKernel = (xs, ctx) => {
  const { axis } = attrsOf<OpAttrs<'concat'>>(ctx);
  const shape = ctx.node.type.shape;
  const [outer, total, inner] = aroundAxis(shape, normAxis(axis, shape.length));
  const out = empty(ctx, ctx.node.type.dtype, shape);
  let at = 0; // offset along the axis where the next input starts
  for (const x of xs) {
    const n = x.shape[normAxis(axis, shape.length)];
    for (let o = 0; o < outer; o++) {
      out.data.set(x.data.subarray(o * n * inner, (o + 1) * n * inner), (o * total + at) * inner);
    }
    at += n;
  }
  return out;
};

/** torch.roll: out[(i + shift) mod n] = x[i] along the axis. */
export const roll: CpuKernel = ([x], ctx) => {
  const { shift, axis } = attrsOf<OpAttrs<'roll'>>(ctx);
  const [outer, n, inner] = aroundAxis(x.shape, normAxis(axis, x.shape.length));
  const out = empty(ctx, x.dtype, x.shape);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < n; i++) {
      const to = (((i + shift) % n) + n) % n;
      out.data.set(x.data.subarray((o * n + i) * inner, (o * n + i + 1) * inner), (o * n + to) * inner);
    }
  }
  return out;
};

/** numpy.take along an axis: out[pre, j..., post] = x[pre, idx[j...], post]. Indices must be in range. */
export function take(x: Tensor, idx: Tensor, ax: number, ctx: KernelContext, what: string): Tensor {
  const [outer, n, inner] = aroundAxis(x.shape, ax);
  const m = idx.data.length;
  const out = empty(ctx, x.dtype, ctx.node.type.shape);
  for (let j = 0; j < m; j++) {
    const k = idx.data[j];
    if (!(k >= 0 && k < n)) throw new Error(`${what} ${k} at position ${j} is outside [0, ${n})`);
  }
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      const k = idx.data[j];
      out.data.set(x.data.subarray((o * n + k) * inner, (o * n + k + 1) * inner), (o * m + j) * inner);
    }
  }
  return out;
}

export const gather: CpuKernel = ([x, idx], ctx) =>
  take(x, idx, normAxis(attrsOf<OpAttrs<'gather'>>(ctx).axis, x.shape.length), ctx, 'gather index');

export const embedding: CpuKernel = ([table, ids], ctx) => take(table, ids, 0, ctx, 'embedding id');
