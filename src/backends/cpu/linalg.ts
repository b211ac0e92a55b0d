// Matrix products, accumulated in f64 and stored in the run's precision.
import type { OpAttrs } from '../../ir/ops/index.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';
import { broadcastIndex } from './util.ts';

/**
 * matmul: a [..., M, K] @ b [..., K, N] (after the optional transposes of the last two
 * axes), batch axes broadcast as NumPy. A triple loop with the k loop outside j.
 */
export const matmul: CpuKernel = ([a, b], ctx) => {
  const { transpose_a: ta, transpose_b: tb } = attrsOf<OpAttrs<'matmul'>>(ctx);
  const shape = ctx.node.type.shape;
  const r = shape.length;
  const [m, n] = [shape[r - 2], shape[r - 1]];
  const k = ta ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  const batch = shape.slice(0, -2);
  // Which matrix of a and of b each output batch element reads.
  const ba = broadcastIndex(a.shape.slice(0, -2), batch);
  const bb = broadcastIndex(b.shape.slice(0, -2), batch);
  const out = empty(ctx, ctx.node.type.dtype, shape);
  const row = new Float64Array(n);
  for (let z = 0; z < ba.length; z++) {
    const aOff = ba[z] * m * k;
    const bOff = bb[z] * k * n;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const av = a.data[aOff + (ta ? p * m + i : i * k + p)];
        if (tb) for (let j = 0; j < n; j++) row[j] += av * b.data[bOff + j * k + p];
        else for (let j = 0; j < n; j++) row[j] += av * b.data[bOff + p * n + j];
      }
      out.data.set(row, (z * m + i) * n);
    }
  }
  return out;
};

/** linear: y = x W^T + b with W [out, in] (torch.nn.Linear); x is [..., in]. */
export const linear: CpuKernel = ([x, w, bias], ctx) => {
  const [outF, inF] = w.shape;
  // Rows from the output shape: with in_features = 0 the input has no elements but the
  // output still has rows (all equal to the bias, as PyTorch gives).
  const rows = ctx.node.type.shape.slice(0, -1).reduce((a, d) => a * d, 1);
  const out = empty(ctx, ctx.node.type.dtype, ctx.node.type.shape);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = bias ? bias.data[o] : 0;
      for (let i = 0; i < inF; i++) s += x.data[r * inF + i] * w.data[o * inF + i];
      out.data[r * outF + o] = s;
    }
  }
  return out;
};
