// lavapipe's compute threads (WebGpuOptions.softwareThreads): the option and
// LP_NUM_THREADS resolve to one count, the process env is left as it was, and a device
// that runs dispatches inline submits in chunks with the same results as one submit.
import { expect, it } from 'vitest';
import { ASSIGN_PREFIX } from '../../../src/backends/backend.ts';
import { CpuBackend } from '../../../src/backends/cpu/index.ts';
import { lavapipeThreads, WebGpuBackend } from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { expectClose } from '../../ops/case.ts';
import { gpuSuite } from './gpu.ts';

it('the option wins over LP_NUM_THREADS; a bad option is an error, a bad env value is Mesa default', () => {
  expect(lavapipeThreads({ softwareThreads: 0 }, { LP_NUM_THREADS: '4' })).toBe(0);
  expect(lavapipeThreads({}, { LP_NUM_THREADS: ' 3 ' })).toBe(3);
  expect(lavapipeThreads({}, {})).toBeUndefined();
  expect(lavapipeThreads({}, { LP_NUM_THREADS: 'many' })).toBeUndefined();
  expect(() => lavapipeThreads({ softwareThreads: -1 }, {})).toThrow(
    /softwareThreads must be a non-negative integer, got -1/,
  );
  expect(() => lavapipeThreads({ softwareThreads: 1.5 }, {})).toThrow(/non-negative integer/);
});

const envBefore = process.env.LP_NUM_THREADS;

await gpuSuite(
  'inline dispatch (softwareThreads 0)',
  ({ backend }) => {
    it('sets LP_NUM_THREADS only while the device is made', async () => {
      const gpu = await backend.ready();
      expect(process.env.LP_NUM_THREADS).toBe(envBefore);
      // lavapipe runs inline; a hardware adapter ignores the option.
      expect(gpu.inlineDispatch).toBe(/llvmpipe|lavapipe/i.test(gpu.adapterInfo) && gpu.software);
    });

    it('a chain over several submits equals the cpu, assigns included', async () => {
      // 3 dispatches a link, ungrouped: 90 dispatches, three submits of 32 on lavapipe.
      const b = new GraphBuilder();
      const w = b.param('w', 'f32', [4, 4], 'trainable');
      let v = b.input('x', 'f32', [3, 4]);
      for (let i = 0; i < 30; i++) v = b.emit('tanh', [b.add(b.matmul(v, w), b.scale(v, 0.5))]);
      const next = b.sub(w, b.scale(b.matmul(b.transpose(v, 0, 1), v), 0.01));
      const g = b.build({ y: v, [`${ASSIGN_PREFIX}w`]: next });
      const weights = new MapWeightStore().set(
        'w',
        tensor(
          'f32',
          [4, 4],
          Array.from({ length: 16 }, (_, i) => Math.sin(i + 1) * 0.6),
        ),
      );
      const exe = await backend.compile(g, weights, { groups: false });
      const cpu = await new CpuBackend().compile(g, weights);
      expect(exe.stats.dispatches).toBeGreaterThan(64);
      for (let step = 0; step < 2; step++) {
        const feeds = {
          x: tensor(
            'f32',
            [3, 4],
            Array.from({ length: 12 }, (_, i) => Math.cos(i * (step + 1))),
          ),
        };
        const [gy, cy] = [(await exe.run({ feeds })).y, (await cpu.run({ feeds })).y];
        expectClose(gy, cy, 1e-5, `y, step ${step}`);
      }
      const [gw, cw] = [await exe.readParam('w'), await cpu.readParam('w')];
      expectClose(gw, cw, 1e-5, 'w after two steps');
      exe.dispose();
      cpu.dispose();
    });
  },
  { softwareThreads: 0 },
);

await gpuSuite(
  'pooled dispatch (softwareThreads 2)',
  ({ backend }) => {
    it('a device with a thread pool is not inline', async () => {
      expect((await backend.ready()).inlineDispatch).toBe(false);
    });

    it('backends made at the same time keep their own counts, and the env its value', async () => {
      const gpu = await backend.ready();
      const lavapipe = /llvmpipe|lavapipe/i.test(gpu.adapterInfo) && gpu.software;
      const made = [new WebGpuBackend({ softwareThreads: 0 }), new WebGpuBackend({ softwareThreads: 3 })];
      try {
        const [inline, pooled] = await Promise.all(made.map((b) => b.ready()));
        expect([inline.inlineDispatch, pooled.inlineDispatch]).toEqual([lavapipe, false]);
        expect(process.env.LP_NUM_THREADS).toBe(envBefore);
      } finally {
        for (const b of made) b.dispose();
      }
    });
  },
  { softwareThreads: 2 },
);
