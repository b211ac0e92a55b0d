// The runtime's contract: clear errors (oversized buffers, device validation, bad
// feeds, missing adapters), assigns that keep state on the device, and a process
// that exits by itself after dispose.
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { z } from 'zod';
import { ASSIGN_PREFIX } from '../../../src/backends/backend.ts';
import {
  acquireDevice,
  canonicalKey,
  foldDispatch,
  mapKernel,
  NoAdapterError,
  registerKernel,
  resolveOptions,
} from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { defineOp, registerOp } from '../../../src/ir/ops/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { gpuSuite } from './gpu.ts';

it('canonical keys ignore key order; dispatches fold beyond 65535 workgroups', () => {
  expect(canonicalKey({ b: 1, a: [true, { y: 2, x: 'q' }] })).toBe(
    canonicalKey({ a: [true, { x: 'q', y: 2 }], b: 1 }),
  );
  expect(foldDispatch(10)).toEqual([10, 1, 1]);
  const [x, y, zz] = foldDispatch(70000 * 3);
  expect(x).toBeLessThanOrEqual(65535);
  expect(x * y * zz).toBeGreaterThanOrEqual(210000);
});

it('options come from the environment unless given', () => {
  const env = {
    PEFTC_WEBGPU_BACKEND: 'opengles',
    PEFTC_WEBGPU_ADAPTER: 'llvmpipe',
    PEFTC_WEBGPU_FEATURE_LEVEL: 'compatibility',
  };
  expect(resolveOptions({}, env)).toMatchObject({
    backend: 'opengles',
    adapter: 'llvmpipe',
    featureLevel: 'compatibility',
  });
  expect(resolveOptions({ backend: 'vulkan' }, env).backend).toBe('vulkan');
  expect(() => resolveOptions({}, { PEFTC_WEBGPU_FEATURE_LEVEL: 'turbo' })).toThrow(
    /core' or 'compatibility/,
  );
});

it('no adapter gives NoAdapterError with the remedy', async () => {
  // A Dawn backend this platform lacks: no adapter at all, so the install help.
  const err = await acquireDevice({ backend: process.platform === 'darwin' ? 'd3d12' : 'metal' }).catch(
    (e) => e,
  );
  expect(err).toBeInstanceOf(NoAdapterError);
  expect(String(err.message)).toMatch(/npm run setup.*lavapipe/);
});

it('a wrong adapter name leads with the adapters there are', async () => {
  const err = await acquireDevice({ backend: 'null', adapter: 'no-such-adapter-xyz' }).catch((e) => e);
  expect(err).toBeInstanceOf(NoAdapterError);
  const [first] = String(err.message).split('\n');
  expect(first).toBe(
    "no WebGPU adapter named 'no-such-adapter-xyz' on backend null; available: 'Null backend' (null)",
  );
});

it('a bad PEFTC_WEBGPU_BACKEND names the variable and the choices', () => {
  expect(() => resolveOptions({}, { PEFTC_WEBGPU_BACKEND: 'vulkn' })).toThrow(
    "PEFTC_WEBGPU_BACKEND must be one of vulkan, opengles, opengl, metal, d3d12, d3d11, null, got 'vulkn'",
  );
});

// A custom op whose lowering is broken WGSL: the device's validation error must name the node.
registerOp(
  defineOp({ name: 'test_broken', arity: 1, attrs: z.strictObject({}), infer: ([a]) => a, doc: 'test only' }),
);
registerKernel('test_broken', (ctx) =>
  mapKernel({ ctx, desc: {}, body: () => '  return this_is_not_wgsl(i);' }),
);

await gpuSuite('webgpu runtime', ({ backend }) => {
  // The over-the-binding-limit error is tested at a size taken from the adapter's own
  // limit in test/audit/webgpu-ci-limits.test.ts (a fixed size only fails on lavapipe).

  it('a device validation error becomes a WebGpuError naming node, scope and kernel', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4]);
    const y = b.withScope('model.layers.0.custom', () => b.emit('test_broken', [x]));
    const err = await backend.compile(b.build({ y }), new MapWeightStore()).catch((e) => e);
    expect(err.name).toBe('WebGpuError');
    expect(err.message).toMatch(/test_broken.*model\.layers\.0\.custom.*kernel.*this_is_not_wgsl/s);
  });

  it('bad feeds and unknown outputs are clear errors', async () => {
    const b = new GraphBuilder();
    const g = b.build({ y: b.emit('relu', [b.input('x', 'f32', [2, 2])]) });
    const exe = await backend.compile(g, new MapWeightStore());
    await expect(exe.run({ feeds: {} })).rejects.toThrow(/missing feed for input 'x'.*f32\[2,2\]/);
    await expect(exe.run({ feeds: { x: tensor('f32', [4], [1, 2, 3, 4]) } })).rejects.toThrow(
      /is f32\[4\] but the graph expects f32\[2,2\]/,
    );
    await expect(exe.run({ feeds: { x: tensor('f32', [2, 2]) }, outputs: ['nope'] })).rejects.toThrow(
      /no output 'nope'/,
    );
    exe.dispose();
  });

  it('assign outputs update the resident param; only requested outputs come back', async () => {
    const b = new GraphBuilder();
    const w = b.param('w', 'f32', [3], 'trainable');
    const next = b.sub(w, b.scale(b.input('g', 'f32', [3]), 0.5));
    const g = b.build({ loss: b.sum(next, [0]), [`${ASSIGN_PREFIX}w`]: next });
    const exe = await backend.compile(g, new MapWeightStore().set('w', tensor('f32', [3], [1, 2, 3])));
    const feeds = { g: tensor('f32', [3], [2, 2, 2]) };
    const r1 = await exe.run({ feeds });
    expect(Object.keys(r1)).toEqual(['loss']);
    expect(Array.from(r1.loss.data)).toEqual([3]);
    await exe.run({ feeds });
    expect(Array.from((await exe.readParam('w')).data)).toEqual([-1, 0, 1]);
    await exe.writeParam('w', tensor('f32', [3], [5, 5, 5]));
    expect(Array.from((await exe.run({ feeds })).loss.data)).toEqual([12]);
    exe.dispose();
  });

  it('reuses pooled buffers along a chain', async () => {
    const b = new GraphBuilder();
    let v = b.input('x', 'f32', [256]);
    for (let i = 0; i < 12; i++) v = b.emit('tanh', [b.scale(v, 1.01)]);
    const g = b.build({ y: v });
    const exe = await backend.compile(g, new MapWeightStore(), { groups: false });
    expect(exe.stats.dispatches).toBe(24);
    expect(exe.stats.pooledBytes).toBeLessThanOrEqual(3 * 1024);
    exe.dispose();
    // As one group kernel: the chain in registers, only the output stored.
    const grouped = await backend.compile(g, new MapWeightStore());
    expect(grouped.stats.dispatches).toBe(1);
    expect(grouped.stats.pooledBytes).toBeLessThanOrEqual(1024);
    grouped.dispose();
  });
});

it('a process using the backend exits by itself after dispose', () => {
  const r = spawnSync(process.execPath, ['bin/run-ts.js', 'test/backends/webgpu/exit-child.ts'], {
    timeout: 30_000,
    encoding: 'utf8',
  });
  if (r.stderr.includes('NoAdapterError') && !process.env.CI) return;
  expect(r.error, 'the child did not exit within 30 s after dispose').toBeUndefined();
  expect(r.stdout).toContain('ok 6');
  expect(r.status).toBe(0);
});
