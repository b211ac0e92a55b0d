// WGSL kernel of quantize_4bit (src/methods/qlora/quantize-op.ts): a map kernel over the
// packed u8 output, one byte (elements 2i, 2i + 1, same block since blocksizes are even)
// per item. Bit-exact to the CPU (src/quant encodeNF4 / encodeFP4) without trusting GPU
// float corner cases:
// - 1 / absmax is computed in integers, correctly rounded (WGSL division may be 2.5 ULP);
// - non-finite products (0 * inf of an all-zero block, inf, NaN) are classified from the
//   bits, since WGSL lets a device produce undetermined values there; products that would
//   reach |p| >= 2 take the stand-in 2.0 (every code saturates below 1);
// - the code is the count of thresholds strictly below the value (ties go low), mapped
//   through the value order of the codes; thresholds are f32 bit patterns.
// Assumes the device keeps f32 subnormals (x or x / absmax below 2^-126), as the IEEE
// adapters do; a flush-to-zero device could differ there on FP4's sign of -0.0 codes.

import { encode4bit, type QuantType, table4bit } from '../../../quant/blockwise4.ts';
import { NF4_THRESHOLDS } from '../../../quant/nf4.ts';
import type { Kernel } from '../program.ts';
import { getKernel, registerKernel } from './index.ts';
import { mapKernel } from './map.ts';

const bitsOf = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0];
const litF32 = (v: number) => `bitcast<f32>(0x${bitsOf(v).toString(16)}u)`;

/** Codes in ascending order of value, and the thresholds between neighbours (x > t[k] passes). */
export function encodeSteps(q: QuantType): { codes: number[]; thresholds: number[] } {
  const t = table4bit(q);
  if (q === 'nf4') return { codes: [...t.keys()], thresholds: [...NF4_THRESHOLDS] };
  // FP4: the magnitude codes 0..7 in value order; each pivot is the largest f32 that still
  // encodes to the lower code, found by bisection on the bit patterns of the reference encoder.
  const codes = [0, 1, 2, 3, 4, 5, 6, 7].sort((a, b) => t[a] - t[b]);
  const rank = (bits: number) =>
    codes.indexOf(encode4bit(q, new Float32Array(Uint32Array.of(bits).buffer)[0]));
  const thresholds: number[] = [];
  for (let r = 0; r + 1 < codes.length; r++) {
    let lo = 0; // rank(lo) <= r
    let hi = 0x3f800000; // 1.0: rank 7
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (rank(mid) <= r) lo = mid;
      else hi = mid;
    }
    thresholds.push(new Float32Array(Uint32Array.of(lo).buffer)[0]);
  }
  return { codes, thresholds };
}

const RECIP = `// 1 / a, correctly rounded (bit-exact to f32(1 / a) on the host), subnormals and all.
fn recip(a: f32) -> f32 {
  let b = bitcast<u32>(a);
  let s = b & 0x80000000u;
  var e = i32((b >> 23u) & 0xffu);
  var m = b & 0x7fffffu;
  if (e == 255) { if (m != 0u) { return a; } return bitcast<f32>(s); }
  if (e == 0) {
    if (m == 0u) { return bitcast<f32>(s | 0x7f800000u); }
    let lz = i32(countLeadingZeros(m)) - 8;
    m = m << u32(lz);
    e = 1 - lz;
  } else { m = m | 0x800000u; }
  // a = m 2^(e - 150), m in [2^23, 2^24): 1 / a = (2^47 / m) 2^(103 - e).
  if (m == 0x800000u) {
    let pe = 254 - e;
    if (pe >= 255) { return bitcast<f32>(s | 0x7f800000u); }
    if (pe >= 1) { return bitcast<f32>(s | (u32(pe) << 23u)); }
    return bitcast<f32>(s | 0x400000u);
  }
  var q = 1u;
  var r = 0x1000000u - m;
  for (var k = 0u; k < 23u; k++) {
    r = r << 1u;
    q = q << 1u;
    if (r >= m) { r = r - m; q = q | 1u; }
  }
  var be = 253 - e;
  if (be >= 255) { return bitcast<f32>(s | 0x7f800000u); }
  if (be >= 1) {
    let r2 = r << 1u;
    if (r2 > m || (r2 == m && (q & 1u) == 1u)) { q = q + 1u; }
    if (q == 0x1000000u) { q = 0x800000u; be = be + 1; }
    if (be >= 255) { return bitcast<f32>(s | 0x7f800000u); }
    return bitcast<f32>(s | (u32(be) << 23u) | (q & 0x7fffffu));
  }
  let sh = u32(1 - be);
  var mant = q >> sh;
  let low = q & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  if (low > half || (low == half && (r != 0u || (mant & 1u) == 1u))) { mant = mant + 1u; }
  return bitcast<f32>(s | mant);
}
`;

/** WGSL: recip, the encoder of a normalised value and code_of(x, inv) (x * inv, then encode). */
export function encodeWgsl(q: QuantType): string {
  const { codes, thresholds } = encodeSteps(q);
  const count = thresholds.map((t) => `  c = c + select(0u, 1u, v > ${litF32(t)});`).join('\n');
  const signed = q === 'fp4';
  return `${RECIP}var<private> QCODE: array<u32, ${codes.length}> = array<u32, ${codes.length}>(${codes.map((c) => `${c}u`).join(', ')});
fn enc(p: f32) -> u32 {
  let v = ${signed ? 'abs(p)' : 'p'};
  var c = 0u;
${count}
  return QCODE[c]${signed ? ' | select(0u, 8u, p < 0.0)' : ''};
}
// The code of f32(x * inv), with the non-finite and saturating cases decided on the bits.
fn code_of(x: f32, inv: f32) -> u32 {
  let xb = bitcast<u32>(x);
  let ib = bitcast<u32>(inv);
  let xa = xb & 0x7fffffffu;
  let ia = ib & 0x7fffffffu;
  let neg = ((xb ^ ib) & 0x80000000u) != 0u;
  // NaN: either is NaN, or 0 * inf (an all-zero block) either way round.
  if (xa > 0x7f800000u || ia > 0x7f800000u || (xa == 0u && ia == 0x7f800000u) || (ia == 0u && xa == 0x7f800000u)) {
    return 0u;
  }
  if (xa == 0u || ia == 0u) { return enc(bitcast<f32>((xb ^ ib) & 0x80000000u)); }
  // |x inv| >= 2 (inf included): every threshold is below 1.
  if ((xa >> 23u) + (ia >> 23u) >= 255u) { return enc(select(2.0, -2.0, neg)); }
  return enc(x * inv);
}
`;
}

const quantize4: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as { quant_type: QuantType; blocksize: number };
  return mapKernel({
    ctx,
    desc: { quant_type: a.quant_type, blocksize: a.blocksize },
    helpers: encodeWgsl(a.quant_type),
    body: (u) => {
      const n = u.u32(ctx.inputs[0].shape.reduce((p, d) => p * d, 1));
      // An odd tail encodes 0 * inv of the last block, as bitsandbytes' kernel loads a 0.
      return `  let j = i * 2u;
  let inv = recip(ld_in1(j / ${a.blocksize}u));
  var x1 = 0.0;
  if (j + 1u < ${n}) { x1 = ld_in0(j + 1u); }
  return (code_of(ld_in0(j), inv) << 4u) | code_of(x1, inv);`;
    },
  });
};

export const quant4EncodeKernels = { quantize_4bit: quantize4 };

for (const [op, k] of Object.entries(quant4EncodeKernels)) if (!getKernel(op)) registerKernel(op, k);
