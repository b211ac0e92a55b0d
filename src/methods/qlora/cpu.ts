// CPU semantics of the QLoRA ops (the oracle the WGSL kernels are tested against).
// Decoding is always f32, as bitsandbytes' kernels do, whatever the run's precision;
// linear_4bit accumulates in f64 like the core linear.
import { attrsOf, type CpuKernel, empty, getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { dequantize4bit } from '../../quant/blockwise4.ts';
import { dequantizeBlockwise8 } from '../../quant/dynamic-map.ts';
import './ops.ts';
import { type Dequant4bitAttrs, type DequantAbsmaxAttrs, type Linear4bitAttrs, storageArity } from './ops.ts';

function f32(t: Tensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

/** The f32 weight a node's packed codes and absmax stand for. */
export function decode4bit(
  packed: Tensor,
  absmax: Tensor,
  a: { quant_type: 'nf4' | 'fp4'; blocksize: number },
  n: number,
): Float32Array {
  return dequantize4bit({
    quantType: a.quant_type,
    blocksize: a.blocksize,
    numel: n,
    packed: packed.data as Uint8Array,
    absmax: f32(absmax),
  });
}

export const dequant4bitKernel: CpuKernel = ([packed, absmax], ctx) => {
  const a = attrsOf<Dequant4bitAttrs>(ctx);
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  out.data.set(decode4bit(packed, absmax, a, out.data.length));
  return out;
};

/** The f32 absmax a double-quantized weight stands for: map[q] * nested + offset, as bitsandbytes. */
export function decodeNestedAbsmax(
  q: Tensor,
  nested: Tensor,
  map: Tensor,
  a: DequantAbsmaxAttrs,
): Float32Array {
  if (a.offset === null) {
    throw new Error(
      'the double-quant offset is unknown: the qlora pass ran without weights (shapes only); run it with the model weights',
    );
  }
  const v = dequantizeBlockwise8({
    codes: q.data as Uint8Array,
    absmax: f32(nested),
    blocksize: a.nested_blocksize,
    code: f32(map),
  });
  const off = Math.fround(a.offset);
  for (let i = 0; i < v.length; i++) v[i] = Math.fround(v[i] + off);
  return v;
}

export const dequantAbsmaxKernel: CpuKernel = ([q, nested, map], ctx) => {
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  out.data.set(decodeNestedAbsmax(q, nested, map, attrsOf<DequantAbsmaxAttrs>(ctx)));
  return out;
};

export const linear4bitKernel: CpuKernel = (ins, ctx) => {
  const a = attrsOf<Linear4bitAttrs>(ctx);
  const { out_features: outF, in_features: inF } = a;
  const [x, packed] = ins;
  const bias = ins[storageArity(a) + 1] as Tensor | undefined;
  const absmax = a.nested
    ? tensor('f32', [ins[2].data.length], decodeNestedAbsmax(ins[2], ins[3], ins[4], a.nested))
    : ins[2];
  const w = decode4bit(packed, absmax, a, outF * inF);
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  const [K, N] = a.transpose ? [outF, inF] : [inF, outF];
  const rows = K === 0 ? 0 : x.data.length / K;
  const acc = new Float64Array(N);
  for (let r = 0; r < rows; r++) {
    if (bias) for (let n = 0; n < N; n++) acc[n] = bias.data[n];
    else acc.fill(0);
    for (let k = 0; k < K; k++) {
      const xv = x.data[r * K + k];
      // y = x W^T: W[n, k] at n*inF + k; y = x W: W[k, n] at k*inF + n.
      if (a.transpose) for (let n = 0; n < N; n++) acc[n] += xv * w[k * inF + n];
      else for (let n = 0; n < N; n++) acc[n] += xv * w[n * inF + k];
    }
    out.data.set(acc, r * N);
  }
  return out;
};

if (!getCpuKernel('dequant_4bit')) {
  registerCpuKernel('dequant_4bit', dequant4bitKernel);
  registerCpuKernel('dequant_absmax', dequantAbsmaxKernel);
  registerCpuKernel('linear_4bit', linear4bitKernel);
}
