// fused_map on both backends. CPU: each step through the op's own CPU kernel, in order
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
  registerKernel,
  UNARY,
} from '../../backends/webgpu/index.ts';
import type { Node } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { FusedMapAttrs } from './fused-map.ts';

const cpuFusedMap: CpuKernel = (inputs, ctx) => {
  const a = ctx.node.attrs as unknown as FusedMapAttrs;
  const values: Tensor[] = [...inputs];
  for (const s of a.steps) {
    const kernel = getCpuKernel(s.op);
    if (!kernel) throw new Error(`fused_map: no CPU kernel for '${s.op}'`);
    const node: Node = {
      ...ctx.node,
      op: s.op,
      attrs: s.op === 'scale' ? { factor: s.factor ?? 1 } : {},
      type: { dtype: 'f32', shape: a.shape },
    };
    values.push(
      kernel(
        s.args.map((i) => values[i]),
        { ...ctx, node },
      ),
    );
  }
  return values[values.length - 1];
};

const webgpuFusedMap: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as FusedMapAttrs;
  const out = ctx.out.shape;
  const n = ctx.inputs.length;
  const name = (i: number) => (i < n ? `x${i}` : `t${i - n}`);
  return mapKernel({
    ctx,
    desc: {
      rank: out.length,
      bcast: ctx.inputs.map((t) => broadcastKind(out, t.shape)),
      prog: a.steps.map((s) => `${s.op}(${s.args.join(',')})`).join(';'),
    },
    helpers: MATH,
    body: (u) => {
      let code = '';
      ctx.inputs.forEach((t, k) => {
        const ix = broadcastIndex(u, out, t.shape, `p${k}_`);
        code += `${ix.code}  let x${k} = ld_in${k}(${ix.index});\n`;
      });
      a.steps.forEach((s, k) => {
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
      return `${code}  return t${a.steps.length - 1};`;
    },
  });
};

if (!getCpuKernel('fused_map')) registerCpuKernel('fused_map', cpuFusedMap);
if (!getKernel('fused_map')) registerKernel('fused_map', webgpuFusedMap);
