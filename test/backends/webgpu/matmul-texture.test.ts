// The texture-staged matmul for software adapters (issue 21) against the CPU interpreter:
// products above TEXTURE_MIN_MACS with ragged edges (M, N not multiples of the tile, K not a
// multiple of 4), both transposes, batches that fold into rows (and ones that do not, which
// keep the buffer kernels), linear with a bias, a matmul epilogue; the plan's scratch
// textures; which kernels each adapter kind plans.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { listKernels } from '../../../src/backends/webgpu/kernel-list.ts';
import { TEXTURE_MIN_MACS } from '../../../src/backends/webgpu/kernels/matmul-texture.ts';
import { planMemory } from '../../../src/backends/webgpu/memory-plan.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import type { MapWeightStore } from '../../../src/ir/weights.ts';
import { expectClose } from '../../ops/cases.ts';
import { gpuSuite } from './gpu.ts';
import { matmulGraph, weightsOf } from './matmul-graphs.ts';

const TARGET = { f16: false, software: true, softwareMatmul: 'texture', textureDimension: 8192 } as const;
const kernelsOf = (g: Graph, target: Parameters<typeof listKernels>[1] = TARGET) =>
  listKernels(g, target).dispatches.map((d) => JSON.parse(d.key).program.kernel);

it('large products go through two stagings and the texture product; small, thin or huge ones, other batches and hardware adapters do not', () => {
  const big = matmulGraph(128, 256, 257, false, true, [], []);
  expect(128 * 256 * 257).toBeGreaterThanOrEqual(TEXTURE_MIN_MACS);
  // B (256 x 257, stored transposed, 256 rows a column) as 4 x 4 blocks.
  expect(kernelsOf(big)).toEqual(['texture-stage', 'texture-stage-blocks', 'texture']);
  expect(kernelsOf(matmulGraph(128, 257, 256, false, true, [], []))).toEqual([
    'texture-stage',
    'texture-stage',
    'texture',
  ]);
  expect(kernelsOf(matmulGraph(64, 64, 64, false, true, [], []))).toEqual(['direct']);
  // Thin (a rank-16 LoRA factor) or with a texture over TEXTURE_MAX_BYTES (4096 x 16384).
  expect(kernelsOf(matmulGraph(256, 2048, 16, false, true, [], []))).toEqual(['direct']);
  expect(kernelsOf(matmulGraph(64, 4096, 16384, false, true, [], []))).toEqual(['direct']);
  // A batch of B's (not shared): the buffer kernel.
  expect(kernelsOf(matmulGraph(128, 128, 128, false, false, [4], [4]))).toEqual(['direct']);
  // A's batches fold into rows when B is shared.
  expect(kernelsOf(matmulGraph(64, 128, 256, false, false, [4], []))).toEqual([
    'texture-stage',
    'texture-stage',
    'texture',
  ]);
  // Too large a side for the device's textures, or no texture limit (the export): buffers.
  expect(kernelsOf(big, { ...TARGET, textureDimension: 64 })).toEqual(['direct']);
  expect(kernelsOf(big, { ...TARGET, textureDimension: undefined })).toEqual(['direct']);
  expect(kernelsOf(big, { f16: false, software: false, textureDimension: 8192 })).toEqual(['tiled']);
});

it('the memory plan counts the scratch textures as workspace, one set shared by every product', () => {
  const b = new GraphBuilder();
  const x = b.param('x', 'f32', [128, 256]);
  const w = b.param('w', 'f32', [256, 256]);
  const y = b.matmul(b.matmul(x, w), w);
  const g = b.build({ y });
  const plan = planMemory(g, TARGET);
  // A 128 x 64 texels, B 256 x 64 texels, each once (both products have the same shapes).
  expect(plan.textures).toEqual([
    { width: 64, height: 128 },
    { width: 64, height: 256 },
  ]);
  const without = planMemory(g, { ...TARGET, textureDimension: undefined });
  expect(plan.byKind.workspace - without.byKind.workspace).toBe((64 * 128 + 64 * 256) * 16);
});

await gpuSuite(
  'webgpu texture-staged matmul (software kernels)',
  ({ backend }) => {
    async function check(g: Graph, w: MapWeightStore, what: string, tol = 2e-4) {
      const exe = await backend.compile(g, w);
      try {
        expect(exe.dispatches.map((d) => JSON.parse(d.key).program.kernel)).toContain('texture');
        expectClose((await exe.run({ feeds: {} })).y, runGraph(g, {}, w).y, tol, what);
      } finally {
        exe.dispose();
      }
    }
    it('equals the cpu reference on random ragged shapes, transposes and folded batches', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 120, max: 140 }),
          fc.integer({ min: 250, max: 262 }),
          fc.integer({ min: 257, max: 270 }),
          fc.boolean(),
          fc.boolean(),
          fc.constantFrom<[number[], number[]]>([[], []], [[1], [1]], [[2], []], [[2, 1], [1]]),
          async (m, k, n, ta, tb, [ba, bb]) => {
            const rows = ba.reduce((s, d) => s * d, m);
            fc.pre(!(ta && ba.some((d) => d > 1)) && rows * k * n >= TEXTURE_MIN_MACS);
            const g = matmulGraph(m, k, n, ta, tb, ba, bb);
            await check(
              g,
              weightsOf(g, m * 31 + k * 7 + n),
              `${m}x${k}x${n} ta=${ta} tb=${tb} [${ba}]x[${bb}]`,
            );
          },
        ),
        { numRuns: 5 },
      );
    });
    it('the executor allocates the planned bytes, textures included', async () => {
      const b = new GraphBuilder();
      const x = b.param('x', 'f32', [128, 256]);
      const w = b.param('w', 'f32', [256, 256]);
      const g = b.build({ y: b.matmul(b.matmul(x, w), w) });
      const gpu = await backend.ready();
      const exe = await backend.compile(g, weightsOf(g, 5));
      try {
        const plan = planMemory(g, {
          ...gpu,
          storageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
          textureDimension: gpu.limits.maxTextureDimension2D,
        });
        expect(plan.textures.length).toBe(2);
        expect(exe.memory.deviceBytes).toBe(plan.deviceBytes);
      } finally {
        exe.dispose();
      }
    });
    it('linear with a bias, and a matmul epilogue (the LoRA branch add)', async () => {
      const b = new GraphBuilder();
      const x = b.param('x', 'f32', [2, 65, 256]);
      const w = b.param('w', 'f32', [259, 256]);
      const y = b.linear(x, w, b.param('bias', 'f32', [259]));
      const g = b.build({ y });
      await check(g, weightsOf(g, 3), 'linear + bias');
      const b2 = new GraphBuilder();
      const x2 = b2.param('x', 'f32', [130, 256]);
      const base = b2.linear(x2, b2.param('w', 'f32', [260, 256]));
      const lora = b2.param('lora', 'f32', [130, 260]);
      const g2 = b2.build({ y: b2.add(base, b2.scale(lora, 2)) });
      await check(g2, weightsOf(g2, 4), 'linear + epilogue');
    });
  },
  { kernels: 'cpu', softwareMatmul: 'texture' },
);
