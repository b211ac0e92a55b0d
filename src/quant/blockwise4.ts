// Blockwise 4-bit quantization (NF4 / FP4), bit-exact to bitsandbytes' kQuantizeBlockwise /
// kDequantizeBlockwise: blocks of `blocksize` consecutive elements of the flattened tensor
// (a block may cross rows; the last may be partial), one f32 absmax per block, codes packed
// two per byte with the FIRST element in the HIGH nibble.

import { blockAbsmax, inverseAbsmax } from './block.ts';
import { QuantError } from './errors.ts';
import { encodeFP4, FP4_TABLE } from './fp4.ts';
import { encodeNF4, NF4_TABLE } from './nf4.ts';

const f32 = Math.fround;

export type QuantType = 'nf4' | 'fp4';

/** Blocksizes bitsandbytes' quantize_4bit / dequantize_4bit accept. */
export const BLOCKSIZES_4BIT: readonly number[] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

export interface Quantized4bit {
  quantType: QuantType;
  blocksize: number;
  /** Number of quantized elements (the packed array holds ceil(numel / 2) bytes). */
  numel: number;
  packed: Uint8Array;
  absmax: Float32Array;
}

export function checkBlocksize4bit(blocksize: number): void {
  if (!BLOCKSIZES_4BIT.includes(blocksize)) {
    throw new QuantError(
      `invalid 4-bit blocksize ${blocksize}: bitsandbytes allows ${BLOCKSIZES_4BIT.join(', ')}`,
    );
  }
}

export function checkQuantType(quantType: string): asserts quantType is QuantType {
  if (quantType !== 'nf4' && quantType !== 'fp4') {
    throw new QuantError(`invalid 4-bit quant type '${quantType}': use 'nf4' or 'fp4'`);
  }
}

/** The 16-entry code -> value table of a 4-bit type (code order). */
export function table4bit(quantType: QuantType): Float32Array {
  return quantType === 'nf4' ? NF4_TABLE : FP4_TABLE;
}

/** The `quant_map` bitsandbytes stores with a 4-bit weight (get_4bit_type): the table, except
 * that FP4 entry 8 is +0.0 there (Python's `-0` is the integer 0), while its CUDA dequantization
 * (and FP4_TABLE) gives -0.0 for code 8. */
export function quantMap4bit(quantType: QuantType): Float32Array {
  const t = table4bit(quantType).slice();
  if (quantType === 'fp4') t[8] = 0;
  return t;
}

/** Encodes one normalised value to a 4-bit code. */
export function encode4bit(quantType: QuantType, x: number): number {
  return quantType === 'nf4' ? encodeNF4(x) : encodeFP4(x);
}

export function quantize4bit(
  x: Float32Array,
  opts: { quantType: QuantType; blocksize?: number },
): Quantized4bit {
  const quantType = opts.quantType;
  checkQuantType(quantType);
  const blocksize = opts.blocksize ?? 64;
  checkBlocksize4bit(blocksize);
  const n = x.length;
  const absmax = blockAbsmax(x, blocksize);
  const packed = new Uint8Array(Math.ceil(n / 2));
  const encode = quantType === 'nf4' ? encodeNF4 : encodeFP4;
  for (let b = 0; b < absmax.length; b++) {
    // The kernel multiplies by an f32 reciprocal (not x / absmax): matters at thresholds.
    const inv = inverseAbsmax(absmax[b]);
    const end = Math.min(n, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) {
      const code = encode(f32(x[i] * inv));
      packed[i >> 1] |= i & 1 ? code : code << 4;
    }
  }
  // Odd length: the kernel loads 0 for the missing element and encodes 0 * inv (the code of 0.0).
  if (n & 1) packed[n >> 1] |= encode(f32(0 * inverseAbsmax(absmax[absmax.length - 1])));
  return { quantType, blocksize, numel: n, packed, absmax };
}

/** Expands packed codes (high nibble first) into one code per element. */
export function unpack4bit(packed: Uint8Array, numel: number): Uint8Array {
  if (packed.length !== Math.ceil(numel / 2)) {
    throw new QuantError(
      `packed 4-bit data has ${packed.length} bytes; ${numel} elements need ${Math.ceil(numel / 2)}`,
    );
  }
  const codes = new Uint8Array(numel);
  for (let i = 0; i < numel; i++) codes[i] = i & 1 ? packed[i >> 1] & 0x0f : packed[i >> 1] >> 4;
  return codes;
}

/** Packs one code per element two per byte, first element in the high nibble; an odd tail
 * gets `padCode` in its low nibble. */
export function pack4bit(codes: Uint8Array, padCode = 0): Uint8Array {
  const packed = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c > 15) throw new QuantError(`4-bit code ${c} at element ${i} is out of range 0..15`);
    packed[i >> 1] |= i & 1 ? c : c << 4;
  }
  if (codes.length & 1) packed[codes.length >> 1] |= padCode & 0x0f;
  return packed;
}

/** x[i] = table[code_i] * absmax[i / blocksize], in f32 (as kDequantizeBlockwise). */
export function dequantize4bit(q: Quantized4bit): Float32Array {
  checkQuantType(q.quantType);
  checkBlocksize4bit(q.blocksize);
  const { numel, packed, absmax, blocksize } = q;
  if (packed.length !== Math.ceil(numel / 2)) {
    throw new QuantError(
      `packed 4-bit data has ${packed.length} bytes; ${numel} elements need ${Math.ceil(numel / 2)}`,
    );
  }
  const blocks = Math.ceil(numel / blocksize);
  if (absmax.length !== blocks) {
    throw new QuantError(
      `absmax has ${absmax.length} entries; ${numel} elements in blocks of ${blocksize} need ${blocks}`,
    );
  }
  const table = table4bit(q.quantType);
  const out = new Float32Array(numel);
  for (let i = 0; i < numel; i++) {
    const byte = packed[i >> 1];
    const code = i & 1 ? byte & 0x0f : byte >> 4;
    out[i] = table[code] * absmax[Math.floor(i / blocksize)];
  }
  return out;
}
