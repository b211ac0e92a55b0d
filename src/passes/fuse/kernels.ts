// fused_map and fused_reduce on both backends. CPU: each step through the op's own CPU kernel, in order
// (the same arithmetic as the unfused graph, step by step). WebGPU: one map kernel whose
// value(i) loads every input at its broadcast index once and evaluates the steps as WGSL
// expressions from the elementwise ops' own emitters; scale factors are uniforms, so
// chains that differ only in factors share a pipeline.

import type { CpuKernel } from '../../backends/cpu/index.ts';
import { getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import {
  BINARY,
  broadcastIndex,
  broadcastKind,
  getKernel,
  type Kernel,
  MATH,
  mapKernel,
  reduction,
  registerKernel,
  UNARY,
  type Uniforms,
} from '../../backends/webgpu/index.ts';
import type { Node } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { FusedMapAttrs, FusedReduceAttrs, FusedStep } from './fused-map.ts';

/** The program's result on the CPU: each step through its op's own kernel, in order. */
function runSteps(
  inputs: readonly Tensor[],
  steps: readonly FusedStep[],
  shape: number[],
  ctx: Parameters<CpuKernel>[1],
): Tensor {
  const values: Tensor[] = [...inputs];
  for (const s of steps) {
    const kernel = getCpuKernel(s.op);
    if (!kernel) throw new Error(`fused_map: no CPU kernel for '${s.op}'`);
    const node: Node = {
      ...ctx.node,
      op: s.op,
      attrs: s.op === 'scale' ? { factor: s.factor ?? 1 } : {},
      type: { dtype: 'f32', shape },
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

/** WGSL statements evaluating the program at element `i` of `shape` into `t<last>`, inputs read as ld_in<k>. */
function programWgsl(
  u: Uniforms,
  inputs: readonly { shape: readonly number[] }[],
  steps: readonly FusedStep[],
  shape: readonly number[],
): string {
  const n = inputs.length;
  const name = (i: number) => (i < n ? `x${i}` : `t${i - n}`);
  let code = '';
  inputs.forEach((t, k) => {
    const ix = broadcastIndex(u, shape, t.shape, `p${k}_`);
    code += `${ix.code}  let x${k} = ld_in${k}(${ix.index});\n`;
  });
  steps.forEach((s, k) => {
    const [p, q, r] = s.args.map(name);
    const expr =
      s.op === 'scale'
        ? `${p} * ${u.f32v(s.factor ?? 1)}`
        : s.op === 'where'
          ? `select(${r}, ${q}, ${p} != 0.0)`
          : s.args.length === 1
            ? UNARY[s.op](p, 'f32')
            : BINARY[s.op](p, q, 'f32');
    code += `  let t${k} = ${expr};\n`;
  });
  return code;
}

const programDesc = (steps: readonly FusedStep[]) =>
  steps.map((s) => `${s.op}(${s.args.join(',')})`).join(';');

const webgpuFusedMap: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as FusedMapAttrs;
  const out = ctx.out.shape;
  return mapKernel({
    ctx,
    desc: {
      rank: out.length,
      bcast: ctx.inputs.map((t) => broadcastKind(out, t.shape)),
      prog: programDesc(a.steps),
    },
    helpers: MATH,
    body: (u) => `${programWgsl(u, ctx.inputs, a.steps, out)}  return t${a.steps.length - 1};`,
  });
};

// The reduction kernel reading each element through the program (fn pre).
const webgpuFusedReduce: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as FusedReduceAttrs;
  return reduction(a.reduce, {
    shape: a.shape,
    desc: { bcast: ctx.inputs.map((t) => broadcastKind(a.shape, t.shape)), prog: programDesc(a.steps) },
    fn: (u) =>
      `${MATH}fn pre(i: u32) -> f32 {\n${programWgsl(u, ctx.inputs, a.steps, a.shape)}  return t${a.steps.length - 1};\n}\n`,
  })(ctx);
};

if (!getCpuKernel('fused_map')) registerCpuKernel('fused_map', cpuFusedMap);
if (!getKernel('fused_map')) registerKernel('fused_map', webgpuFusedMap);
if (!getCpuKernel('fused_reduce')) registerCpuKernel('fused_reduce', cpuFusedReduce);
if (!getKernel('fused_reduce')) registerKernel('fused_reduce', webgpuFusedReduce);
