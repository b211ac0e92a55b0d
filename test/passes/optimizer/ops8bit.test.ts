// The 8-bit optimizer-state ops on the CPU: block_absmax + quantize_blockwise8 equal the
// bitsandbytes-exact quantizer in src/quant, dequantize equals its dequantizer, keep_sign keeps
// every code's sign, all-zero blocks, and bad inputs give clear errors.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import {
  blockAbsmaxOf,
  dequantizeBlockwise8Op,
  dynamicMap,
  quantizeBlockwise8Op,
} from '../../../src/passes/optimizer/ops8bit.ts';
import { createDynamicMap, dequantizeBlockwise8, quantizeBlockwise8 } from '../../../src/quant/index.ts';
import { quantGraph } from './helpers.ts';

const signbit = (v: number) => v < 0 || Object.is(v, -0);

describe('8-bit state ops (cpu)', () => {
  it('quantize/dequantize equal the bitsandbytes-exact blockwise quantizer (odd sizes, partial blocks)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 700 }),
        fc.constantFrom(64, 256),
        fc.constantFrom('signed' as const, 'unsigned' as const),
        fc.integer({ min: 0, max: 1e6 }),
        (n, blocksize, map, seed) => {
          const xs = Float32Array.from({ length: n }, (_, i) => {
            const v = Math.sin(seed + i * 12.9898) * 43758.5453;
            const u = v - Math.floor(v);
            return map === 'signed' ? (u - 0.5) * 3 : u * u * 2;
          });
          const out = runGraph(
            quantGraph([n], map, blocksize, false),
            { x: tensor('f32', [n], xs) },
            new MapWeightStore(),
          );
          const ref = quantizeBlockwise8(xs, { blocksize, code: createDynamicMap(map === 'signed') });
          expect([...out.absmax.data]).toEqual([...ref.absmax]);
          expect([...out.codes.data]).toEqual([...ref.codes]);
          expect([...out.back.data]).toEqual([...dequantizeBlockwise8(ref)]);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('round trip error is within half the local code gap times absmax', () => {
    const n = 1000;
    const xs = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const out = runGraph(
      quantGraph([n], 'signed', 256, false),
      { x: tensor('f32', [n], xs) },
      new MapWeightStore(),
    );
    const map = dynamicMap('signed');
    for (let i = 0; i < n; i++) {
      const am = out.absmax.data[Math.floor(i / 256)];
      const c = out.codes.data[i];
      const gap = Math.max(c > 0 ? map[c] - map[c - 1] : 0, c < 255 ? map[c + 1] - map[c] : 0);
      expect(Math.abs(out.back.data[i] - xs[i])).toBeLessThanOrEqual((gap / 2 + 1e-6) * am); // + f32 rounding of x / absmax
    }
  });

  it('keep_sign: every code has the sign bit of its value (the optimizer kernel fix-up)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e-3, max: 1e-3, noNaN: true }), { minLength: 2, maxLength: 300 }),
        (vals) => {
          // One large value per block makes the small ones fall next to code 127 (0.0).
          const xs = Float32Array.from([5, ...vals]);
          const n = xs.length;
          const out = runGraph(
            quantGraph([n], 'signed', 256, true),
            { x: tensor('f32', [n], xs) },
            new MapWeightStore(),
          );
          const map = dynamicMap('signed');
          for (let i = 0; i < n; i++) expect(signbit(map[out.codes.data[i]])).toBe(signbit(xs[i]));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('an all-zero block: absmax 0, codes as CUDA (NaN -> 0, then the sign fix-up), values 0', () => {
    const xs = Float32Array.from([0, -0, 0, -0]);
    const signed = runGraph(
      quantGraph([4], 'signed', 64, true),
      { x: tensor('f32', [4], xs) },
      new MapWeightStore(),
    );
    expect([...signed.absmax.data]).toEqual([0]);
    // +0: code 0 (-0.99) has the other sign bit, x > 0 is false, so 0 - 1 wraps to 255.
    expect([...signed.codes.data]).toEqual([255, 0, 255, 0]);
    expect([...signed.back.data].every((v) => v === 0)).toBe(true);
    const unsigned = runGraph(
      quantGraph([4], 'unsigned', 64, false),
      { x: tensor('f32', [4], xs) },
      new MapWeightStore(),
    );
    expect([...unsigned.codes.data]).toEqual([0, 0, 0, 0]);
  });

  it('bad inputs name the op and what was expected', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [300]);
    const am = b.input('am', 'f32', [1]);
    expect(() => quantizeBlockwise8Op(b, x, am, { map: 'signed', blocksize: 256 })).toThrow(
      /quantize_blockwise8: absmax must be f32 \[2\] \(300 values in blocks of 256\), got f32\[1\]/,
    );
    expect(() => dequantizeBlockwise8Op(b, x, am, { map: 'signed', blocksize: 256 })).toThrow(
      /dequantize_blockwise8: codes must be u8, got f32/,
    );
    expect(() => blockAbsmaxOf(b, x, { blocksize: 100 })).toThrow(/blocksize must be one of 64, 128, 256/);
  });
});
