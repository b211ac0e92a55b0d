// Data movement: reshape (a buffer alias), transpose/permute, slice, concat, roll,
// gather/embedding, one_hot. Out-of-range indices (an error on the CPU, which checks
// them) read as 0 here instead of faulting.
import { normAxis, numel, strides } from '../../../ir/shape.ts';
import { computeType, isPacked, lit } from '../dtypes.ts';
import type { Kernel, KernelContext } from '../program.ts';
import { dot, mapKernel, uniformList, unravel } from './map.ts';

/** Output coordinates -> input index through per-output-axis input strides. */
function strided(ctx: KernelContext, inStrides: readonly number[], offset = 0) {
  const out = ctx.out.shape;
  return mapKernel({
    ctx,
    desc: { rank: out.length, offset: offset !== 0 },
    body: (u) => {
      const dims = uniformList(u, out);
      const st = uniformList(u, inStrides);
      const off = offset !== 0 ? ` + ${u.u32(offset)}` : '';
      return `${unravel('i', dims)}  return ld_in0(${dot(st)}${off});`;
    },
  });
}

const permuteLike = (perm: (ctx: KernelContext) => number[]): Kernel => {
  return (ctx) => {
    const s = strides(ctx.inputs[0].shape);
    return strided(
      ctx,
      perm(ctx).map((p) => s[p]),
    );
  };
};

const transpose = permuteLike((ctx) => {
  const r = ctx.inputs[0].shape.length;
  const p = [...Array(r).keys()];
  const i = normAxis(Number(ctx.node.attrs.dim0), r);
  const j = normAxis(Number(ctx.node.attrs.dim1), r);
  [p[i], p[j]] = [p[j], p[i]];
  return p;
});

const permute = permuteLike((ctx) => (ctx.node.attrs.perm as number[]).map(Number));

const slice: Kernel = (ctx) => {
  const shape = ctx.inputs[0].shape;
  const ax = normAxis(Number(ctx.node.attrs.axis), shape.length);
  const s = strides(shape);
  return strided(ctx, s, Number(ctx.node.attrs.start) * s[ax]);
};

const roll: Kernel = (ctx) => {
  const shape = ctx.inputs[0].shape;
  const ax = normAxis(Number(ctx.node.attrs.axis), shape.length);
  const n = shape[ax];
  const shift = n === 0 ? 0 : ((Number(ctx.node.attrs.shift) % n) + n) % n;
  return mapKernel({
    ctx,
    desc: { rank: shape.length, axis: ax },
    body: (u) => {
      const dims = uniformList(u, shape);
      const st = uniformList(u, strides(shape));
      // out[(j + shift) mod n] = in[j]  <=>  in index = (c - shift) mod n = (c + n - shift) mod n.
      const back = u.u32(n - shift);
      const terms = st.map((x, k) => (k === ax ? `((c${k} + ${back}) % ${dims[k]}) * ${x}` : `c${k} * ${x}`));
      return `${unravel('i', dims)}  return ld_in0(${terms.join(' + ')});`;
    },
  });
};

/**
 * Inputs per concat dispatch beyond which it is split: with the output, 8 storage
 * buffers, the least maxStorageBuffersPerShaderStage WebGPU guarantees.
 */
export const CONCAT_CHUNK = 7;

const concat: Kernel = (ctx) => {
  const out = ctx.out.shape;
  const ax = normAxis(Number(ctx.node.attrs.axis), out.length);
  const outer = numel(out.slice(0, ax));
  const inner = numel(out.slice(ax + 1));
  const total = out[ax];
  if (ctx.inputs.length > CONCAT_CHUNK && !isPacked(ctx.out.dtype)) {
    // One dispatch per chunk of inputs, each writing its own slab of the output.
    const steps = [];
    for (let first = 0, start = 0; first < ctx.inputs.length; first += CONCAT_CHUNK) {
      const ks = ctx.inputs.slice(first, first + CONCAT_CHUNK).map((_, j) => first + j);
      const len = ks.reduce((s, k) => s + ctx.inputs[k].shape[ax], 0);
      steps.push(...concatChunk(ctx, ks, { outer, inner, total, start, len }).steps);
      start += len;
    }
    return { steps };
  }
  return mapKernel({
    ctx,
    desc: { inputs: ctx.inputs.length },
    body: (u) => {
      const innerU = u.u32(inner);
      const totalU = u.u32(total);
      let s = `  let q = i % ${innerU};\n  let t = i / ${innerU};\n  let a = t % ${totalU};\n  let o = t / ${totalU};\n`;
      let start = 0;
      ctx.inputs.forEach((t, k) => {
        const len = t.shape[ax];
        const lenU = u.u32(len);
        const startU = u.u32(start);
        s += `  if (a < ${startU} + ${lenU}) { return ld_in${k}((o * ${lenU} + (a - ${startU})) * ${innerU} + q); }\n`;
        start += len;
      });
      void outer;
      return `${s}  return ${lit(0, computeType(ctx.out.dtype))};`;
    },
  });
};

/** The part of a concat that inputs `ks` fill: `len` positions of the axis from `start`. */
function concatChunk(
  ctx: KernelContext,
  ks: readonly number[],
  c: { outer: number; inner: number; total: number; start: number; len: number },
) {
  const ax = normAxis(Number(ctx.node.attrs.axis), ctx.out.shape.length);
  return mapKernel({
    ctx,
    inputs: ks,
    desc: { inputs: ks.length, chunk: true },
    scatter: {
      count: c.outer * c.len * c.inner,
      index: (u, i) => {
        const [innerU, lenU, totalU, startU] = [c.inner, c.len, c.total, c.start].map((x) => u.u32(x));
        return `((${i} / ${innerU}) / ${lenU} * ${totalU} + ${startU} + (${i} / ${innerU}) % ${lenU}) * ${innerU} + ${i} % ${innerU}`;
      },
    },
    body: (u) => {
      const innerU = u.u32(c.inner);
      const lenU = u.u32(c.len);
      let s = `  let q = i % ${innerU};\n  let t = i / ${innerU};\n  let a = t % ${lenU};\n  let o = t / ${lenU};\n`;
      let start = 0;
      ks.forEach((k, j) => {
        const len = ctx.inputs[k].shape[ax];
        const [lU, sU] = [u.u32(len), u.u32(start)];
        s += `  if (a < ${sU} + ${lU}) { return ld_in${j}((o * ${lU} + (a - ${sU})) * ${innerU} + q); }\n`;
        start += len;
      });
      return `${s}  return ${lit(0, computeType(ctx.out.dtype))};`;
    },
  });
}

/** numpy.take along `axis`: out[pre, j..., post] = x[pre, idx[j...], post]. */
function take(ctx: KernelContext, axis: number) {
  const x = ctx.inputs[0].shape;
  const inner = numel(x.slice(axis + 1));
  const count = numel(ctx.inputs[1].shape);
  const size = x[axis];
  const zero = lit(0, computeType(ctx.out.dtype));
  return mapKernel({
    ctx,
    desc: {},
    body: (u) => {
      const innerU = u.u32(inner);
      const countU = u.u32(count);
      const sizeU = u.i32(size);
      return `  let q = i % ${innerU};
  let t = i / ${innerU};
  let j = t % ${countU};
  let o = t / ${countU};
  let k = i32(ld_in1(j));
  if (k < 0 || k >= ${sizeU}) { return ${zero}; }
  return ld_in0((o * u32(${sizeU}) + u32(k)) * ${innerU} + q);`;
    },
  });
}

const gather: Kernel = (ctx) => take(ctx, normAxis(Number(ctx.node.attrs.axis), ctx.inputs[0].shape.length));
const embedding: Kernel = (ctx) => take(ctx, 0);

const oneHot: Kernel = (ctx) =>
  mapKernel({
    ctx,
    desc: {},
    body: (u) => {
      const depth = u.u32(Number(ctx.node.attrs.depth));
      return `  let id = i32(ld_in0(i / ${depth}));\n  return select(0.0, 1.0, id == i32(i % ${depth}));`;
    },
  });

export const layoutKernels = {
  reshape: () => 'alias',
  stop_gradient: () => 'alias',
  transpose,
  permute,
  slice,
  concat,
  roll,
  gather,
  embedding,
  one_hot: oneHot,
} satisfies Record<string, Kernel>;
