// Tensor encodings of GGUF data: f32 and f16 little-endian, and ggml's Q8_0, exactly as
// ggml's reference quantizer lays it out (ggml-quants.c quantize_row_q8_0_ref): per block
// of 32, d = absmax / 127 stored as f16, q = roundf(x / d) with 1/d taken from the f32 d.
import { f16BitsToF32, f32ToF16Bits } from '../half.ts';
import { GGML_TYPE, type GgmlType, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './types.ts';

/** Bytes of `n` values in `type` (n a multiple of 32 for q8_0). */
export function encodedBytes(type: GgmlType, n: number): number {
  if (type === 'f32') return 4 * n;
  if (type === 'f16') return 2 * n;
  return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
}

/** C's roundf: halves away from zero (Math.round rounds -2.5 to -2). */
function roundf(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5);
}

export function encode(type: GgmlType, data: ArrayLike<number>): Uint8Array {
  const n = data.length;
  const out = new Uint8Array(encodedBytes(type, n));
  const view = new DataView(out.buffer);
  if (type === 'f32') {
    for (let i = 0; i < n; i++) view.setFloat32(4 * i, data[i], true);
  } else if (type === 'f16') {
    for (let i = 0; i < n; i++) view.setUint16(2 * i, f32ToF16Bits(data[i]), true);
  } else {
    if (n % Q8_0_BLOCK !== 0) throw new Error(`q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${n}`);
    for (let b = 0; b < n / Q8_0_BLOCK; b++) {
      let amax = 0;
      for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(data[b * Q8_0_BLOCK + j]));
      const d = Math.fround(amax / 127);
      const id = d ? Math.fround(1 / d) : 0;
      const at = b * Q8_0_BLOCK_BYTES;
      view.setUint16(at, f32ToF16Bits(d), true);
      for (let j = 0; j < Q8_0_BLOCK; j++)
        view.setInt8(at + 2 + j, roundf(Math.fround(data[b * Q8_0_BLOCK + j] * id)));
    }
  }
  return out;
}

/** The values `encode` wrote, as llama.cpp reads them back (tests, and the stated rounding). */
export function decode(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  if (type === 'f32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  else if (type === 'f16') for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
  else
    for (let b = 0; b < n / Q8_0_BLOCK; b++) {
      const at = b * Q8_0_BLOCK_BYTES;
      const d = f16BitsToF32(view.getUint16(at, true));
      for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = view.getInt8(at + 2 + j) * d;
    }
  return out;
}

export { GGML_TYPE };
