// The QLoRA ops, registered from outside the core (ir/ops registerOp):
//   dequant_4bit(packed u8, absmax f32) {quant_type, blocksize, shape} -> f32 weight
//   dequant_absmax(qabsmax u8, nested_absmax f32, nested_quant_map f32[256])
//     {offset, nested_blocksize} -> f32 absmax          (double quantization)
//   linear_4bit(x, packed, absmax[, bias]) {quant_type, blocksize, out_features,
//     in_features, transpose, nested: null} -> x W^T (+ b), or x W when transpose (the
//     input gradient); with double quantization (nested: {offset, nested_blocksize})
//     linear_4bit(x, packed, qabsmax u8, nested_absmax, nested_quant_map[, bias]) decodes
//     the absmax inside the product too, so no f32 absmax is ever written.
// with their VJPs: the packed storage is frozen, so only linear_4bit passes a
// gradient, to x (linear_4bit with transpose flipped) and to the bias (a row sum).
// Packed weights may be [ceil(n/2)] or bitsandbytes' [ceil(n/2), 1].
import { z } from 'zod';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { TensorType } from '../../ir/graph.ts';
import { defineOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import { formatShape, numel, ShapeError } from '../../ir/shape.ts';
import { hasVjp, none, registerVjp, vjp } from '../../passes/autodiff/index.ts';
import { BLOCKSIZES_4BIT } from '../../quant/blockwise4.ts';

const quantType = z.enum(['nf4', 'fp4']);
const blocksize = z
  .number()
  .int()
  .refine((b) => BLOCKSIZES_4BIT.includes(b), {
    error: `blocksize must be one of ${BLOCKSIZES_4BIT.join(', ')}`,
  });
const dim = z.number().int().nonnegative();

export const dequant4bitAttrs = z.strictObject({ quant_type: quantType, blocksize, shape: z.array(dim) });
export const dequantAbsmaxAttrs = z.strictObject({
  /** bitsandbytes' nested_offset; null when the graph was built without weights (not runnable). */
  offset: z.number().nullable(),
  nested_blocksize: z.number().int().positive(),
});
export const linear4bitAttrs = z.strictObject({
  quant_type: quantType,
  blocksize,
  out_features: dim,
  in_features: dim,
  transpose: z.boolean().default(false),
  /** Double quantization: the absmax inputs are (qabsmax, nested_absmax, nested_quant_map). */
  nested: dequantAbsmaxAttrs.nullable().default(null),
});
export type Dequant4bitAttrs = z.output<typeof dequant4bitAttrs>;
export type DequantAbsmaxAttrs = z.output<typeof dequantAbsmaxAttrs>;
export type Linear4bitAttrs = z.output<typeof linear4bitAttrs>;

/** Checks packed codes and absmax for a weight of `n` elements. */
function checkStorage(packed: TensorType, absmax: TensorType, n: number, bs: number, op: string): void {
  const bytes = Math.ceil(n / 2);
  const okShape = packed.shape.length === 1 || (packed.shape.length === 2 && packed.shape[1] === 1);
  if (packed.dtype !== 'u8' || !okShape || numel(packed.shape) !== bytes) {
    throw new ShapeError(
      `${op}: packed codes must be u8 [${bytes}] or [${bytes}, 1] for ${n} elements, got ${packed.dtype}${formatShape(packed.shape)}`,
    );
  }
  const blocks = Math.ceil(n / bs);
  if (absmax.dtype !== 'f32' || absmax.shape.length !== 1 || absmax.shape[0] !== blocks) {
    throw new ShapeError(
      `${op}: absmax must be f32 [${blocks}] (${n} elements in blocks of ${bs}), got ${absmax.dtype}${formatShape(absmax.shape)}`,
    );
  }
}

export const dequant4bitOp = defineOp({
  name: 'dequant_4bit',
  arity: 2,
  attrs: dequant4bitAttrs,
  infer: ([packed, absmax], a) => {
    checkStorage(packed, absmax, numel(a.shape), a.blocksize, 'dequant_4bit');
    return { dtype: 'f32', shape: [...a.shape] };
  },
  doc: 'bitsandbytes 4-bit dequantization: w[i] = table[code_i] * absmax[i / blocksize]',
});

export const dequantAbsmaxOp = defineOp({
  name: 'dequant_absmax',
  arity: 3,
  attrs: dequantAbsmaxAttrs,
  infer: ([q, nested, map], a) => {
    if (q.dtype !== 'u8' || q.shape.length !== 1)
      throw new ShapeError(
        `dequant_absmax: quantized absmax must be u8 [blocks], got ${q.dtype}${formatShape(q.shape)}`,
      );
    const nb = Math.ceil(q.shape[0] / a.nested_blocksize);
    if (nested.dtype !== 'f32' || nested.shape.length !== 1 || nested.shape[0] !== nb) {
      throw new ShapeError(
        `dequant_absmax: nested_absmax must be f32 [${nb}] (${q.shape[0]} values in blocks of ${a.nested_blocksize}), got ${nested.dtype}${formatShape(nested.shape)}`,
      );
    }
    if (map.dtype !== 'f32' || numel(map.shape) !== 256 || map.shape.length !== 1)
      throw new ShapeError(
        `dequant_absmax: nested_quant_map must be f32 [256], got ${map.dtype}${formatShape(map.shape)}`,
      );
    return { dtype: 'f32', shape: [q.shape[0]] };
  },
  doc: 'double-quant absmax: absmax[b] = map[q[b]] * nested_absmax[b / nested_blocksize] + offset',
});

/** How many storage inputs (packed + absmax, or packed + the three nested ones) linear_4bit takes. */
export function storageArity(a: Pick<Linear4bitAttrs, 'nested'>): number {
  return a.nested ? 4 : 2;
}

export const linear4bitOp = defineOp({
  name: 'linear_4bit',
  arity: [3, 6],
  attrs: linear4bitAttrs,
  infer: (ins, a) => {
    const s = storageArity(a);
    if (ins.length !== s + 1 && ins.length !== s + 2) {
      throw new ShapeError(
        `linear_4bit: takes x, ${a.nested ? 'packed, qabsmax, nested_absmax, nested_quant_map' : 'packed, absmax'} and an optional bias, got ${ins.length} inputs`,
      );
    }
    const [x, packed] = ins;
    const bias = ins[s + 1];
    const absmax = a.nested ? dequantAbsmaxOp.infer(ins.slice(2, 5), a.nested) : ins[2];
    checkStorage(packed, absmax, a.out_features * a.in_features, a.blocksize, 'linear_4bit');
    const [inF, outF] = a.transpose ? [a.out_features, a.in_features] : [a.in_features, a.out_features];
    if (x.dtype !== 'f32') throw new ShapeError(`linear_4bit: input must be f32, got ${x.dtype}`);
    if (x.shape.length === 0 || x.shape[x.shape.length - 1] !== inF) {
      throw new ShapeError(
        `linear_4bit: input ${formatShape(x.shape)} does not end in ${inF} (weight [${a.out_features}, ${a.in_features}]${a.transpose ? ', transposed' : ''})`,
      );
    }
    if (bias) {
      if (a.transpose) throw new ShapeError('linear_4bit: a transposed product (x W) takes no bias');
      if (bias.dtype !== 'f32' || bias.shape.length !== 1 || bias.shape[0] !== outF)
        throw new ShapeError(
          `linear_4bit: bias must be f32 [${outF}], got ${bias.dtype}${formatShape(bias.shape)}`,
        );
    }
    return { dtype: 'f32', shape: [...x.shape.slice(0, -1), outF] };
  },
  doc: 'y = x W^T + b (or x W when transpose) with W dequantized from 4-bit codes on the fly',
});

if (!hasOp('dequant_4bit')) {
  registerOp(dequant4bitOp);
  registerOp(dequantAbsmaxOp);
  registerOp(linear4bitOp);
}

if (!hasVjp('dequant_4bit')) {
  registerVjp('dequant_4bit', none('4-bit codes are frozen storage'));
  registerVjp('dequant_absmax', none('quantized absmax is frozen storage'));
  registerVjp(
    'linear_4bit',
    vjp(
      (c) => {
        const a = c.node.attrs as unknown as Linear4bitAttrs;
        const s = storageArity(a);
        const storage = c.inputs.slice(1, s + 1);
        const dx = c.needs[0]
          ? c.b.emit('linear_4bit', [c.cot, ...storage], { ...a, transpose: !a.transpose })
          : null;
        const outF = c.cot.type.shape[c.cot.type.shape.length - 1];
        const db = c.needs[s + 1] ? c.b.sum(c.b.reshape(c.cot, [-1, outF]), [0]) : null;
        return [dx, ...storage.map(() => null), db];
      },
      // Static: packed and absmax; the nested storage (3, 4) is frozen, so never needed.
      [1, 2],
    ),
  );
}

/** Emits dequant_4bit. */
export function dequant4bit(b: GraphBuilder, packed: Value, absmax: Value, a: Dequant4bitAttrs): Value {
  return b.emit('dequant_4bit', [packed, absmax], { ...a, shape: [...a.shape] });
}

/** Emits dequant_absmax. */
export function dequantAbsmax(
  b: GraphBuilder,
  q: Value,
  nested: Value,
  map: Value,
  a: DequantAbsmaxAttrs,
): Value {
  return b.emit('dequant_absmax', [q, nested, map], { ...a });
}

/** Double-quantized absmax storage: u8 codes, f32 nested absmax, the 256-entry map and its attrs. */
export interface NestedAbsmax {
  readonly q: Value;
  readonly nested: Value;
  readonly map: Value;
  readonly attrs: DequantAbsmaxAttrs;
}

/** Emits linear_4bit; `absmax` is the f32 absmax or the double-quantized storage (fused decode). */
export function linear4bit(
  b: GraphBuilder,
  x: Value,
  packed: Value,
  absmax: Value | NestedAbsmax,
  a: Omit<Linear4bitAttrs, 'transpose' | 'nested'> & { transpose?: boolean },
  bias?: Value,
): Value {
  const nested = 'q' in absmax ? absmax : null;
  const storage = nested ? [packed, nested.q, nested.nested, nested.map] : [packed, absmax as Value];
  return b.emit('linear_4bit', bias ? [x, ...storage, bias] : [x, ...storage], {
    ...a,
    nested: nested ? { ...nested.attrs } : null,
  });
}
