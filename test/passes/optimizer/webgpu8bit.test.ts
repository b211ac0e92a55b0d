// The WGSL 8-bit state kernels and a whole adamw8bit step against the CPU interpreter, on
// random shapes with odd sizes and partial last blocks.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { CpuBackend, runGraph } from '../../../src/backends/cpu/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';
import { quantGraph, stepGraph, stepStore } from './helpers.ts';

function values(n: number, seed: number, signed: boolean): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => {
    const v = Math.sin(seed + i * 12.9898) * 43758.5453;
    const u = v - Math.floor(v);
    // Some exact zeros and a wide range of magnitudes.
    if (i % 17 === 3) return 0;
    const mag = u * 10 ** ((i % 5) - 3);
    return signed ? (i % 2 ? -mag : mag) : mag;
  });
}

await gpuSuite('8-bit optimizer-state kernels vs cpu', ({ backend }) => {
  it('block_absmax, quantize_blockwise8 (both maps, keep_sign), dequantize_blockwise8', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 37 }), { minLength: 1, maxLength: 3 }),
        fc.constantFrom(64, 256),
        fc.constantFrom('signed' as const, 'unsigned' as const),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        async (shape, blocksize, map, keepSign, seed) => {
          const n = shape.reduce((a, b) => a * b, 1);
          const g = quantGraph(shape, map, blocksize, keepSign && map === 'signed');
          const feeds = { x: tensor('f32', shape, values(n, seed, map === 'signed')) };
          const want = runGraph(g, feeds, new MapWeightStore());
          const exe = await backend.compile(g, new MapWeightStore());
          try {
            const got = await exe.run({ feeds });
            for (const k of ['absmax', 'codes', 'back']) {
              expect([...got[k].data], `${k} ${JSON.stringify({ shape, blocksize, map, keepSign })}`).toEqual(
                [...want[k].data],
              );
            }
          } finally {
            exe.dispose();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('three adamw8bit steps (8-bit and 32-bit state, weight decay) match the CPU', async () => {
    const n = 300; // 8-bit with min_8bit_size 256, a partial second block
    const g = stepGraph(n, { minEightBitSize: 256, weightDecay: 0.01 });
    const cpu = new CpuBackend();
    const want = await cpu.compile(g, stepStore(g, n));
    const got = await backend.compile(g, stepStore(g, n));
    try {
      for (let t = 1; t <= 3; t++) {
        const feeds = {
          g: tensor('f32', [n], values(n, t, true)),
          lr: tensor('f32', [], [1e-2]),
          step: tensor('f32', [], [t]),
        };
        await want.run({ feeds });
        await got.run({ feeds });
      }
      for (const p of g.params()) {
        const name = String(p.attrs.name);
        const a = await got.readParam(name);
        const b = await want.readParam(name);
        if (p.type.dtype === 'u8') {
          // A code may sit on the other side of a midpoint after f32 rounding differences.
          let off = 0;
          for (let i = 0; i < n; i++) off += Math.abs(a.data[i] - b.data[i]) > 0 ? 1 : 0;
          expect(off, name).toBeLessThanOrEqual(2);
        } else {
          for (let i = 0; i < a.data.length; i++) {
            expect(Math.abs(a.data[i] - b.data[i]), `${name}[${i}]`).toBeLessThanOrEqual(
              1e-5 * Math.max(1, Math.abs(b.data[i])),
            );
          }
        }
      }
    } finally {
      got.dispose();
      want.dispose();
    }
  });
});
