// quantize_4bit as a graph op, the inverse of dequant_4bit (./ops.ts), registered from outside
// the core with its CPU semantics and no gradient:
//   quantize_4bit(x f32 [...], absmax f32 [ceil(n / blocksize)]) {quant_type, blocksize}
//     -> u8 [ceil(n / 2)]: bitsandbytes' packed codes, first element in the high nibble.
// The absmax is an input (block_absmax computes it in a graph) so the packed bytes are what
// dequant_4bit consumes: quantize_4bit -> dequant_4bit is bitsandbytes' round trip.
// Encoding is src/quant's: x * f32(1 / absmax), NF4/FP4 thresholds, an odd tail padded with
// the code of 0 * (1 / absmax) of the last block.
import type { z } from 'zod';
import '../../backends/webgpu/kernels/quant4-encode.ts';
import { attrsOf, type CpuKernel, empty, getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import { defineOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import { formatShape, numel, ShapeError } from '../../ir/shape.ts';
import { hasVjp, none, registerVjp } from '../../passes/autodiff/index.ts';
import { inverseAbsmax } from '../../quant/block.ts';
import { encode4bit, pack4bit } from '../../quant/blockwise4.ts';
import { dequant4bitAttrs } from './ops.ts';

export const quantize4bitAttrs = dequant4bitAttrs.omit({ shape: true });
export type Quantize4bitAttrs = z.output<typeof quantize4bitAttrs>;

export const quantize4bitOp = defineOp({
  name: 'quantize_4bit',
  arity: 2,
  attrs: quantize4bitAttrs,
  infer: ([x, absmax], a) => {
    if (x.dtype !== 'f32') throw new ShapeError(`quantize_4bit: input must be f32, got ${x.dtype}`);
    const n = numel(x.shape);
    const blocks = Math.ceil(n / a.blocksize);
    if (absmax.dtype !== 'f32' || absmax.shape.length !== 1 || absmax.shape[0] !== blocks) {
      throw new ShapeError(
        `quantize_4bit: absmax must be f32 [${blocks}] (${n} values in blocks of ${a.blocksize}), got ${absmax.dtype}${formatShape(absmax.shape)}`,
      );
    }
    return { dtype: 'u8', shape: [Math.ceil(n / 2)] };
  },
  doc: 'bitsandbytes 4-bit quantization: code_i = encode(x[i] * (1 / absmax[i / blocksize])), two per byte',
});

function f32(t: { data: ArrayLike<number> }): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

/** Packed codes of `x` under a given per-block absmax (quantize4bit's loop, absmax supplied). */
export function encode4bitBlocks(x: Float32Array, absmax: Float32Array, a: Quantize4bitAttrs): Uint8Array {
  const codes = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    codes[i] = encode4bit(
      a.quant_type,
      Math.fround(x[i] * inverseAbsmax(absmax[Math.floor(i / a.blocksize)])),
    );
  }
  const last = absmax.length > 0 ? inverseAbsmax(absmax[absmax.length - 1]) : 1;
  return pack4bit(codes, encode4bit(a.quant_type, Math.fround(0 * last)));
}

export const quantize4bitKernel: CpuKernel = ([x, absmax], ctx) => {
  const a = attrsOf<Quantize4bitAttrs>(ctx);
  const out = empty(ctx, 'u8', ctx.node.type.shape);
  out.data.set(encode4bitBlocks(f32(x), f32(absmax), a));
  return out;
};

if (!hasOp('quantize_4bit')) registerOp(quantize4bitOp);
if (!getCpuKernel('quantize_4bit')) registerCpuKernel('quantize_4bit', quantize4bitKernel);
if (!hasVjp('quantize_4bit')) registerVjp('quantize_4bit', none('4-bit codes are not differentiable'));

/** Emits quantize_4bit (absmax from block_absmax, or any f32 [ceil(n / blocksize)]). */
export function quantize4bitOf(b: GraphBuilder, x: Value, absmax: Value, a: Quantize4bitAttrs): Value {
  return b.emit('quantize_4bit', [x, absmax], { ...a });
}
