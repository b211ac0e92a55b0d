// Graph leaves: runtime inputs, parameters (bound from a weight store) and constants.
import { z } from 'zod';
import { DTYPES } from '../dtype.ts';
import { numel, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

const dtype = z.enum(DTYPES);
const shape = z.array(z.number().int().nonnegative());

/** How a parameter is created when the weight store does not have it. */
export const initSpec = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('zeros') }),
  z.strictObject({ kind: z.literal('ones') }),
  z.strictObject({ kind: z.literal('normal'), std: z.number().nonnegative(), mean: z.number().optional() }),
  z.strictObject({ kind: z.literal('uniform'), low: z.number(), high: z.number() }),
  /** nn.Linear's default: kaiming-uniform with negative slope a over fan_in = shape[1]. */
  z.strictObject({ kind: z.literal('kaiming_uniform'), a: z.number() }),
  /** Must come from the weight store (a checkpoint, an adapter file). */
  z.strictObject({ kind: z.literal('given') }),
]);
export type InitSpec = z.infer<typeof initSpec>;

export const input = defineOp({
  name: 'input',
  arity: 0,
  attrs: z.strictObject({ name: z.string().min(1), dtype, shape }),
  infer: (_, a) => ({ dtype: a.dtype, shape: a.shape }),
  doc: 'a runtime input, fed by name',
});

export const param = defineOp({
  name: 'param',
  arity: 0,
  attrs: z.strictObject({
    name: z.string().min(1),
    dtype,
    shape,
    role: z.enum(['frozen', 'trainable', 'state']),
    init: initSpec,
  }),
  infer: (_, a) => ({ dtype: a.dtype, shape: a.shape }),
  doc: 'a weight bound at run time from the weight store by its (HF) name',
});

export const constant = defineOp({
  name: 'const',
  arity: 0,
  attrs: z.strictObject({ value: z.union([z.number(), z.array(z.number())]), dtype, shape }),
  infer: (_, a) => {
    if (Array.isArray(a.value) && a.value.length !== numel(a.shape)) {
      throw new ShapeError(`const has ${a.value.length} values for shape [${a.shape.join(',')}]`);
    }
    return { dtype: a.dtype, shape: a.shape };
  },
  doc: 'a constant: one value filled over the shape, or every value row-major',
});
