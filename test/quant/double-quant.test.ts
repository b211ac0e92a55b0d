import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bitsPerParameter,
  compressAbsmax,
  createDynamicMap,
  decompressAbsmax,
  dequantize4bit,
  dequantizeWeight,
  quantize4bit,
  quantizeWeight,
  stateAbsmax,
} from '../../src/quant/index.ts';
import { Rng } from '../../src/util/rng.ts';

const f32 = Math.fround;

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

describe('double quantization of absmax', () => {
  it('hand example: absmax [1, 3] -> offset 2, codes 0 and 255, nested absmax 1', () => {
    const n = compressAbsmax(Float32Array.from([1, 3]));
    expect(n.offset).toBe(2);
    expect(Array.from(n.qabsmax)).toEqual([0, 255]);
    expect(Array.from(n.nestedAbsmax)).toEqual([1]);
    expect(n.nestedBlocksize).toBe(256);
    expect(Array.from(n.nestedQuantMap)).toEqual(Array.from(createDynamicMap(true)));
    expect(Array.from(decompressAbsmax(n))).toEqual([f32(f32(-0.99296875) + 2), 3]);
  });

  it('error of each absmax within half the local dynamic-map gap times its nested absmax', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: Math.fround(1e-3), max: 100, noNaN: true }), {
          minLength: 1,
          maxLength: 700,
        }),
        (xs) => {
          const a = Float32Array.from(xs);
          const n = compressAbsmax(a);
          const d = decompressAbsmax(n);
          const m = n.nestedQuantMap;
          for (let i = 0; i < a.length; i++) {
            const c = n.qabsmax[i];
            const gap = Math.max(c > 0 ? m[c] - m[c - 1] : 0, c < 255 ? m[c + 1] - m[c] : 0);
            const a2 = n.nestedAbsmax[Math.floor(i / 256)];
            // + f32 rounding of the product and of the offset addition
            const slack = 4 * 2 ** -24 * (Math.abs(a[i]) + Math.abs(n.offset) + a2);
            expect(Math.abs(d[i] - a[i])).toBeLessThanOrEqual((gap / 2) * a2 + slack);
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe('QuantState', () => {
  it('quantizeWeight without double quant equals quantize4bit and dequantizes the same', () => {
    const x = randn(4 * 96, 3);
    const s = quantizeWeight(x, [4, 96], { quantType: 'nf4' });
    const q = quantize4bit(x, { quantType: 'nf4', blocksize: 64 });
    expect(s.stats.kind).toBe('plain');
    expect(Array.from(s.packed)).toEqual(Array.from(q.packed));
    expect(Array.from(dequantizeWeight(s))).toEqual(Array.from(dequantize4bit(q)));
  });

  it('with double quant: same codes, absmax from the nested state, error close to the plain one', () => {
    const x = randn(64 * 300, 5, 0.02);
    const plain = quantizeWeight(x, [300, 64], { quantType: 'fp4', blocksize: 64 });
    const dq = quantizeWeight(x, [300, 64], { quantType: 'fp4', blocksize: 64, doubleQuant: true });
    expect(dq.stats.kind).toBe('nested');
    expect(Array.from(dq.packed)).toEqual(Array.from(plain.packed));
    const a = stateAbsmax(plain);
    const b = stateAbsmax(dq);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(0.01 * a[i] + 1e-6);
    const d = dequantizeWeight(dq);
    const p = dequantizeWeight(plain);
    let e1 = 0;
    let e2 = 0;
    for (let i = 0; i < x.length; i++) {
      e1 += Math.abs(p[i] - x[i]);
      e2 += Math.abs(d[i] - x[i]);
    }
    expect(e2 / e1).toBeLessThan(1.02);
  });

  it('bitsPerParameter: 4.5 plain, ~4.127 double-quantized at blocksize 64', () => {
    const x = randn(64 * 4096, 9);
    expect(bitsPerParameter(quantizeWeight(x, [4096, 64], { quantType: 'nf4' }))).toBe(4.5);
    const dq = bitsPerParameter(quantizeWeight(x, [4096, 64], { quantType: 'nf4', doubleQuant: true }));
    expect(dq).toBeCloseTo(4 + 8 / 64 + 32 / (64 * 256), 2);
    expect(dq).toBe(4 + (4096 * 8 + 16 * 32 + 32) / (64 * 4096));
    expect(bitsPerParameter(quantizeWeight(x, [4096, 64], { quantType: 'nf4', blocksize: 128 }))).toBe(4.25);
  });

  it('rejects a shape that does not match the data and a bad blocksize', () => {
    expect(() => quantizeWeight(new Float32Array(10), [3, 4], { quantType: 'nf4' })).toThrow(
      /shape \[3, 4\] needs 12 values, got 10/,
    );
    expect(() => quantizeWeight(new Float32Array(12), [3, 4], { quantType: 'nf4', blocksize: 96 })).toThrow(
      /invalid 4-bit blocksize 96/,
    );
  });
});
