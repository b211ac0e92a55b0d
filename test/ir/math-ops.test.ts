// The math ops are defined once (src/ir/ops/math.ts): the op table, the CPU and WebGPU
// kernel tables, the fused kernels' WGSL snippets and the VJPs are all derived from that
// list, so none can drift from it or miss an op. (Each op's values are checked per backend
// and against finite differences by the op suite, test/ops.)
import { describe, expect, it } from 'vitest';
import { getCpuKernel } from '../../src/backends/cpu/index.ts';
import { BINARY, getKernel, UNARY } from '../../src/backends/webgpu/index.ts';
import { getOp } from '../../src/ir/ops/index.ts';
import { MATH_OPS, type MathDef } from '../../src/ir/ops/math.ts';
import { vjpRule } from '../../src/passes/autodiff/index.ts';

const defs = Object.values(MATH_OPS) as MathDef[];

describe('math ops: one definition, every table derived from it', () => {
  it.each(defs.map((d) => [d.name, d] as const))('%s', (name, d) => {
    expect(getOp(name)).toBe(d);
    expect(getCpuKernel(name)).toBeTypeOf('function');
    expect(getKernel(name)).toBeTypeOf('function');
    // The fused kernels compose the very emitter the op's own kernel uses.
    expect((d.kind === 'unary' ? UNARY : BINARY)[name]).toBe(d.wgsl);
    const rule = vjpRule(name);
    if ('none' in d.grad) expect(rule).toEqual({ kind: 'none', why: d.grad.none });
    else expect(rule.kind).toBe('vjp');
  });

  it('each op names itself under its own key, once', () => {
    for (const [key, d] of Object.entries(MATH_OPS)) expect(d.name).toBe(key);
    expect(new Set(defs.map((d) => d.name)).size).toBe(defs.length);
  });
});
