// Adversarial cases for the WebGPU backend against the CPU interpreter: long rows,
// dispatches past 65535 workgroups, integer edge values, assigns that alias each
// other, buffer-pool reuse in larger random graphs, and use after dispose.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ASSIGN_PREFIX } from '../../../src/backends/backend.ts';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import type { WebGpuBackend } from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { Graph } from '../../../src/ir/graph.ts';
import { sameShape } from '../../../src/ir/shape.ts';
import type { Tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { Rng } from '../../../src/util/rng.ts';
import { arbGraph, randomFeeds, randomWeights } from '../../arbitrary/graphs.ts';
import { expectClose, randTensor, tensorOf } from '../../ops/case.ts';
import { gpuSuite } from './gpu.ts';
import { expectRunsAsCpu } from './runs-as-cpu.ts';

/** Runs `g` on both backends and compares every output. */
async function agree(
  backend: WebGpuBackend,
  g: Graph,
  feeds: Record<string, Tensor>,
  weights = new MapWeightStore(),
  tol = 1e-5,
): Promise<Record<string, Tensor>> {
  const expected = runGraph(g, feeds, weights);
  const exe = await backend.compile(g, weights);
  try {
    const names = g.outputs.map((o) => o.name);
    const got = await exe.run({ feeds, outputs: names });
    for (const n of names) expectClose(got[n], expected[n], tol, `output ${n}`);
    return got;
  } finally {
    exe.dispose();
  }
}

const rand = (seed: number, shape: number[], lo = -3, hi = 3) =>
  randTensor(new Rng(seed), 'f32', shape, { lo, hi });

await gpuSuite('webgpu adversarial review', ({ backend }) => {
  it('vocab-sized log_softmax and cross_entropy rows (50000) and long norm rows (4096)', async () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [3, 50000]);
    const lab = b.input('lab', 'i32', [3]);
    const h = b.input('h', 'f32', [5, 4096]);
    const w = b.input('w', 'f32', [4096]);
    const g = b.build({
      ls: b.logSoftmax(x, -1),
      sm: b.softmax(x, -1),
      ce: b.crossEntropy(x, lab),
      cen: b.crossEntropy(x, lab, { reduction: 'none' }),
      rms: b.rmsnorm(h, w, 1e-6),
      ln: b.layernorm(h, w, undefined, 1e-5),
      tot: b.sum(h, [1]),
      mx: b.max(x, [1]),
    });
    await agree(
      backend,
      g,
      {
        x: rand(1, [3, 50000], -20, 20),
        lab: tensorOf('i32', [3], [0, 49999, 123]),
        h: rand(2, [5, 4096], 90, 110),
        w: rand(3, [4096]),
      },
      undefined,
      1e-4,
    );
  });

  it('attention S=T=128 with GQA, causal and a mask', async () => {
    const b = new GraphBuilder();
    const q = b.input('q', 'f32', [1, 4, 128, 16]);
    const k = b.input('k', 'f32', [1, 2, 128, 16]);
    const v = b.input('v', 'f32', [1, 2, 128, 72]);
    const m = b.input('m', 'f32', [128, 128]);
    const g = b.build({
      causal: b.attention(q, k, v, undefined, { causal: true }),
      masked: b.attention(q, k, v, m),
    });
    const mask = rand(7, [128, 128], -2, 2);
    for (let i = 0; i < mask.data.length; i += 3) mask.data[i] = Number.NEGATIVE_INFINITY;
    await agree(
      backend,
      g,
      { q: rand(4, [1, 4, 128, 16]), k: rand(5, [1, 2, 128, 16]), v: rand(6, [1, 2, 128, 72]), m: mask },
      undefined,
      1e-4,
    );
  });

  it('matmul with odd and large K', async () => {
    const b = new GraphBuilder();
    const a1 = b.input('a1', 'f32', [7, 1023]);
    const b1 = b.input('b1', 'f32', [1023, 5]);
    const a2 = b.input('a2', 'f32', [3, 8192]);
    const b2 = b.input('b2', 'f32', [8192, 4]);
    const w = b.input('w', 'f32', [6, 8192]);
    const g = b.build({
      odd: b.matmul(a1, b1),
      oddT: b.matmul(a1, b.transpose(b1, 0, 1), { transpose_b: true }),
      big: b.matmul(a2, b2),
      lin: b.linear(a2, w),
      bigT: b.matmul(b2, a2, { transpose_a: true, transpose_b: true }),
    });
    await agree(
      backend,
      g,
      {
        a1: rand(8, [7, 1023]),
        b1: rand(9, [1023, 5]),
        a2: rand(10, [3, 8192]),
        b2: rand(11, [8192, 4]),
        w: rand(12, [6, 8192]),
      },
      undefined,
      1e-4,
    );
  });

  it('concat of 20 inputs (more than the storage buffers one dispatch may bind)', async () => {
    const b = new GraphBuilder();
    const feeds: Record<string, Tensor> = {};
    const xs = Array.from({ length: 20 }, (_, i) => {
      const shape = [2, i % 4, 3];
      feeds[`x${i}`] = rand(100 + i, shape);
      return b.input(`x${i}`, 'f32', shape);
    });
    const ys = Array.from({ length: 17 }, (_, i) => {
      const shape = [i + 1, 2];
      feeds[`y${i}`] = rand(200 + i, shape);
      return b.input(`y${i}`, 'f32', shape);
    });
    await agree(backend, b.build({ mid: b.concat(xs, 1), first: b.concat(ys, 0) }), feeds);
  });

  it('zero-sized operands: a linear with in_features 0 writes zeros (+ bias) over a reused pool buffer', async () => {
    const b = new GraphBuilder();
    const a = b.input('a', 'f32', [3, 4]);
    const x = b.input('x', 'f32', [3, 0]);
    const w = b.input('w', 'f32', [4, 0]);
    const bias = b.input('bias', 'f32', [4]);
    const used = b.sum(b.exp(a), [1]); // exp(a) frees a [3,4] buffer for the linears
    const outs = {
      used,
      lin: b.linear(x, w),
      mm: b.matmul(x, w, { transpose_b: true }),
      s: b.sum(x, [1]),
      c: b.concat([x, x], 0),
    };
    const feeds = {
      a: rand(20, [3, 4]),
      x: tensorOf('f32', [3, 0], []),
      w: tensorOf('f32', [4, 0], []),
      bias: rand(21, [4]),
    };
    await agree(backend, b.build(outs), feeds);
    // x W^T + b is b on every row (torch.nn.functional.linear), on both backends.
    const withBias = b.build({ used, linb: b.linear(x, w, bias) });
    await agree(backend, withBias, feeds);
    const exe = await backend.compile(withBias, new MapWeightStore());
    try {
      const got = (await exe.run({ feeds })).linb;
      const want = Array.from({ length: 3 }, () => Array.from(feeds.bias.data)).flat();
      expectClose(got, tensorOf('f32', [3, 4], want), 1e-6, 'linb');
    } finally {
      exe.dispose();
    }
  });

  it('map kernels: vec4 and several items per invocation, with tails, every dtype path', async () => {
    for (const n of [12296, 12294, 4, 3]) {
      const b = new GraphBuilder();
      const x = b.input('x', 'f32', [n]);
      const y = b.input('y', 'f32', [n]);
      const i = b.input('i', 'i32', [n]);
      const g = b.build({
        add: b.add(x, y),
        div: b.div(x, b.add(b.unary('abs', y), b.const(1))),
        copy: b.cast(x, 'f32'),
        scale: b.scale(x, -0.5),
        exp: b.exp(b.scale(x, 0.1)),
        neg: b.neg(i),
        imul: b.mul(i, i),
        isub: b.sub(i, b.cast(x, 'i32')),
        bias: b.add(
          b.reshape(x, [n / (n % 2 ? 1 : 2), n % 2 ? 1 : 2]),
          b.const([1, 2].slice(0, n % 2 ? 1 : 2), [n % 2 ? 1 : 2]),
        ),
        bytes: b.cast(i, 'u8'),
      });
      const iv = rand(31, [n], -1e6, 1e6);
      await agree(backend, g, {
        x: rand(30, [n]),
        y: rand(32, [n]),
        i: tensorOf('i32', [n], Array.from(iv.data, Math.trunc)),
      });
    }
  });

  it('casts of out-of-range floats wrap as typed arrays do', async () => {
    const vals = [3e9, -1, -3, 2 ** 31, -(2 ** 31) - 256, 5e9, 1e12, -1e12, 255.7, -0.5, 4294967295];
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [vals.length]);
    const g = b.build({ u: b.cast(x, 'u32'), i: b.cast(x, 'i32'), b8: b.cast(x, 'u8') });
    await agree(backend, g, { x: tensorOf('f32', [vals.length], vals) });
  });

  it('i32 edge values: wrap-around add/mul/neg, div by 0 and INT_MIN / -1', async () => {
    const a = [2147483647, -2147483648, -2147483648, 7, -7, 0, 65536, 123456789];
    const c = [1, -1, 0, 0, 2, -2, 65536, 987654321];
    const b = new GraphBuilder();
    const x = b.input('a', 'i32', [a.length]);
    const y = b.input('c', 'i32', [a.length]);
    const g = b.build({
      add: b.add(x, y),
      mul: b.mul(x, y),
      div: b.div(x, y),
      neg: b.neg(x),
      max: b.max(x, [0]),
      sum: b.sum(x, [0]),
    });
    await agree(backend, g, { a: tensorOf('i32', [a.length], a), c: tensorOf('i32', [a.length], c) });
  });

  it('dispatches past 65535 workgroups: a map over 2^24 + 4096 elements, a sum over 70000 rows', async () => {
    const n = 2 ** 24 + 4096;
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [n]);
    const r = b.input('r', 'f32', [70000, 3]);
    const g = b.build({ y: b.scale(x, 2), s: b.sum(r, [1]), sm: b.softmax(r, -1) });
    const xs = new Float32Array(n);
    for (let i = 0; i < n; i++) xs[i] = i % 1000;
    await agree(backend, g, { x: { dtype: 'f32', shape: [n], data: xs }, r: rand(13, [70000, 3]) });
  });

  it('assigns that read each other swap params as the CPU does', async () => {
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [3], 'state');
    const q = b.param('q', 'f32', [3], 'state');
    const g = b.build({ [`${ASSIGN_PREFIX}p`]: q, [`${ASSIGN_PREFIX}q`]: p, s: b.add(p, b.scale(q, 10)) });
    const w = new MapWeightStore()
      .set('p', tensorOf('f32', [3], [1, 2, 3]))
      .set('q', tensorOf('f32', [3], [4, 5, 6]));
    const exe = await backend.compile(g, w);
    try {
      expect(Array.from((await exe.run({ feeds: {} })).s.data)).toEqual([41, 52, 63]);
      expect(Array.from((await exe.readParam('p')).data)).toEqual([4, 5, 6]);
      expect(Array.from((await exe.readParam('q')).data)).toEqual([1, 2, 3]);
      expect(Array.from((await exe.run({ feeds: {} })).s.data)).toEqual([14, 25, 36]);
    } finally {
      exe.dispose();
    }
  });

  it('use after dispose is a clear error, not a hang', async () => {
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [3], 'state');
    const g = b.build({ y: b.scale(p, 2) });
    const exe = await backend.compile(g, new MapWeightStore().set('p', tensorOf('f32', [3], [1, 2, 3])));
    exe.dispose();
    await expect(exe.run({ feeds: {} })).rejects.toThrow(/disposed/);
    await expect(exe.readParam('p')).rejects.toThrow(/disposed/);
    await expect(exe.writeParam('p', tensorOf('f32', [3], [1, 2, 3]))).rejects.toThrow(/disposed/);
  });

  it('random graphs with assigns (from params, inputs, aliases, other values): 3 runs as the CPU backend', async () => {
    await fc.assert(
      fc.asyncProperty(arbGraph({ maxNodes: 30, floatOnly: true }), fc.nat(1000), async (g0, seed) => {
        // Each param is assigned some value of its type: possibly another param, an input, a reshape.
        const outputs = [...g0.outputs];
        g0.params().forEach((p, i) => {
          const same = g0.nodes.filter(
            (n) => n.type.dtype === p.type.dtype && sameShape(n.type.shape, p.type.shape),
          );
          const src = same[(seed + 7 * i) % same.length];
          if (src.id !== p.id || i % 2) outputs.push({ name: `${ASSIGN_PREFIX}${p.attrs.name}`, id: src.id });
        });
        const g = new Graph(g0.nodes, outputs);
        await expectRunsAsCpu(backend, g, randomWeights(g, seed), {
          feeds: () => randomFeeds(g, seed),
          outputs: g0.outputs.map((o) => o.name),
          tol: 1e-3,
        });
      }),
      { numRuns: 25 },
    );
  });

  it('larger random graphs: every output (and intermediates as outputs) match, run twice', async () => {
    await fc.assert(
      fc.asyncProperty(arbGraph({ maxNodes: 40 }), fc.nat(1000), async (g, seed) => {
        const feeds = randomFeeds(g, seed);
        const weights = randomWeights(g, seed);
        const expected = runGraph(g, feeds, weights);
        const exe = await backend.compile(g, weights);
        try {
          const names = g.outputs.map((o) => o.name);
          // f16 values are rounded to f16 in device storage; the CPU keeps them as f32.
          const tol = g.nodes.some((n) => n.type.dtype === 'f16') ? 2e-3 : 1e-4;
          for (let rep = 0; rep < 2; rep++) {
            const got = await exe.run({ feeds, outputs: names });
            for (const o of names) expectClose(got[o], expected[o], tol, `output ${o} (run ${rep})`);
          }
        } finally {
          exe.dispose();
        }
      }),
      { numRuns: 20 },
    );
  });
});
