// The math ops are defined once (src/ir/ops/math.ts): the op table, the CPU and WebGPU
// kernel tables, the fused programs' steps and the VJPs are all derived from that list, so
// none can drift from it or miss an op. (Each op's values are checked per backend and
// against finite differences by the op suite, test/ops.)
import { describe, expect, expectTypeOf, it } from 'vitest';
import { getCpuKernel } from '../../src/backends/cpu/index.ts';
import { BINARY, getKernel, TERNARY, UNARY } from '../../src/backends/webgpu/index.ts';
import { STEP_OPS } from '../../src/backends/webgpu/kernels/steps.ts';
import type { Kernel, KernelPlan } from '../../src/backends/webgpu/program.ts';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import { getOp } from '../../src/ir/ops/index.ts';
import {
  FUSABLE_OPS,
  MATH_OPS,
  type MathDef,
  type StepAttr,
  stepAttrs,
  stepOf,
} from '../../src/ir/ops/math.ts';
import { vjpRule } from '../../src/passes/autodiff/index.ts';
import { FUSABLE, fusedStepSchema } from '../../src/passes/fuse/fused-map.ts';

const defs = Object.values(MATH_OPS) as MathDef[];
const TABLES = { unary: UNARY, binary: BINARY, ternary: TERNARY };

describe('math ops: one definition, every table derived from it', () => {
  it.each(defs.map((d) => [d.name, d] as const))('%s', (name, d) => {
    expect(getOp(name)).toBe(d);
    expect(getCpuKernel(name)).toBeTypeOf('function');
    expect(getKernel(name)).toBeTypeOf('function');
    // The fused kernels compose the very emitter the op's own kernel uses.
    expect(TABLES[d.kind][name]).toBe(d.wgsl);
    const rule = vjpRule(name);
    if ('none' in d.grad) expect(rule).toEqual({ kind: 'none', why: d.grad.none });
    else {
      expect(rule.kind).toBe('vjp');
      // A ternary op's first input selects: no derivative.
      expect(rule.kind === 'vjp' && rule.nonDiff).toEqual(d.kind === 'ternary' ? [0] : []);
    }
    // Fusable exactly when every attr is a number (a step holds them inline).
    expect(FUSABLE.has(name)).toBe(d.fusable);
    expect(STEP_OPS.has(name)).toBe(d.fusable);
  });

  it('each op names itself under its own key, once', () => {
    for (const [key, d] of Object.entries(MATH_OPS)) expect(d.name).toBe(key);
    expect(new Set(defs.map((d) => d.name)).size).toBe(defs.length);
  });

  it('fusable: every math op but gelu (its approximate is not a number)', () => {
    expect([...FUSABLE_OPS].sort()).toEqual(
      defs
        .map((d) => d.name)
        .filter((n) => n !== 'gelu')
        .sort(),
    );
    expect(MATH_OPS.scale.numericAttrs).toEqual(['factor']);
    expect(MATH_OPS.gelu.numericAttrs).toEqual([]);
  });

  it('a step carries its numeric attrs inline, as the IR text has them ({op, args, factor?})', () => {
    const s = stepOf('scale', [0], { factor: 0.25 });
    expect(s).toEqual({ op: 'scale', args: [0], factor: 0.25 });
    expect(Object.keys(s)).toEqual(['op', 'args', 'factor']);
    expect(stepAttrs(s)).toEqual({ factor: 0.25 });
    expect(stepOf('where', [2, 0, 1], {})).toEqual({ op: 'where', args: [2, 0, 1] });
    expect(fusedStepSchema.safeParse(s).success).toBe(true);
    // A scale step without its factor, or an attr its op does not have, is refused.
    expect(fusedStepSchema.safeParse({ op: 'scale', args: [0] }).success).toBe(false);
    expect(fusedStepSchema.safeParse({ op: 'add', args: [0, 1], factor: 2 }).success).toBe(false);
    expect(fusedStepSchema.safeParse({ op: 'gelu', args: [0] }).success).toBe(false);
  });

  it('numeric attrs are uniforms: kernels differing only in them share a pipeline; other attrs pick the code', () => {
    const plan = (f: (b: GraphBuilder, x: Value) => Value) => {
      const b = new GraphBuilder();
      const v = f(b, b.input('x', 'f32', [4, 4]));
      const g = b.build({ v });
      const node = g.node(v.id);
      const inputs = node.inputs.map((i) => g.node(i).type);
      const kernel = getKernel(node.op) as Kernel;
      const [step] = (kernel({ node, inputs, out: node.type, f16: false, software: true }) as KernelPlan)
        .steps;
      return { desc: JSON.stringify(step.desc), code: step.code, uniforms: [...step.uniforms.bytes()] };
    };
    const a = plan((b, x) => b.scale(x, 0.25));
    const c = plan((b, x) => b.scale(x, -3));
    expect(c.desc).toBe(a.desc);
    expect(c.code).toBe(a.code);
    expect(c.uniforms).not.toEqual(a.uniforms);
    const exact = plan((b, x) => b.gelu(x));
    const tanh = plan((b, x) => b.gelu(x, 'tanh'));
    expect(exact.desc).toContain('"approximate":"none"');
    expect(tanh.desc).toContain('"approximate":"tanh"');
    expect(tanh.code).not.toBe(exact.code);
  });

  it('the step attrs type is the numeric attrs of the fusable ops', () => {
    expectTypeOf<StepAttr>().toEqualTypeOf<'factor'>();
  });
});
