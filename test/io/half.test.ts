import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../src/io/half.ts';

const f32 = (x: number) => Math.fround(x);

describe('f16', () => {
  it('decodes known values', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(f16BitsToF32(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
  });

  it('encode(decode(h)) is the identity for every non-NaN half', () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(v)))).toBe(true);
      else expect(f32ToF16Bits(v)).toBe(h);
    }
  });

  it('rounds to nearest, ties to even, at every midpoint between neighbouring halves', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const lo = f16BitsToF32(h);
      const hi = f16BitsToF32(h + 1);
      const mid = (lo + hi) / 2; // exact in f32 (halves have 11 significant bits)
      expect(f32(mid)).toBe(mid);
      expect(f32ToF16Bits(mid)).toBe(h % 2 === 0 ? h : h + 1);
      // Just off the midpoint goes to the nearer neighbour.
      const eps = (hi - lo) / 64;
      expect(f32ToF16Bits(mid - eps)).toBe(h);
      expect(f32ToF16Bits(mid + eps)).toBe(h + 1);
    }
  });

  it('overflows to infinity and underflows to zero like IEEE', () => {
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // midpoint of max and 2^16 rounds to even = inf
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // tie between 0 and the least subnormal: even = 0
    expect(f32ToF16Bits(2 ** -25 * 1.0001)).toBe(1);
    expect(f32ToF16Bits(-1e-30)).toBe(0x8000);
  });
});

describe('bf16', () => {
  it('is the upper half of f32, rounded to nearest even', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    // 1 + 2^-8 is the midpoint of 1 and 1 + 2^-7: ties to even (1).
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3*2^-8 is the midpoint of 1+2^-7 (odd) and 1+2^-6: rounds up to even.
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(Number.NaN)))).toBe(true);
  });

  it('round trips bf16 values and lands within half an ulp', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const h = f32ToBf16Bits(x);
        expect(f32ToBf16Bits(bf16BitsToF32(h))).toBe(h);
        const y = bf16BitsToF32(h);
        if (Number.isFinite(y) && Math.abs(y) >= 2 ** -126) {
          const ulp = 2 ** (Math.floor(Math.log2(Math.abs(y))) - 7);
          expect(Math.abs(y - x)).toBeLessThanOrEqual(ulp / 2 + ulp * 1e-6);
        }
      }),
      { numRuns: 200 },
    );
  });
});
