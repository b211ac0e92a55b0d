// fused_map and fused_reduce on both backends. CPU: each step through the op's own CPU kernel, in order
// (the same arithmetic as the unfused graph, step by step). WebGPU: one map kernel whose
// value(i) loads every input at its broadcast index once and evaluates the steps as WGSL
// expressions from the elementwise ops' own emitters; numeric attrs (scale's factor) are
// uniforms, so chains that differ only in them share a pipeline.

import type { CpuKernel } from '../../backends/cpu/index.ts';
import { getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import {
  type EpilogueRead,
  getKernel,
  type Kernel,
  type KernelContext,
  linearProblem,
  MATH,
  type MapMember,
  type MatmulEpilogue,
  mapKernel,
  matmulProblem,
  planMatmul,
  progDesc,
  programShape,
  programWgsl,
  type ReduceMember,
  reduction,
  registerKernel,
  registerMapMember,
  registerReduceMember,
  stepsMember,
  stepsWgsl,
  trailingRows,
  variantFor,
} from '../../backends/webgpu/index.ts';
import type { Node } from '../../ir/graph.ts';
import { getOp } from '../../ir/ops/index.ts';
import { stepAttrs } from '../../ir/ops/math.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { FusedMapAttrs, FusedReduceAttrs, FusedStep } from './fused-map.ts';
import { epilogueRead, type MatmulMapAttrs, productArity } from './matmul-map.ts';

/** Runs fused steps over `inputs` through each op's own CPU kernel; the last value. */
function runSteps(
  inputs: readonly Tensor[],
  steps: readonly FusedStep[],
  shape: readonly number[],
  ctx: Parameters<CpuKernel>[1],
): Tensor {
  const values: Tensor[] = [...inputs];
  for (const s of steps) {
    const kernel = getCpuKernel(s.op);
    if (!kernel) throw new Error(`fused_map: no CPU kernel for '${s.op}'`);
    const node: Node = {
      ...ctx.node,
      op: s.op,
      attrs: stepAttrs(s),
      type: { dtype: 'f32', shape: [...shape] },
    };
    values.push(
      kernel(
        s.args.map((i) => values[i]),
        { ...ctx, node },
      ),
    );
  }
  return values[values.length - 1];
}

const cpuFusedMap: CpuKernel = (inputs, ctx) => {
  const a = ctx.node.attrs as unknown as FusedMapAttrs;
  return runSteps(inputs, a.steps, a.shape, ctx);
};

// The program's result, then the reduction's own kernel: the unfused graph's arithmetic.
const cpuFusedReduce: CpuKernel = (inputs, ctx) => {
  const a = ctx.node.attrs as unknown as FusedReduceAttrs;
  const mapped = runSteps(inputs, a.steps, a.shape, ctx);
  const reduce = getCpuKernel(a.reduce);
  if (!reduce) throw new Error(`fused_reduce: no CPU kernel for '${a.reduce}'`);
  const node: Node = { ...ctx.node, op: a.reduce, attrs: { axes: a.axes, keepdims: a.keepdims } };
  return reduce([mapped], { ...ctx, node });
};

// matmul_map: the product through its op's CPU kernel, then the steps: the unfused
// graph's arithmetic, bit for bit.
const cpuMatmulMap: CpuKernel = (inputs, ctx) => {
  const a = ctx.node.attrs as unknown as MatmulMapAttrs;
  const k = productArity(a);
  const kernel = getCpuKernel(a.product.op) as CpuKernel;
  const attrs: Node['attrs'] =
    a.product.op === 'matmul'
      ? { transpose_a: a.product.transpose_a, transpose_b: a.product.transpose_b }
      : {};
  const op = getOp(a.product.op);
  const node: Node = {
    ...ctx.node,
    op: a.product.op,
    inputs: ctx.node.inputs.slice(0, k),
    attrs,
    type: op.infer(
      inputs.slice(0, k).map((t) => ({ dtype: t.dtype, shape: t.shape })),
      op.attrs.parse(attrs),
    ),
  };
  const product = kernel(inputs.slice(0, k), { ...ctx, node });
  const ins = [...inputs.slice(k)];
  // The product through reshapes (views) to the map's shape: the same elements in order.
  ins.splice(a.slot, 0, { ...product, shape: [...a.shape] });
  return runSteps(ins, a.steps, a.shape, ctx);
};

const webgpuFusedMap: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as FusedMapAttrs;
  const out = ctx.out.shape;
  return mapKernel({
    ctx,
    desc: { ...programShape(ctx.inputs, out), prog: progDesc(a.steps) },
    helpers: MATH,
    body: (u) => `${programWgsl(u, ctx.inputs, a.steps, out)}  return t${a.steps.length - 1};`,
  });
};

// A fused_reduce over trailing axes as rows of a group kernel (the clip norm's per-tensor
// sums, DoRA's weight norms, the norms' backward sums).
const fusedReduceMember = (ctx: KernelContext): ReduceMember | undefined => {
  const a = ctx.node.attrs as unknown as FusedReduceAttrs;
  const rows = trailingRows(a.shape, a.axes);
  return rows && { kind: a.reduce, ...rows, program: stepsMember(ctx, a.steps, a.shape) };
};

// The same program as a member of a kernel over several nodes (kernel-groups.ts).
const fusedMapMember = (ctx: KernelContext): MapMember =>
  stepsMember(ctx, (ctx.node.attrs as unknown as FusedMapAttrs).steps);

// The reduction kernel reading each element through the program (fn pre).
const webgpuFusedReduce: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as FusedReduceAttrs;
  return reduction(a.reduce, {
    shape: a.shape,
    desc: (({ rank, bcast }) => ({ prank: String(rank), bcast, prog: progDesc(a.steps) }))(
      programShape(ctx.inputs, a.shape),
    ),
    fn: (u) =>
      `${MATH}fn pre(i: u32) -> f32 {\n${programWgsl(u, ctx.inputs, a.steps, a.shape)}  return t${a.steps.length - 1};\n}\n`,
  })(ctx);
};

// matmul_map: the matmul kernel the adapter gets for the product, with the steps as its
// epilogue (map input `slot` is the product + bias `m`, the others E0, E1, ... in order).
const webgpuMatmulMap: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as MatmulMapAttrs;
  const k = productArity(a);
  const sub = { ...ctx, inputs: ctx.inputs.slice(0, k) };
  const p =
    a.product.op === 'matmul'
      ? matmulProblem(sub, a.product.transpose_a, a.product.transpose_b)
      : linearProblem(sub, a.product.bias);
  const n = ctx.inputs.length - k + 1;
  // Map input i: the product at the slot, the extras (e0, e1, ...) around it; steps after.
  const name = (i: number) => (i >= n ? `t${i - n}` : i === a.slot ? 'm' : `e${i < a.slot ? i : i - 1}`);
  const columns = a.shape.length ? a.shape[a.shape.length - 1] : 1;
  const epilogue: MatmulEpilogue = {
    first: k,
    extras: ctx.inputs.slice(k).map((t) => epilogueRead(t.shape, a.shape) as EpilogueRead),
    columns,
    desc: `${a.slot}:${progDesc(a.steps)}`,
    helpers: MATH,
    body: (u) => `${stepsWgsl(a.steps, u, name)}  return t${a.steps.length - 1};`,
  };
  return planMatmul({ ...p, epilogue }, variantFor(ctx), ctx.textureDimension);
};

if (!getCpuKernel('matmul_map')) registerCpuKernel('matmul_map', cpuMatmulMap);
if (!getKernel('matmul_map')) registerKernel('matmul_map', webgpuMatmulMap);
if (!getCpuKernel('fused_map')) registerCpuKernel('fused_map', cpuFusedMap);
if (!getKernel('fused_map')) {
  registerKernel('fused_map', webgpuFusedMap);
  registerMapMember('fused_map', fusedMapMember);
}
if (!getCpuKernel('fused_reduce')) registerCpuKernel('fused_reduce', cpuFusedReduce);
if (!getKernel('fused_reduce')) {
  registerKernel('fused_reduce', webgpuFusedReduce);
  registerReduceMember('fused_reduce', fusedReduceMember);
}
