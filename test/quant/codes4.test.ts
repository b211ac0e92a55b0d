import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFP4,
  encodeNF4,
  FP4_TABLE,
  NF4_TABLE,
  NF4_THRESHOLDS,
  quantMap4bit,
} from '../../src/quant/index.ts';

const f32 = Math.fround;
const unitF32 = fc.float({ min: -1, max: 1, noNaN: true });

/** Nearest table entry by f64 distance; undefined when two entries are (nearly) equally close. */
function nearest(table: Float32Array, x: number): number | undefined {
  const d = Array.from(table, (t) => Math.abs(x - t));
  const order = d.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0]);
  if (order[1][0] - order[0][0] < 1e-6 && table[order[0][1]] !== table[order[1][1]]) return undefined;
  return order[0][1];
}

describe('NF4 encode', () => {
  it('has the bitsandbytes table, sorted, with 0 at code 7', () => {
    expect(NF4_TABLE.length).toBe(16);
    expect(NF4_TABLE[0]).toBe(-1);
    expect(NF4_TABLE[7]).toBe(0);
    expect(NF4_TABLE[15]).toBe(1);
    expect(NF4_TABLE[8]).toBe(f32(0.07958029955625534));
    for (let i = 1; i < 16; i++) expect(NF4_TABLE[i]).toBeGreaterThan(NF4_TABLE[i - 1]);
  });

  it("uses the kernel's thresholds: f32 midpoints of adjacent codes", () => {
    for (let i = 0; i < 15; i++) expect(NF4_THRESHOLDS[i]).toBe(f32((NF4_TABLE[i] + NF4_TABLE[i + 1]) / 2));
  });

  it('maps each table value to its own code and a midpoint tie to the lower code', () => {
    for (let c = 0; c < 16; c++) expect(encodeNF4(NF4_TABLE[c])).toBe(c);
    for (let c = 0; c < 15; c++) {
      const t = NF4_THRESHOLDS[c];
      expect(encodeNF4(t)).toBe(c);
      // next f32 above the threshold
      const up = new Float32Array([t]);
      new Int32Array(up.buffer)[0] += t >= 0 ? 1 : -1;
      expect(encodeNF4(up[0])).toBe(c + 1);
    }
  });

  it('hand-computed codes', () => {
    expect([1, -1, 0.5, 0, 0.25, -0.3, 0.9, 0.04].map(encodeNF4)).toEqual([15, 0, 12, 7, 10, 4, 15, 8]);
    expect([2, -5, Number.NaN].map(encodeNF4)).toEqual([15, 0, 0]);
  });

  it('agrees with nearest-table search away from ties', () => {
    fc.assert(
      fc.property(unitF32, (x) => {
        const n = nearest(NF4_TABLE, x);
        if (n !== undefined) expect(encodeNF4(x)).toBe(n);
      }),
      { numRuns: 500 },
    );
  });
});

describe('FP4 encode', () => {
  it('has [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 with the sign in bit 3, equal to the CUDA LUT literals', () => {
    const mags = [0, 0.0625, 8, 12, 4, 6, 2, 3];
    for (let i = 0; i < 8; i++) {
      expect(FP4_TABLE[i]).toBe(f32(mags[i] / 12));
      expect(FP4_TABLE[i + 8]).toBe(-FP4_TABLE[i]);
    }
    expect(Object.is(FP4_TABLE[8], -0)).toBe(true);
    const cudaLut = [0, 0.005208333333, 0.66666667, 1, 0.33333333, 0.5, 0.16666667, 0.25];
    for (let i = 0; i < 8; i++) expect(FP4_TABLE[i]).toBe(f32(cudaLut[i]));
  });

  it('hand-computed codes, ties to the smaller magnitude, -0 and NaN encode as +0', () => {
    expect([1, -1, 0.5, 0, 0.25, -0.3, 0.9, 0.04].map(encodeFP4)).toEqual([3, 11, 5, 0, 7, 12, 3, 1]);
    expect(encodeFP4(-0)).toBe(0);
    expect(encodeFP4(Number.NaN)).toBe(0);
    expect(encodeFP4(f32(0.4166667))).toBe(4); // exactly the 4/12 | 6/12 pivot
    expect(encodeFP4(-f32(0.4166667))).toBe(12);
    for (let c = 0; c < 16; c++) if (c !== 8) expect(encodeFP4(FP4_TABLE[c])).toBe(c);
  });

  it('agrees with nearest-table search away from ties (sign from x)', () => {
    fc.assert(
      fc.property(unitF32, (x) => {
        const c = encodeFP4(x);
        const n = nearest(FP4_TABLE, x);
        if (n === undefined) return;
        expect(FP4_TABLE[c] + 0).toBe(FP4_TABLE[n] + 0); // +0 and -0 are the same value
        expect(c >= 8).toBe(x < 0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('quant_map as bitsandbytes stores it', () => {
  it('NF4 is the table; FP4 is the table with +0.0 at code 8 (get_4bit_type)', () => {
    expect(Array.from(quantMap4bit('nf4'))).toEqual(Array.from(NF4_TABLE));
    const m = quantMap4bit('fp4');
    expect(Object.is(m[8], 0)).toBe(true);
    for (let i = 0; i < 16; i++) if (i !== 8) expect(m[i]).toBe(FP4_TABLE[i]);
  });
});
