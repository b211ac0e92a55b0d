// Double quantization of 4-bit absmax (bitsandbytes' compress_statistics=True):
// offset = mean(absmax); absmax - offset is quantized blockwise (256) to uint8 with the
// signed dynamic map, keeping one f32 absmax per 256 blocks. Costs 8/64 + 32/(64*256)
// bits per weight at blocksize 64 instead of 32/64.

import { createDynamicMap, dequantizeBlockwise8, quantizeBlockwise8 } from './dynamic-map.ts';
import { QuantError } from './errors.ts';

const f32 = Math.fround;

export interface NestedAbsmax {
  /** uint8 codes of absmax - offset (bitsandbytes stores these as `absmax` when nested). */
  qabsmax: Uint8Array;
  /** f32 absmax of each nested block (`nested_absmax`). */
  nestedAbsmax: Float32Array;
  /** The 256-entry map the codes index (`nested_quant_map`, the signed dynamic map). */
  nestedQuantMap: Float32Array;
  /** `nested_blocksize`, 256 in bitsandbytes' quantize_4bit. */
  nestedBlocksize: number;
  /** `nested_offset`: the f32 mean of the original absmax. */
  offset: number;
}

/** f32 mean of absmax. bitsandbytes takes torch's mean on the device, whose f32 reduction order
 * is not specified; we use the correctly rounded mean (f64 sum), so an offset may differ from a
 * CUDA run in its last bit. On load the stored offset is used as is. */
export function meanF32(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return f32(x.length === 0 ? 0 : s / x.length);
}

export function compressAbsmax(absmax: Float32Array, nestedBlocksize = 256): NestedAbsmax {
  const offset = meanF32(absmax);
  const centered = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centered[i] = absmax[i] - offset;
  const q = quantizeBlockwise8(centered, { blocksize: nestedBlocksize, code: createDynamicMap(true) });
  return {
    qabsmax: q.codes,
    nestedAbsmax: q.absmax,
    nestedQuantMap: q.code,
    nestedBlocksize,
    offset,
  };
}

/** absmax[b] = f32(dyn[q[b]] * absmax2[b / 256]) + offset, in f32 (dequantize_blockwise, then
 * `absmax += offset`). */
export function decompressAbsmax(n: NestedAbsmax): Float32Array {
  const blocks = Math.ceil(n.qabsmax.length / n.nestedBlocksize);
  if (n.nestedAbsmax.length !== blocks) {
    throw new QuantError(
      `nested absmax has ${n.nestedAbsmax.length} entries; ${n.qabsmax.length} quantized absmax values in blocks of ${n.nestedBlocksize} need ${blocks}`,
    );
  }
  const out = dequantizeBlockwise8({
    codes: n.qabsmax,
    absmax: n.nestedAbsmax,
    blocksize: n.nestedBlocksize,
    code: n.nestedQuantMap,
  });
  const offset = f32(n.offset);
  for (let i = 0; i < out.length; i++) out[i] = out[i] + offset;
  return out;
}
