// scatter_add (the transpose of gather/embedding) without float atomics: each output
// element sums the updates whose index equals its position, in index order, so the
// result is deterministic and matches the CPU's accumulation order.
import { normAxis, numel } from '../../../ir/shape.ts';
import type { Kernel } from '../program.ts';
import { mapKernel } from './map.ts';

const scatterAdd: Kernel = (ctx) => {
  const [upd, idx] = ctx.inputs;
  const r = upd.shape.length - idx.shape.length + 1;
  const ax = normAxis(Number(ctx.node.attrs.axis), Math.max(r, 1));
  const inner = numel(upd.shape.slice(ax + idx.shape.length));
  const count = numel(idx.shape);
  const size = Number(ctx.node.attrs.size);
  return mapKernel({
    ctx,
    desc: {},
    body: (u) => {
      const innerU = u.u32(inner);
      const countU = u.u32(count);
      const sizeU = u.u32(size);
      return `  let q = i % ${innerU};
  let t = i / ${innerU};
  let a = i32(t % ${sizeU});
  let o = t / ${sizeU};
  var s = 0.0;
  for (var j = 0u; j < ${countU}; j++) {
    let k = i32(ld_in1(j));
    if (k == a) { s = s + ld_in0((o * ${countU} + j) * ${innerU} + q); }
  }
  return s;`;
    },
  });
};

export const gradKernels = { scatter_add: scatterAdd } satisfies Record<string, Kernel>;
