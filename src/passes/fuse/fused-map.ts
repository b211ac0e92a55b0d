// The `fused_map` op: a chain (a tree) of f32 elementwise ops of one output shape run as
// one kernel. Its inputs are the chain's external inputs (each broadcast to the output
// shape as its reader would); `steps` is the program: step k applies `op` to `args`, an
// arg below the input count naming an input, above it an earlier step (index - inputs);
// the last step is the result; a step holds its op's attrs inline (scale's `factor`). Ops
// fusable: the math ops whose attrs are all numbers (ir/ops/math.ts FUSABLE_OPS). Made by
// the fuse-elementwise pass after autodiff, so it has no VJP; the CPU runs each step with
// the op's own kernel, WebGPU composes the ops' WGSL.
import { z } from 'zod';
import type { TensorType } from '../../ir/graph.ts';
import { defineOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import {
  FUSABLE_OPS,
  type MathDef,
  mathOp,
  STEP_ATTRS,
  type StepAttr,
  stepAttrs,
} from '../../ir/ops/math.ts';
import { reducedShape } from '../../ir/ops/reduce.ts';
import { broadcastShapes } from '../../ir/shape.ts';

/** The ops a step may apply: the math ops whose attrs are all numbers (ir/ops/math.ts). */
export const FUSABLE = FUSABLE_OPS;

/** `{op, args}` and the op's numeric attrs inline (scale's `factor`). */
export const fusedStepSchema = z
  .strictObject({
    op: z.string().refine((o) => FUSABLE.has(o), { error: 'not a fusable elementwise op' }),
    args: z.array(z.number().int().nonnegative()).min(1).max(3),
    ...(Object.fromEntries(STEP_ATTRS.map((k) => [k, z.number().optional()])) as Record<
      StepAttr,
      z.ZodOptional<z.ZodNumber>
    >),
  })
  .refine((s) => !FUSABLE.has(s.op) || (mathOp(s.op) as MathDef).attrs.safeParse(stepAttrs(s)).success, {
    error: "the step's attrs are not its op's",
  });

export type FusedStep = z.infer<typeof fusedStepSchema>;

const attrs = z.strictObject({
  steps: z.array(fusedStepSchema).min(1),
  shape: z.array(z.number().int().nonnegative()),
});

export type FusedMapAttrs = z.infer<typeof attrs>;

export const fusedMap = defineOp({
  name: 'fused_map',
  arity: [1, Number.POSITIVE_INFINITY],
  attrs,
  infer: (inputs: readonly TensorType[], a) => {
    for (const t of inputs)
      if (t.dtype !== 'f32') throw new Error(`fused_map inputs are f32, got ${t.dtype}`);
    const n = inputs.length;
    a.steps.forEach((s, k) => {
      for (const i of s.args)
        if (i >= n + k)
          throw new Error(`fused_map step ${k} (${s.op}) reads arg ${i}, not an input or an earlier step`);
    });
    const b = inputs.reduce<number[]>((acc, t) => broadcastShapes(acc, t.shape), []);
    if (
      b.length > a.shape.length ||
      b.some((d, i) => d !== 1 && d !== a.shape[a.shape.length - b.length + i])
    )
      throw new Error(`fused_map inputs broadcast to [${b}], not into its shape [${a.shape}]`);
    return { dtype: 'f32', shape: [...a.shape] };
  },
  doc: 'a chain of f32 elementwise ops of one output shape as one kernel (fuse-elementwise)',
});

if (!hasOp('fused_map')) registerOp(fusedMap);

const reduceAttrs = attrs.extend({
  /** The reduction applied to the program's result. */
  reduce: z.enum(['sum', 'mean', 'max']),
  axes: z.array(z.number().int()),
  keepdims: z.boolean().default(false),
});

export type FusedReduceAttrs = z.infer<typeof reduceAttrs>;

/**
 * A reduction (sum, mean, max) of a fused_map program's result, as one kernel: the program
 * runs as the reduction loads each element, so its result is never stored (a squared
 * gradient summed for the clip norm, softmax's masked exponentials summed per row).
 */
export const fusedReduce = defineOp({
  name: 'fused_reduce',
  arity: [1, Number.POSITIVE_INFINITY],
  attrs: reduceAttrs,
  infer: (inputs: readonly TensorType[], a) => {
    const mapped = fusedMap.infer(inputs, { steps: a.steps, shape: a.shape });
    return { dtype: 'f32', shape: reducedShape(mapped.shape, a.axes, a.keepdims) };
  },
  doc: 'a reduction of a chain of f32 elementwise ops, as one kernel (fuse-elementwise)',
});

if (!hasOp('fused_reduce')) registerOp(fusedReduce);
