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
  type MatmulDropoutMask,
  type MatmulEpilogue,
  type MatmulOperandMap,
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
import {
  dropoutAttrs,
  epilogueRead,
  extrasEnd,
  type MatmulDropout,
  type MatmulMapAttrs,
  productArity,
} from './matmul-map.ts';

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

// matmul_map: the product through its op's CPU kernel, then the steps, the dropout
// through the dropout op's kernel where the unfused graph has it: the unfused graph's
// arithmetic, bit for bit.
const cpuMatmulMap: CpuKernel = (inputs, ctx) => {
  const a = ctx.node.attrs as unknown as MatmulMapAttrs;
  const k = productArity(a);
  const kernel = getCpuKernel(a.product.op) as CpuKernel;
  const d = a.dropout;
  const step = d?.step ? [inputs[inputs.length - 1]] : [];
  const drop = (t: Tensor): Tensor =>
    (getCpuKernel('dropout') as CpuKernel)([t, ...step], {
      ...ctx,
      node: {
        ...ctx.node,
        op: 'dropout',
        attrs: dropoutAttrs(d as MatmulDropout),
        type: { dtype: t.dtype, shape: [...t.shape] },
      },
    });
  const attrs: Node['attrs'] =
    a.product.op === 'matmul'
      ? { transpose_a: a.product.transpose_a, transpose_b: a.product.transpose_b }
      : {};
  const op = getOp(a.product.op);
  const pre = a.pre;
  const operands = inputs
    .slice(0, k)
    .map((t, i) =>
      d && d.at === 'ab'[i]
        ? drop(t)
        : pre && pre.at === 'ab'[i]
          ? runSteps([t], pre.steps, t.shape, ctx)
          : t,
    );
  const node: Node = {
    ...ctx.node,
    op: a.product.op,
    inputs: ctx.node.inputs.slice(0, k),
    attrs,
    type: op.infer(
      operands.map((t) => ({ dtype: t.dtype, shape: t.shape })),
      op.attrs.parse(attrs),
    ),
  };
  const product = kernel(operands, { ...ctx, node });
  const ins = [...inputs.slice(k, extrasEnd(a, inputs.length))];
  // The product through reshapes (views) to the map's shape: the same elements in order.
  ins.splice(a.slot, 0, { ...product, shape: [...a.shape] });
  const mapped = a.steps.length ? runSteps(ins, a.steps, a.shape, ctx) : ins[0];
  return d?.at === 'out' ? drop(mapped) : mapped;
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
// epilogue (map input `slot` is the product + bias `m`, the others E0, E1, ... in order)
// and the dropout in its operand loads or its store.
const webgpuMatmulMap: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as MatmulMapAttrs;
  const k = productArity(a);
  const end = extrasEnd(a, ctx.inputs.length);
  const sub = { ...ctx, inputs: ctx.inputs.slice(0, k) };
  const p =
    a.product.op === 'matmul'
      ? matmulProblem(sub, a.product.transpose_a, a.product.transpose_b)
      : linearProblem(sub, a.product.bias);
  const n = end - k + 1;
  // Map input i: the product at the slot, the extras (e0, e1, ...) around it; steps after.
  const name = (i: number) => (i >= n ? `t${i - n}` : i === a.slot ? 'm' : `e${i < a.slot ? i : i - 1}`);
  const columns = a.shape.length ? a.shape[a.shape.length - 1] : 1;
  const d = a.dropout;
  // An output dropout is applied in epi, so it needs one even for the identity program.
  const epilogue: MatmulEpilogue | undefined =
    a.steps.length || d?.at === 'out'
      ? {
          first: k,
          extras: ctx.inputs.slice(k, end).map((t) => epilogueRead(t.shape, a.shape) as EpilogueRead),
          columns,
          desc: `${a.slot}:${progDesc(a.steps)}`,
          helpers: MATH,
          body: (u) =>
            a.steps.length ? `${stepsWgsl(a.steps, u, name)}  return t${a.steps.length - 1};` : '  return m;',
        }
      : undefined;
  const last = ctx.inputs.length - 1;
  const dropout: MatmulDropoutMask | undefined = d && {
    at: d.at,
    p: d.p,
    seed: d.seed,
    ...(d.step ? { step: { input: last, dtype: ctx.inputs[last].dtype } } : {}),
  };
  const pre: MatmulOperandMap | undefined = a.pre && {
    at: a.pre.at,
    desc: progDesc(a.pre.steps),
    helpers: MATH,
    body: (u) =>
      `${stepsWgsl(a.pre?.steps ?? [], u, (i) => (i === 0 ? 'x' : `t${i - 1}`))}  return t${(a.pre?.steps.length ?? 0) - 1};`,
  };
  return planMatmul(
    { ...p, ...(epilogue ? { epilogue } : {}), ...(dropout ? { dropout } : {}), ...(pre ? { pre } : {}) },
    variantFor(ctx),
    ctx.textureDimension,
  );
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
