// bitsandbytes' 8-bit dynamic map (create_dynamic_map) and blockwise 8-bit quantization with
// it (kQuantizeBlockwise with General8bit / kDequantizeBlockwise). Used for double
// quantization of absmax (signed map, blocksize 256) and for 8-bit optimizer states
// (bitsandbytes' 8-bit Adam: first moment signed map, second moment unsigned map, blocksize 256).

import { blockAbsmax, inverseAbsmax } from './block.ts';
import { QuantError } from './errors.ts';

const f32 = Math.fround;

/** torch.linspace(0.1, 1, steps, dtype=float32) on the CPU as PyTorch computes it: the first half
 * as start + step * i, the second as end - step * (steps - 1 - i), in f32. PyTorch's x86 builds
 * contract those into one FMA (a single rounding); with that, this map matches a published dump
 * of bitsandbytes' signed map bit for bit (checked in the tests), whereas two roundings differ in
 * 42 of 256 entries. */
function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out: number[] = [];
  // step * k is exact in f64 (24-bit x <= 8-bit), so rounding the f64 sum once is a true f32 FMA.
  for (let i = 0; i < steps; i++) out.push(i < half ? f32(s + step * i) : f32(e - step * (steps - 1 - i)));
  return out;
}

function buildDynamicMap(signed: boolean): Float32Array {
  const maxExponentBits = 7;
  const nonSignBits = 7;
  const data: number[] = [];
  for (let i = 0; i < maxExponentBits; i++) {
    const items = signed
      ? 2 ** (i + nonSignBits - maxExponentBits) + 1
      : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    const b = linspaceF32(0.1, 1, items);
    // `10 ** k * means` multiplies an f32 tensor by a Python scalar: PyTorch rounds the scalar
    // to f32 and multiplies in f32.
    const scale = f32(10 ** (-(maxExponentBits - 1) + i));
    for (let j = 0; j + 1 < items; j++) data.push(f32(scale * f32(f32(b[j] + b[j + 1]) / 2)));
    if (signed) for (let j = 0; j + 1 < items; j++) data.push(-f32(scale * f32(f32(b[j] + b[j + 1]) / 2)));
  }
  // additional_items = 2^(7 - 7) - 1 = 0 for the default arguments.
  data.push(0, 1);
  if (data.length !== 256) throw new Error(`dynamic map has ${data.length} values, expected 256`);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}

const SIGNED = buildDynamicMap(true);
const UNSIGNED = buildDynamicMap(false);

/** create_dynamic_map(signed) with the default 8 bits / 7 exponent bits: 256 sorted f32 values.
 * Signed: -0.99296875 .. 1.0 with 0 at index 127. Unsigned: 0 .. 1.0. Returns a fresh copy. */
export function createDynamicMap(signed = true): Float32Array {
  return (signed ? SIGNED : UNSIGNED).slice();
}

/** Nearest code index of a normalised value in a sorted 256-entry map, exactly as the CUDA
 * dQuantize<0> binary search (and the optimizers' quantize_2D, which gives the same result):
 * seven halving steps from pivot 127, then a comparison with the midpoint to the neighbour on
 * x's side. A tie on a midpoint goes to the pivot the search ended on. NaN gives code 0. */
export function encodeDynamic(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[upperPivot];
  if (lowerPivot === 0) lower = code[lowerPivot];
  if (x > val) return x > f32(f32(upper + val) * 0.5) ? upperPivot : pivot;
  return x < f32(f32(lower + val) * 0.5) ? lowerPivot : pivot;
}

/** Blocksizes the CUDA blockwise 8-bit kernel accepts. */
export const BLOCKSIZES_8BIT: readonly number[] = [64, 128, 256, 512, 1024, 2048, 4096];

export function checkBlocksize8bit(blocksize: number): void {
  if (!BLOCKSIZES_8BIT.includes(blocksize)) {
    throw new QuantError(
      `invalid 8-bit blocksize ${blocksize}: bitsandbytes allows ${BLOCKSIZES_8BIT.join(', ')}`,
    );
  }
}

function checkMap(code: Float32Array): void {
  if (code.length !== 256)
    throw new QuantError(`an 8-bit quantization map needs 256 values, got ${code.length}`);
}

export interface Quantized8bit {
  codes: Uint8Array;
  absmax: Float32Array;
  blocksize: number;
  /** The 256-entry map the codes index. */
  code: Float32Array;
}

/** quantize_blockwise: per block absmax = max |x|, codes = nearest map entry of x * (1/absmax).
 * Default blocksize 256 (what double quantization and the 8-bit optimizers use; bitsandbytes'
 * quantize_blockwise itself defaults to 4096), default map the signed dynamic map. */
export function quantizeBlockwise8(
  x: Float32Array,
  opts: { blocksize?: number; code?: Float32Array } = {},
): Quantized8bit {
  const blocksize = opts.blocksize ?? 256;
  checkBlocksize8bit(blocksize);
  const code = opts.code ?? SIGNED;
  checkMap(code);
  const n = x.length;
  const blocks = Math.ceil(n / blocksize);
  const absmax = blockAbsmax(x, blocksize);
  const codes = new Uint8Array(n);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(n, start + blocksize);
    const inv = inverseAbsmax(absmax[b]);
    for (let i = start; i < end; i++) codes[i] = encodeDynamic(code, f32(x[i] * inv));
  }
  return { codes, absmax, blocksize, code: code.slice() };
}

/** dequantize_blockwise: x[i] = code[q[i]] * absmax[i / blocksize] in f32. */
export function dequantizeBlockwise8(q: Quantized8bit): Float32Array {
  checkBlocksize8bit(q.blocksize);
  checkMap(q.code);
  const blocks = Math.ceil(q.codes.length / q.blocksize);
  if (q.absmax.length !== blocks) {
    throw new QuantError(
      `absmax has ${q.absmax.length} entries; ${q.codes.length} codes in blocks of ${q.blocksize} need ${blocks}`,
    );
  }
  const out = new Float32Array(q.codes.length);
  for (let i = 0; i < out.length; i++) out[i] = q.code[q.codes[i]] * q.absmax[Math.floor(i / q.blocksize)];
  return out;
}
