// CompileOptions.share (backends/backend.ts): two executables hold the params they have in
// common once. What one writes (an assign, writeParam) the other reads; disposing one
// leaves the other working; a param of another dtype or shape under the same name is
// refused naming it. Both backends, as a prefill and a decode graph over one cache use it.
import { describe, expect, it } from 'vitest';
import type { Backend, Executable } from '../../src/backends/backend.ts';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { WebGpuBackend } from '../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';

/** A "step" graph: cache += x (assign), y = w * x; a "read" graph: z = sum of cache * w. */
function graphs(n: number) {
  const s = new GraphBuilder();
  const x = s.input('x', 'f32', [n]);
  const cache = s.param('cache', 'f32', [n]);
  const w = s.param('w', 'f32', [n]);
  const step = s.build({ y: s.mul(w, x), 'assign:cache': s.add(cache, x) });
  const r = new GraphBuilder();
  const cache2 = r.param('cache', 'f32', [n]);
  const w2 = r.param('w', 'f32', [n]);
  const read = r.build({ z: r.sum(r.mul(cache2, w2), [0]) });
  const weights = new MapWeightStore();
  weights.set('cache', tensor('f32', [n], new Float32Array(n)));
  weights.set(
    'w',
    tensor(
      'f32',
      [n],
      Float32Array.from({ length: n }, (_, i) => i + 1),
    ),
  );
  return { step, read, weights };
}

const backends: [string, () => Backend][] = [
  ['cpu', () => new CpuBackend()],
  ['webgpu', () => new WebGpuBackend()],
];

describe.each(backends)('%s: executables sharing params', (_name, make) => {
  it('see each other’s writes, and one outlives the other', async () => {
    const be = make();
    try {
      const n = 8;
      const { step, read, weights } = graphs(n);
      const a = await be.compile(step, weights);
      const b: Executable = await be.compile(read, weights, { share: a });
      const x = tensor('f32', [n], new Float32Array(n).fill(1));
      await a.run({ feeds: { x } });
      await a.run({ feeds: { x } });
      // cache = 2 everywhere, w = 1..n: z = 2 * n(n+1)/2.
      expect((await b.run({ feeds: {} })).z.data[0]).toBe(n * (n + 1));
      await b.writeParam('w', tensor('f32', [n], new Float32Array(n).fill(3)));
      expect(Array.from((await a.run({ feeds: { x } })).y.data)).toEqual(new Array(n).fill(3));
      a.dispose();
      // cache = 3 after the third step; w = 3: z = 9n, read through the buffers b still holds.
      expect((await b.run({ feeds: {} })).z.data[0]).toBe(9 * n);
      b.dispose();
    } finally {
      be.dispose();
    }
  });

  it('refuses a same-named param of another shape, naming it', async () => {
    const be = make();
    try {
      const { step, weights } = graphs(8);
      const a = await be.compile(step, weights);
      const other = graphs(4);
      await expect(be.compile(other.read, other.weights, { share: a })).rejects.toThrow(
        /share: param 'cache' is f32\[4\] here but f32\[8\]/,
      );
    } finally {
      be.dispose();
    }
  });

  it('copyParamRows: source row i lands in row rows[i], other rows untouched; a misfit is refused', async () => {
    const be = make();
    try {
      // Two executables of one graph shape pair: a [2, 3] "prefill" cache and a [4, 3] "session" one.
      const cacheOf = (rows: number, fill: number) => {
        const g = new GraphBuilder();
        const c = g.param('cache', 'f32', [rows, 3]);
        const graph = g.build({ y: g.scale(c, 1) });
        const w = new MapWeightStore([
          ['cache', tensor('f32', [rows, 3], new Float32Array(rows * 3).fill(fill))],
        ]);
        return be.compile(graph, w);
      };
      const small = await cacheOf(2, 0);
      await small.writeParam('cache', tensor('f32', [2, 3], [1, 2, 3, 4, 5, 6]));
      const big = await cacheOf(4, 9);
      await big.copyParamRows(small, 'cache', [3, undefined]);
      expect(Array.from((await big.readParam('cache')).data)).toEqual([9, 9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3]);
      await big.copyParamRows(small, 'cache', [undefined, 0]);
      expect(Array.from((await big.readParam('cache')).data)).toEqual([4, 5, 6, 9, 9, 9, 9, 9, 9, 1, 2, 3]);
      await expect(big.copyParamRows(small, 'cache', [4])).rejects.toThrow(/target row 4 is not in \[0, 4\)/);
      await expect(big.copyParamRows(small, 'cache', [0, 1, 2])).rejects.toThrow(
        /3 rows asked, the source has 2/,
      );
      await expect(big.copyParamRows(small, 'nope', [0])).rejects.toThrow(/no parameter 'nope'/);
    } finally {
      be.dispose();
    }
  });

  it('ownParams: a param named there is held apart (its own shape, its own writes); the rest is shared', async () => {
    const be = make();
    try {
      const { step, weights } = graphs(8);
      const a = await be.compile(step, weights);
      // A smaller "prefill": its cache is [4] and its own; w is a's (the first 4 of w are read).
      const s = new GraphBuilder();
      const x = s.input('x', 'f32', [4]);
      const cache = s.param('cache', 'f32', [4]);
      const w = s.param('w', 'f32', [8]);
      const small = s.build({ y: s.mul(s.slice(w, 0, 0, 4), x), 'assign:cache': s.add(cache, x) });
      const mine = new MapWeightStore([
        ['cache', tensor('f32', [4], new Float32Array(4))],
        ['w', weights.get('w')!],
      ]);
      const b = await be.compile(small, mine, { share: a, ownParams: (n) => n === 'cache' });
      await a.writeParam('w', tensor('f32', [8], new Float32Array(8).fill(5)));
      const x4 = tensor('f32', [4], new Float32Array(4).fill(2));
      expect(Array.from((await b.run({ feeds: { x: x4 } })).y.data)).toEqual([10, 10, 10, 10]);
      expect(Array.from((await b.readParam('cache')).data)).toEqual([2, 2, 2, 2]);
      expect(Array.from((await a.readParam('cache')).data)).toEqual(new Array(8).fill(0));
      a.dispose();
      b.dispose();
    } finally {
      be.dispose();
    }
  });
});

it('webgpu: a shared param is allocated once (the second executable counts only its own buffers)', async () => {
  const be = new WebGpuBackend();
  try {
    const n = 1024;
    const { step, read, weights } = graphs(n);
    const alone = await be.compile(read, weights);
    const a = await be.compile(step, weights);
    const b = await be.compile(read, weights, { share: a });
    expect(alone.memory.deviceBytes - b.memory.deviceBytes).toBe(2 * n * 4);
  } finally {
    be.dispose();
  }
});
