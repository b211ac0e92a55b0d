// Elementwise programs as WGSL: steps (op, args) over inputs loaded at their broadcast
// index, each step through its op's own WGSL expression (ir/ops/math.ts; numeric attrs
// such as scale's factor as uniforms). fused_map's kernel (passes/fuse/kernels.ts) and the
// members of group kernels (kernel-groups.ts: a fused_map, or one plain elementwise node
// as a program of one step) are written with these, so a node computes the same
// expression in any kernel.
import {
  type ElementwiseStep,
  FUSABLE_OPS,
  mathOp,
  stepAttrs,
  stepOf,
  wgslOf,
} from '../../../ir/ops/math.ts';
import { normAxes, numel } from '../../../ir/shape.ts';
import type { KernelContext, Uniforms } from '../program.ts';
import { MATH, wgslAttrs } from './elementwise.ts';
import { broadcastIndex, broadcastKind, collapseBroadcast } from './map.ts';

export type { ElementwiseStep };

/** The ops a step may apply (the fusable math ops). */
export const STEP_OPS = FUSABLE_OPS;

/** WGSL statements `let t<j> = ...;` for the f32 steps, input i named `name(i)`. */
export function stepsWgsl(
  steps: readonly ElementwiseStep[],
  u: Uniforms,
  name: (i: number) => string,
): string {
  let code = '';
  steps.forEach((s, k) => {
    const d = mathOp(s.op);
    if (!d?.fusable) throw new Error(`internal: '${s.op}' is not an op a fused step may apply`);
    const args = s.args.map(name);
    const attrs = wgslAttrs(d, stepAttrs(s)).wgsl(u);
    code += `  let t${k} = ${wgslOf(
      d,
      args,
      'f32',
      attrs,
      args.map(() => 'f32'),
    )};\n`;
  });
  return code;
}

/**
 * WGSL statements evaluating the program at element `i` of `shape` into `t<last>`: input k
 * loaded at its broadcast index through `read(k, index)` (default `ld_in<k>(index)`), then the steps.
 */
export function programWgsl(
  u: Uniforms,
  inputs: readonly { shape: readonly number[] }[],
  steps: readonly ElementwiseStep[],
  shape: readonly number[],
  read: (k: number, index: string) => string = (k, index) => `ld_in${k}(${index})`,
): string {
  const n = inputs.length;
  const c = collapseBroadcast(
    shape,
    inputs.map((t) => t.shape),
  );
  let code = '';
  c.inputs.forEach((t, k) => {
    const ix = broadcastIndex(u, c.out, t, `p${k}_`);
    code += `${ix.code}  let x${k} = ${read(k, ix.index)};\n`;
  });
  return code + stepsWgsl(steps, u, (i) => (i < n ? `x${i}` : `t${i - n}`));
}

/**
 * The program's index pattern for a cache key: its collapsed rank and each input's
 * broadcast kind (programWgsl's index code depends on nothing else).
 */
export function programShape(inputs: readonly { shape: readonly number[] }[], shape: readonly number[]) {
  const c = collapseBroadcast(
    shape,
    inputs.map((t) => t.shape),
  );
  return { rank: c.out.length, bcast: c.inputs.map((t) => broadcastKind(c.out, t)) };
}

/** The program's part of a cache key. */
export const progDesc = (steps: readonly ElementwiseStep[]) =>
  steps.map((s) => `${s.op}(${s.args.join(',')})`).join(';');

/**
 * An f32 program of `steps` over the node's inputs, with the elements of `out` (default the
 * node's shape), as a group-kernel member (kernel-groups.ts MapMember).
 */
export function stepsMember(ctx: KernelContext, steps: readonly ElementwiseStep[], out = ctx.out.shape) {
  const p = programShape(ctx.inputs, out);
  const { bcast } = p;
  return {
    desc: `r${p.rank}[${p.bcast.join(',')}]${progDesc(steps)}`,
    helpers: MATH,
    bcast,
    body: (u: Uniforms, read: (k: number, index: string) => string) =>
      `${programWgsl(u, ctx.inputs, steps, out, read)}  return t${steps.length - 1};`,
  };
}

/** A plain f32 elementwise node as a program of one step (undefined: not one of STEP_OPS, or not all f32). */
export function elementwiseMember(ctx: KernelContext) {
  const { node } = ctx;
  if (!STEP_OPS.has(node.op) || ctx.out.dtype !== 'f32' || ctx.inputs.some((t) => t.dtype !== 'f32'))
    return undefined;
  return stepsMember(ctx, [
    stepOf(
      node.op,
      ctx.inputs.map((_, i) => i),
      node.attrs,
    ),
  ]);
}

/**
 * Rows and elements per row of a reduction over `axes` of `shape` when those are its
 * trailing axes (each result reduces contiguous elements), else undefined.
 */
export function trailingRows(
  shape: readonly number[],
  axes: readonly number[],
): { rows: number; count: number } | undefined {
  const ax = normAxes(axes, shape.length);
  const first = shape.length - ax.length;
  if (!ax.every((a) => a >= first)) return undefined;
  return { rows: numel(shape.slice(0, first)), count: numel(shape.slice(first)) };
}

/** A plain f32 sum, mean or max over trailing axes, as a group-kernel member. */
export function trailingReduceMember(ctx: KernelContext) {
  const { node } = ctx;
  const kind = node.op;
  if ((kind !== 'sum' && kind !== 'mean' && kind !== 'max') || ctx.inputs[0].dtype !== 'f32')
    return undefined;
  const shape = ctx.inputs[0].shape;
  const rows = trailingRows(shape, (node.attrs.axes as number[]).map(Number));
  if (!rows) return undefined;
  return {
    kind,
    ...rows,
    program: {
      desc: 'ld',
      helpers: '',
      bcast: ['same'],
      body: (_: Uniforms, read: (k: number, index: string) => string) => `  return ${read(0, 'i')};`,
    },
  } as const;
}
