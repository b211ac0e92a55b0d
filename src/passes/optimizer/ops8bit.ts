// The ops of 8-bit optimizer states (bitsandbytes' blockwise 8-bit optimizers), registered
// from outside the core with their CPU semantics and no gradient:
//   block_absmax(x f32) {blocksize} -> f32 [ceil(n / blocksize)]     max |x| per block
//   quantize_blockwise8(x f32, absmax f32) {map, blocksize, keep_sign} -> u8 codes, x's shape
//   dequantize_blockwise8(codes u8, absmax f32) {map, blocksize} -> f32, codes' shape
// `map` is the dynamic map (src/quant/dynamic-map.ts): 'signed' for the first moment,
// 'unsigned' for the second. Encoding is x * (1 / absmax) (CUDA's __fdividef(x, absmax) is
// x * approx-rcp(absmax); we use the correctly rounded reciprocal, as quantize_blockwise does)
// followed by the dynamic-map search; an all-zero block (absmax 0) encodes like NaN, to code 0.
// keep_sign is the optimizer kernel's fix-up for the first moment: when the code's value and x
// differ in sign bit, the code moves one step toward x's side (wrapping as unsigned char).
// Values are f32 whatever the CPU run's precision, as on the GPU.
import { attrsOf, type CpuKernel, empty, getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { TensorType } from '../../ir/graph.ts';
import { defineOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import { formatShape, numel, ShapeError } from '../../ir/shape.ts';
import { blockAbsmax, inverseAbsmax } from '../../quant/block.ts';
import {
  type BlockAbsmaxAttrs,
  blockAbsmaxAttrs,
  type Dequantize8Attrs,
  type DynamicMapName,
  dequantize8Attrs,
  dynamicMap,
  type Quantize8Attrs,
  quantize8Attrs,
} from '../../quant/blockwise8-attrs.ts';
import { encodeDynamic } from '../../quant/dynamic-map.ts';
import { hasVjp, none, registerVjp } from '../autodiff/index.ts';

// The maps are read on every kernel call: keep one copy each.
const MAP_OF = { signed: dynamicMap('signed'), unsigned: dynamicMap('unsigned') };

export { type DynamicMapName, dynamicMap };

function checkAbsmax(op: string, x: TensorType, absmax: TensorType, bs: number): void {
  const blocks = Math.ceil(numel(x.shape) / bs);
  if (absmax.dtype !== 'f32' || absmax.shape.length !== 1 || absmax.shape[0] !== blocks) {
    throw new ShapeError(
      `${op}: absmax must be f32 [${blocks}] (${numel(x.shape)} values in blocks of ${bs}), got ${absmax.dtype}${formatShape(absmax.shape)}`,
    );
  }
}

export const blockAbsmaxOp = defineOp({
  name: 'block_absmax',
  arity: 1,
  attrs: blockAbsmaxAttrs,
  infer: ([x], a) => {
    if (x.dtype !== 'f32') throw new ShapeError(`block_absmax: input must be f32, got ${x.dtype}`);
    return { dtype: 'f32', shape: [Math.ceil(numel(x.shape) / a.blocksize)] };
  },
  doc: 'absmax[b] = max |x| over block b of the flattened input',
});

export const quantize8Op = defineOp({
  name: 'quantize_blockwise8',
  arity: 2,
  attrs: quantize8Attrs,
  infer: ([x, absmax], a) => {
    if (x.dtype !== 'f32') throw new ShapeError(`quantize_blockwise8: input must be f32, got ${x.dtype}`);
    checkAbsmax('quantize_blockwise8', x, absmax, a.blocksize);
    return { dtype: 'u8', shape: [...x.shape] };
  },
  doc: 'codes[i] = nearest dynamic-map entry of x[i] / absmax[i / blocksize]',
});

export const dequantize8Op = defineOp({
  name: 'dequantize_blockwise8',
  arity: 2,
  attrs: dequantize8Attrs,
  infer: ([codes, absmax], a) => {
    if (codes.dtype !== 'u8')
      throw new ShapeError(`dequantize_blockwise8: codes must be u8, got ${codes.dtype}`);
    checkAbsmax('dequantize_blockwise8', codes, absmax, a.blocksize);
    return { dtype: 'f32', shape: [...codes.shape] };
  },
  doc: 'x[i] = map[codes[i]] * absmax[i / blocksize]',
});

/** Sign bit of an f32 value (true for -0). */
function signbit(v: number): boolean {
  return v < 0 || Object.is(v, -0);
}

/** One value's code: the dynamic-map search, then the optimizer's sign fix-up when asked. */
export function encode8(code: Float32Array, x: number, inv: number, keepSign: boolean): number {
  // absmax 0: x * inf is NaN or inf on the GPU alike; CUDA's search sends NaN to code 0.
  let c = Number.isFinite(inv) ? encodeDynamic(code, Math.fround(x * inv)) : 0;
  if (keepSign && signbit(code[c]) !== signbit(x)) c = (c + (x > 0 ? 1 : 255)) & 255;
  return c;
}

function f32(t: { data: ArrayLike<number> }): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

export const blockAbsmaxKernel: CpuKernel = ([x], ctx) => {
  const a = attrsOf<BlockAbsmaxAttrs>(ctx);
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  out.data.set(blockAbsmax(f32(x), a.blocksize));
  return out;
};

export const quantize8Kernel: CpuKernel = ([x, absmax], ctx) => {
  const a = attrsOf<Quantize8Attrs>(ctx);
  const code = MAP_OF[a.map];
  const xs = f32(x);
  const am = f32(absmax);
  const out = empty(ctx, 'u8', ctx.node.type.shape);
  for (let i = 0; i < xs.length; i++) {
    out.data[i] = encode8(code, xs[i], inverseAbsmax(am[Math.floor(i / a.blocksize)]), a.keep_sign);
  }
  return out;
};

export const dequantize8Kernel: CpuKernel = ([codes, absmax], ctx) => {
  const a = attrsOf<Dequantize8Attrs>(ctx);
  const code = MAP_OF[a.map];
  const am = f32(absmax);
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  for (let i = 0; i < out.data.length; i++) {
    out.data[i] = Math.fround(code[codes.data[i]] * am[Math.floor(i / a.blocksize)]);
  }
  return out;
};

if (!hasOp('block_absmax')) {
  registerOp(blockAbsmaxOp);
  registerOp(quantize8Op);
  registerOp(dequantize8Op);
}
if (!getCpuKernel('block_absmax')) {
  registerCpuKernel('block_absmax', blockAbsmaxKernel);
  registerCpuKernel('quantize_blockwise8', quantize8Kernel);
  registerCpuKernel('dequantize_blockwise8', dequantize8Kernel);
}
if (!hasVjp('block_absmax')) {
  const why = 'optimizer state is updated outside the gradient';
  registerVjp('block_absmax', none(why));
  registerVjp('quantize_blockwise8', none(why));
  registerVjp('dequantize_blockwise8', none(why));
}

export function blockAbsmaxOf(b: GraphBuilder, x: Value, a: BlockAbsmaxAttrs): Value {
  return b.emit('block_absmax', [x], { ...a });
}

export function quantizeBlockwise8Op(
  b: GraphBuilder,
  x: Value,
  absmax: Value,
  a: Omit<Quantize8Attrs, 'keep_sign'> & { keep_sign?: boolean },
): Value {
  return b.emit('quantize_blockwise8', [x, absmax], { ...a });
}

export function dequantizeBlockwise8Op(
  b: GraphBuilder,
  codes: Value,
  absmax: Value,
  a: Dequantize8Attrs,
): Value {
  return b.emit('dequantize_blockwise8', [codes, absmax], { ...a });
}
