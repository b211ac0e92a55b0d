// A 4-bit quantized weight with everything needed to dequantize and to write it in
// bitsandbytes' layout: bitsandbytes' QuantState plus the packed codes (which bitsandbytes
// keeps in the parameter itself).

import {
  checkBlocksize4bit,
  checkQuantType,
  dequantize4bit,
  type QuantType,
  quantize4bit,
  quantMap4bit,
} from './blockwise4.ts';
import { compressAbsmax, decompressAbsmax, type NestedAbsmax } from './double-quant.ts';
import { QuantError } from './errors.ts';

/** The original weight dtype, spelled as bitsandbytes writes it in the quant_state JSON. */
export type WeightDType = 'float32' | 'float16' | 'bfloat16';
export const WEIGHT_DTYPES: readonly WeightDType[] = ['float32', 'float16', 'bfloat16'];

export type AbsmaxState = { kind: 'plain'; absmax: Float32Array } | ({ kind: 'nested' } & NestedAbsmax);

export interface QuantState {
  quantType: QuantType;
  blocksize: number;
  /** Shape of the original (unquantized) weight, e.g. [out, in]. */
  shape: number[];
  dtype: WeightDType;
  /** ceil(numel / 2) bytes, first element in the high nibble. */
  packed: Uint8Array;
  /** The 16-entry `quant_map` as bitsandbytes stores it (code order); dequantization uses the
   * built-in table, as bitsandbytes' kernels do. */
  quantMap: Float32Array;
  stats: AbsmaxState;
}

export interface QuantizeWeightOptions {
  quantType: QuantType;
  blocksize?: number;
  /** bitsandbytes' compress_statistics. */
  doubleQuant?: boolean;
  /** Default 'float32'; set it to the dtype the weight was stored in (recorded, not applied). */
  dtype?: WeightDType;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function quantizeWeight(
  x: Float32Array,
  shape: readonly number[],
  opts: QuantizeWeightOptions,
): QuantState {
  const n = numelOf(shape);
  if (n !== x.length)
    throw new QuantError(`weight of shape [${shape.join(', ')}] needs ${n} values, got ${x.length}`);
  const q = quantize4bit(x, { quantType: opts.quantType, blocksize: opts.blocksize ?? 64 });
  const stats: AbsmaxState = opts.doubleQuant
    ? { kind: 'nested', ...compressAbsmax(q.absmax, 256) }
    : { kind: 'plain', absmax: q.absmax };
  return {
    quantType: q.quantType,
    blocksize: q.blocksize,
    shape: [...shape],
    dtype: opts.dtype ?? 'float32',
    packed: q.packed,
    quantMap: quantMap4bit(q.quantType),
    stats,
  };
}

/** The per-block f32 absmax (decompressed when nested). */
export function stateAbsmax(state: QuantState): Float32Array {
  return state.stats.kind === 'plain' ? state.stats.absmax : decompressAbsmax(state.stats);
}

/** Row-major f32 values of the weight. */
export function dequantizeWeight(state: QuantState): Float32Array {
  checkQuantState(state);
  return dequantize4bit({
    quantType: state.quantType,
    blocksize: state.blocksize,
    numel: numelOf(state.shape),
    packed: state.packed,
    absmax: stateAbsmax(state),
  });
}

/** Throws a QuantError naming the first inconsistency between the arrays and the metadata. */
export function checkQuantState(state: QuantState): void {
  checkQuantType(state.quantType);
  checkBlocksize4bit(state.blocksize);
  const n = numelOf(state.shape);
  if (!state.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new QuantError(`shape [${state.shape.join(', ')}] must be non-negative integers`);
  }
  if (state.packed.length !== Math.ceil(n / 2)) {
    throw new QuantError(
      `packed weight has ${state.packed.length} bytes but shape [${state.shape.join(', ')}] needs ${Math.ceil(n / 2)}`,
    );
  }
  if (state.quantMap.length !== 16)
    throw new QuantError(`quant_map has ${state.quantMap.length} values, expected 16`);
  const blocks = Math.ceil(n / state.blocksize);
  const s = state.stats;
  const got = s.kind === 'plain' ? s.absmax.length : s.qabsmax.length;
  if (got !== blocks) {
    throw new QuantError(
      `absmax has ${got} entries but ${n} elements in blocks of ${state.blocksize} need ${blocks}`,
    );
  }
  if (s.kind === 'nested') {
    const nb = Math.ceil(blocks / s.nestedBlocksize);
    if (s.nestedAbsmax.length !== nb) {
      throw new QuantError(
        `nested_absmax has ${s.nestedAbsmax.length} entries but ${blocks} absmax values in blocks of ${s.nestedBlocksize} need ${nb}`,
      );
    }
    if (s.nestedQuantMap.length !== 256) {
      throw new QuantError(`nested_quant_map has ${s.nestedQuantMap.length} values, expected 256`);
    }
  }
}

/** Storage bits per weight from the real arrays: packed codes + absmax (f32, or uint8 codes +
 * nested f32 absmax + the f32 offset when nested). The 16- and 256-entry maps are constants
 * shared by every weight and are left out unless `includeMaps`. Expect 4.5 at blocksize 64,
 * about 4.127 with double quantization. */
export function bitsPerParameter(state: QuantState, opts: { includeMaps?: boolean } = {}): number {
  const n = numelOf(state.shape);
  let bits = state.packed.length * 8;
  const s = state.stats;
  if (s.kind === 'plain') bits += s.absmax.length * 32;
  else bits += s.qabsmax.length * 8 + s.nestedAbsmax.length * 32 + 32;
  if (opts.includeMaps) {
    bits += state.quantMap.length * 32;
    if (s.kind === 'nested') bits += s.nestedQuantMap.length * 32;
  }
  return bits / n;
}
