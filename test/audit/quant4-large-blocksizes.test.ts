// Issue 7 "Quantize/dequantize NF4 and FP4, blocksize 32..4096": the existing property
// and kernel tests draw blocksizes 32..256 only. Here 512..4096: on the CPU, absmax is
// the block's max |x|, the round trip stays within half the local code gap times
// absmax, and codes are a fixed point; the WGSL linear_4bit (GEMV and tiled, both
// orientations, with and without double quantization, spread over the blocksizes) and
// dequant_4bit equal the CPU interpreter, with the last block partial.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { emitDequant, settingsOf } from '../../src/methods/qlora/index.ts';
import {
  dequantize4bit,
  type QuantType,
  quantize4bit,
  table4bit,
  unpack4bit,
} from '../../src/quant/index.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { build, type Problem } from '../methods/qlora/cases.ts';
import { expectClose } from '../ops/case.ts';

const LARGE = [512, 1024, 2048, 4096];

/** Half the larger gap from table value v to its sorted neighbours. */
function halfGap(table: Float32Array, v: number): number {
  const sorted = [...new Set(Array.from(table, (t) => t + 0))].sort((a, b) => a - b);
  const i = sorted.indexOf(v + 0);
  return Math.max(i > 0 ? v - sorted[i - 1] : 0, i < sorted.length - 1 ? sorted[i + 1] - v : 0) / 2;
}

describe('4-bit quantization at blocksizes 512..4096 (audit, issue 7)', () => {
  it('absmax per block, round-trip error bound, codes a fixed point', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<QuantType>('nf4', 'fp4'),
        fc.constantFrom(...LARGE),
        fc.integer({ min: 1, max: 9000 }),
        fc.integer(),
        (qt, bs, n, seed) => {
          let s = seed | 0;
          const x = Float32Array.from({ length: n }, () => {
            s = (Math.imul(s, 1103515245) + 12345) | 0;
            return ((s >>> 8) / 2 ** 24 - 0.5) * 200;
          });
          const q = quantize4bit(x, { quantType: qt, blocksize: bs });
          expect(q.absmax.length).toBe(Math.ceil(n / bs));
          q.absmax.forEach((a, b) => {
            let m = 0;
            for (let i = b * bs; i < Math.min(n, (b + 1) * bs); i++) m = Math.max(m, Math.abs(x[i]));
            expect(a).toBe(Math.fround(m));
          });
          const d = dequantize4bit(q);
          const codes = unpack4bit(q.packed, n);
          const table = table4bit(qt);
          for (let i = 0; i < n; i++) {
            const a = q.absmax[Math.floor(i / bs)];
            // + FLT_MIN: a block with a subnormal absmax cannot be scaled in f32 (1/absmax = inf).
            const bound = halfGap(table, table[codes[i]]) * a + 1e-6 * a + 1.1754943508222875e-38;
            expect(Math.abs(d[i] - x[i])).toBeLessThanOrEqual(bound);
          }
          const again = quantize4bit(d, { quantType: qt, blocksize: bs });
          // FP4's -0 code re-encodes as +0; compare decoded values, and NF4 codes exactly.
          if (qt === 'nf4') expect(Array.from(again.packed)).toEqual(Array.from(q.packed));
          expect(Array.from(dequantize4bit(again), (v) => v + 0)).toEqual(Array.from(d, (v) => v + 0));
        },
      ),
      { numRuns: 24 },
    );
  });
});

// One problem per large blocksize, each on another kernel path (the blocksize is a
// literal in the tiled kernel's code, so each is a pipeline to compile: the paths are
// spread over the blocksizes rather than crossed with them; qlora/webgpu.test.ts crosses
// the paths with the code variants at 32..256). 37 x 141 = 5217 elements: several
// blocks at 512..2048, one full and one partial block at 4096.
const spread: Omit<Problem, 'outF' | 'inF' | 'seed'>[] = [
  { blocksize: 512, rows: [70], transpose: false, quantType: 'nf4', doubleQuant: true, bias: true },
  { blocksize: 1024, rows: [1], transpose: false, quantType: 'fp4', doubleQuant: false, bias: true },
  { blocksize: 2048, rows: [3, 5], transpose: true, quantType: 'nf4', doubleQuant: false, bias: false },
  { blocksize: 4096, rows: [70], transpose: false, quantType: 'fp4', doubleQuant: true, bias: false },
];
const problems: Problem[] = spread.map((p, k) => ({ ...p, outF: 37, inF: 141, seed: 100 + k }));

await gpuSuite('WGSL 4-bit kernels at blocksizes 512..4096 (audit, issue 7)', ({ backend }) => {
  // One test per blocksize: each compiles its own pipelines (seconds each on a cold cache).
  for (const p of problems) {
    const path = `${p.rows.reduce((a, b) => a * b, 1) <= 8 && !p.transpose ? 'gemv' : 'tiled'}${p.transpose ? ' x W' : ''}`;
    it(`blocksize ${p.blocksize} (${path}, ${p.quantType}${p.doubleQuant ? ' + double quant' : ''}): linear_4bit and dequant_4bit equal the CPU interpreter`, async () => {
      const c = build(p);
      const exe = await backend.compile(c.fused, c.weights);
      try {
        const got = (await exe.run({ feeds: c.feeds })).out;
        expectClose(got, runGraph(c.fused, c.feeds, c.weights).out, 2e-5, `linear_4bit ${JSON.stringify(p)}`);
        // And the fused CPU op equals dequantize-then-linear.
        expectClose(
          runGraph(c.fused, c.feeds, c.weights).out,
          runGraph(c.reference, c.feeds, c.weights).out,
          2e-5,
          `cpu linear_4bit vs reference ${JSON.stringify(p)}`,
        );
      } finally {
        exe.dispose();
      }
      const b = new GraphBuilder();
      const g = b.build({ out: emitDequant(b, 'm.weight', [p.outF, p.inF], settingsOf(c.state)) });
      const dq = await backend.compile(g, c.weights);
      try {
        expectClose(
          (await dq.run({ feeds: {} })).out,
          runGraph(g, {}, c.weights).out,
          1e-6,
          `dequant_4bit bs ${p.blocksize}`,
        );
      } finally {
        dq.dispose();
      }
    });
  }
});
