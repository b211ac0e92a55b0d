// quantize_4bit: the CPU op against src/quant's quantize4bit, the FP4 pivots derived for the
// kernel against encodeFP4, the WGSL kernel against the CPU bit for bit (zeros, ties at the
// thresholds, subnormal/huge/zero absmax, odd lengths, partial blocks, blocksizes 32..4096),
// and a quantize_4bit -> dequant_4bit graph on WebGPU against the host round trip.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { encodeSteps } from '../../../src/backends/webgpu/kernels/quant4-encode.ts';
import '../../../src/backends/webgpu/kernels/quant8.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { dequant4bit, quantize4bitOf } from '../../../src/methods/qlora/index.ts';
import { blockAbsmaxOf } from '../../../src/passes/optimizer/ops8bit.ts';
import {
  BLOCKSIZES_4BIT,
  blockAbsmax,
  dequantize4bit,
  encode4bit,
  NF4_THRESHOLDS,
  type QuantType,
  quantize4bit,
} from '../../../src/quant/index.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';

const f32 = Math.fround;
const qtArb = fc.constantFrom<QuantType>('nf4', 'fp4');
const bsArb = fc.constantFrom(...BLOCKSIZES_4BIT);
const nextUp = (v: number) => {
  const b = new Float32Array([v]);
  new Int32Array(b.buffer)[0] += v >= 0 ? 1 : -1;
  return b[0];
};
/** Values on and next to every threshold (ties go to the lower code), plus zeros. */
const ties = [...NF4_THRESHOLDS, ...encodeSteps('fp4').thresholds].flatMap((t) => [t, nextUp(t), -t, 0, -0]);

/** x: ties, zeros, ordinary and extreme floats; length 1..n covering partial blocks. */
function xArb(max: number) {
  return fc
    .array(
      fc.oneof(
        fc.constantFrom(...ties),
        fc.float({ min: -4, max: 4, noNaN: true }),
        fc.float({ noNaN: true }),
        fc.constant(0),
      ),
      { minLength: 1, maxLength: max },
    )
    .map((a) => Float32Array.from(a));
}

function quantGraph(n: number, quant_type: QuantType, blocksize: number) {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [n]);
  const am = b.input('absmax', 'f32', [Math.ceil(n / blocksize)]);
  return b.build({ out: quantize4bitOf(b, x, am, { quant_type, blocksize }) });
}

function cpuQuant(x: Float32Array, absmax: Float32Array, quant_type: QuantType, blocksize: number) {
  const g = quantGraph(x.length, quant_type, blocksize);
  const feeds = { x: tensor('f32', [x.length], x), absmax: tensor('f32', [absmax.length], absmax) };
  return { g, feeds, out: runGraph(g, feeds, new MapWeightStore()).out.data as Uint8Array };
}

describe('quantize_4bit on the CPU', () => {
  it('equals quantize4bit from src/quant byte for byte', () => {
    fc.assert(
      fc.property(xArb(300), qtArb, bsArb, (x, q, bs) => {
        const want = quantize4bit(x, { quantType: q, blocksize: bs });
        expect([...cpuQuant(x, want.absmax, q, bs).out]).toEqual([...want.packed]);
      }),
      { numRuns: 60 },
    );
  });

  it('packs the first element high and pads an odd tail with the code of 0', () => {
    // nf4 of [1, -1, 0.5] / 1: codes 15, 0, then 0.5 -> 12 and the pad 0 -> 7.
    const x = Float32Array.of(1, -1, f32(0.5));
    expect([...cpuQuant(x, Float32Array.of(1), 'nf4', 64).out]).toEqual([0xf0, 0xc7]);
    // An all-zero block (absmax 0): 0 * inf is NaN, code 0 for both types.
    expect([...cpuQuant(Float32Array.of(0, 0, 0), Float32Array.of(0), 'nf4', 64).out]).toEqual([0, 0]);
  });

  it('rejects an absmax of the wrong length, naming the op and the expected shape', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [100]);
    const am = b.input('absmax', 'f32', [1]);
    expect(() => quantize4bitOf(b, x, am, { quant_type: 'nf4', blocksize: 64 })).toThrow(
      /quantize_4bit: absmax must be f32 \[2\] \(100 values in blocks of 64\)/,
    );
  });
});

describe('the kernel encoder steps', () => {
  it('reproduce encodeNF4/encodeFP4 on and next to every threshold', () => {
    for (const q of ['nf4', 'fp4'] as const) {
      const { codes, thresholds } = encodeSteps(q);
      thresholds.forEach((t, k) => {
        expect(encode4bit(q, t), `${q} at ${t}`).toBe(codes[k]);
        expect(encode4bit(q, nextUp(t)), `${q} above ${t}`).toBe(codes[k + 1]);
      });
    }
    expect(encodeSteps('fp4').codes).toEqual([0, 1, 6, 7, 4, 5, 2, 3]);
  });
});

/** absmax per block: the true one, or (to exercise the reciprocal) 0, 1, subnormal or huge. */
const absmaxArb = fc.constantFrom('true', 'odd');
const oddAbsmax = [0, 1, 1e-40, 1.2e-38, 3e38, 2 ** 126, 2 ** 127, 0.1, 3, 2 ** -127, 1.7e38];

await gpuSuite('quantize_4bit WGSL vs cpu', ({ backend }) => {
  it('bit-exact on random inputs, absmax and blocksizes', async () => {
    await fc.assert(
      fc.asyncProperty(
        xArb(700),
        qtArb,
        bsArb,
        absmaxArb,
        fc.integer({ min: 0, max: 100 }),
        async (x, q, bs, kind, seed) => {
          const absmax = blockAbsmax(x, bs);
          if (kind === 'odd')
            for (let b = 0; b < absmax.length; b++) absmax[b] = oddAbsmax[(seed + b) % oddAbsmax.length];
          const { g, feeds, out } = cpuQuant(x, absmax, q, bs);
          const exe = await backend.compile(g, new MapWeightStore());
          try {
            const got = (await exe.run({ feeds })).out.data;
            expect([...got], JSON.stringify({ q, bs, kind, n: x.length })).toEqual([...out]);
          } finally {
            exe.dispose();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('quantize_4bit -> dequant_4bit equals dequantize4bit(quantize4bit(x))', async () => {
    await fc.assert(
      fc.asyncProperty(xArb(3000), qtArb, fc.constantFrom(64, 256, 4096), async (x, q, bs) => {
        const n = x.length;
        const b = new GraphBuilder();
        const xv = b.input('x', 'f32', [n]);
        const am = blockAbsmaxOf(b, xv, { blocksize: bs });
        const packed = quantize4bitOf(b, xv, am, { quant_type: q, blocksize: bs });
        const g = b.build({
          packed,
          back: dequant4bit(b, packed, am, { quant_type: q, blocksize: bs, shape: [n] }),
        });
        const host = quantize4bit(x, { quantType: q, blocksize: bs });
        const exe = await backend.compile(g, new MapWeightStore());
        try {
          const got = await exe.run({ feeds: { x: tensor('f32', [n], x) } });
          expect([...got.packed.data]).toEqual([...host.packed]);
          // Equal as numbers: the WGSL dequant_4bit may give +0 where the host gives -0.
          const num = (a: ArrayLike<number>) => Array.from(a, (v) => (v === 0 ? 0 : v));
          expect(num(got.back.data)).toEqual(num(dequantize4bit(host)));
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 20 },
    );
  });
});
