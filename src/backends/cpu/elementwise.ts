// Elementwise ops. The math ops' kernels come from their definitions (ir/ops/math.ts);
// binary ops and where broadcast as NumPy. Integer dtypes compute
// in JS numbers and are stored with the typed array's wrap-around, so integer div
// truncates toward zero (as C and WGSL); i32/u32 mul uses Math.imul (exact mod 2^32).
// Comparisons give 1 or 0 in the inputs' dtype.
import { isFloat } from '../../ir/dtype.ts';
import type { OpAttrs } from '../../ir/ops/index.ts';
import { MATH_OPS, type MathDef, type MathOpName } from '../../ir/ops/math.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';
import { gelu as geluFn } from './math.ts';
import { broadcastIndex } from './util.ts';

type Binary = (a: number, b: number) => number;

function binary(f: Binary, intF: Binary = f): CpuKernel {
  return ([a, b], ctx) => {
    const { shape } = ctx.node.type;
    const out = empty(ctx, ctx.node.type.dtype, shape);
    const ia = broadcastIndex(a.shape, shape);
    const ib = broadcastIndex(b.shape, shape);
    const fn = isFloat(a.dtype) ? f : intF;
    for (let i = 0; i < out.data.length; i++) out.data[i] = fn(a.data[ia[i]], b.data[ib[i]]);
    return out;
  };
}

function unary(f: (x: number) => number): CpuKernel {
  return ([x], ctx) => {
    const out = empty(ctx, x.dtype, x.shape);
    for (let i = 0; i < x.data.length; i++) out.data[i] = f(x.data[i]);
    return out;
  };
}

/** The math ops' kernels, from their definitions (ir/ops/math.ts). */
export const mathKernels = Object.fromEntries(
  Object.values(MATH_OPS).map((d: MathDef) => [
    d.name,
    d.kind === 'unary' ? unary(d.cpu) : binary(d.cpu, d.cpuInt),
  ]),
) as Record<MathOpName, CpuKernel>;

export const gelu: CpuKernel = (ins, ctx) => {
  const { approximate } = attrsOf<OpAttrs<'gelu'>>(ctx);
  return unary((x) => geluFn(x, approximate))(ins, ctx);
};

export const scale: CpuKernel = (ins, ctx) => {
  const { factor } = attrsOf<OpAttrs<'scale'>>(ctx);
  return unary((x) => x * factor)(ins, ctx);
};

/** cond != 0 ? a : b, all three broadcast to the result shape. */
export const where: CpuKernel = ([c, a, b], ctx) => {
  const { shape } = ctx.node.type;
  const out = empty(ctx, ctx.node.type.dtype, shape);
  const ic = broadcastIndex(c.shape, shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = c.data[ic[i]] !== 0 ? a.data[ia[i]] : b.data[ib[i]];
  return out;
};

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
