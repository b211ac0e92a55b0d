// Elementwise ops. The math ops' kernels come from their definitions (ir/ops/math.ts);
// binary ops and where broadcast as NumPy. Integer dtypes compute
// in JS numbers and are stored with the typed array's wrap-around, so integer div
// truncates toward zero (as C and WGSL); i32/u32 mul uses Math.imul (exact mod 2^32).
// Comparisons give 1 or 0 in the inputs' dtype.
import { isFloat } from '../../ir/dtype.ts';
import type { OpAttrs } from '../../ir/ops/index.ts';
import { MATH_OPS, type MathDef, type MathOpName } from '../../ir/ops/math.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';
import { broadcastIndex } from './util.ts';

/** A math op's kernel: its scalar function over the inputs broadcast to the result shape. */
function mathKernel(d: MathDef): CpuKernel {
  return (ins, ctx) => {
    const attrs = ctx.node.attrs;
    const { shape, dtype } = ctx.node.type;
    if (d.kind === 'unary') {
      const [x] = ins;
      const out = empty(ctx, x.dtype, x.shape);
      const f = d.cpu;
      for (let i = 0; i < x.data.length; i++) out.data[i] = f(x.data[i], attrs);
      return out;
    }
    const out = empty(ctx, dtype, shape);
    const [ia, ib, ic] = ins.map((t) => broadcastIndex(t.shape, shape));
    const [a, b, c] = ins.map((t) => t.data);
    if (d.kind === 'binary') {
      const f = isFloat(ins[0].dtype) ? d.cpu : (d.cpuInt ?? d.cpu);
      for (let i = 0; i < out.data.length; i++) out.data[i] = f(a[ia[i]], b[ib[i]], attrs);
    } else {
      const f = d.cpu;
      for (let i = 0; i < out.data.length; i++) out.data[i] = f(a[ia[i]], b[ib[i]], c[ic[i]], attrs);
    }
    return out;
  };
}

/** The math ops' kernels, from their definitions (ir/ops/math.ts). */
export const mathKernels = Object.fromEntries(
  (Object.values(MATH_OPS) as MathDef[]).map((d) => [d.name, mathKernel(d)]),
) as Record<MathOpName, CpuKernel>;

/**
 * Float -> integer truncates toward zero (as PyTorch), then wraps to the target width.
 * Casts to f16/bf16 are not rounded: the host holds them as f32.
 */
export const cast: CpuKernel = ([x], ctx) => {
  const { dtype } = attrsOf<OpAttrs<'cast'>>(ctx);
  const out = empty(ctx, dtype, x.shape);
  const trunc = isFloat(x.dtype) && !isFloat(dtype);
  for (let i = 0; i < x.data.length; i++) out.data[i] = trunc ? Math.trunc(x.data[i]) : x.data[i];
  return out;
};

export const broadcast_to: CpuKernel = ([x], ctx) => {
  const { shape } = ctx.node.type;
  const out = empty(ctx, x.dtype, shape);
  const ix = broadcastIndex(x.shape, shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = x.data[ix[i]];
  return out;
};
