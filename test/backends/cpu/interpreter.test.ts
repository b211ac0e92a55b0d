// The interpreter around the kernels: precision modes, freeing after last use, error
// messages, the Backend contract (assign: write-back), dropout, external kernels, erf.

import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  CpuBackend,
  dropoutKeep,
  erf,
  registerCpuKernel,
  runGraph,
} from '../../../src/backends/cpu/index.ts';
import { empty } from '../../../src/backends/cpu/kernel.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { defineOp, registerOp } from '../../../src/ir/ops/index.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';

const noWeights = new MapWeightStore();

describe('precision', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2]);
  const ids = b.input('ids', 'i32', [2]);
  const g = b.build({ y: b.add(x, b.const(1e-10)), n: b.add(ids, ids) });
  const feeds = { x: tensor('f32', [2], [1, 2]), ids: tensor('i32', [2], [3, -4]) };

  it("'f32' rounds float results to f32; 'f64' keeps them in f64; integers keep their arrays", () => {
    const r32 = runGraph(g, feeds, noWeights);
    expect(r32.y.data).toBeInstanceOf(Float32Array);
    expect(Array.from(r32.y.data)).toEqual([1, 2]);
    const r64 = runGraph(g, feeds, noWeights, { precision: 'f64' });
    expect(r64.y.data).toBeInstanceOf(Float64Array);
    expect(r64.y.data[0]).toBe(1 + 1e-10);
    expect(r64.n.data).toBeInstanceOf(Int32Array);
    expect(Array.from(r64.n.data)).toEqual([6, -8]);
  });

  it('computes f16/bf16 params from their f32 host data', () => {
    const b2 = new GraphBuilder();
    const w = b2.param('w', 'bf16', [2]);
    const g2 = b2.build({ y: b2.scale(w, 2) });
    const y = runGraph(g2, {}, new MapWeightStore([['w', tensor('bf16', [2], [0.5, -1])]])).y;
    expect(y.dtype).toBe('bf16');
    expect(Array.from(y.data)).toEqual([1, -2]);
  });
});

describe('freeing', () => {
  it('frees each value after its last use, keeps requested outputs, skips unneeded nodes', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [4]);
    let h = x;
    for (let i = 0; i < 6; i++) h = b.exp(b.scale(h, 0.1));
    const dead = b.neg(x);
    const g = b.build({ y: h, mid: b.scale(x, 3), dead });
    const live = new Set<number>();
    let peak = 0;
    const executed: number[] = [];
    const freed: number[] = [];
    const res = runGraph(g, { x: tensor('f32', [4], [0, 1, 2, 3]) }, noWeights, {
      outputs: ['y', 'mid'],
      onExecute: (n) => {
        executed.push(n.id);
        live.add(n.id);
        peak = Math.max(peak, live.size);
      },
      onFree: (id) => {
        freed.push(id);
        live.delete(id);
      },
    });
    expect(Object.keys(res)).toEqual(['y', 'mid']);
    expect(executed).not.toContain(dead.id);
    // A chain holds at most: x (still needed by mid), the previous value and the new one.
    expect(peak).toBeLessThanOrEqual(3);
    expect(freed).toContain(x.id);
    expect(freed).not.toContain(h.id);
    expect(live.size).toBe(2); // y and mid
  });
});

describe('errors', () => {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2, 3]);
  const w = b.param('model.fc.weight', 'f32', [4, 3]);
  const labels = b.input('labels', 'i32', [2]);
  const logits = b.withScope('model.fc', () => b.linear(x, w));
  const loss = b.withScope('loss', () => b.crossEntropy(logits, labels));
  const g = b.build({ loss });
  const weights = new MapWeightStore([['model.fc.weight', tensor('f32', [4, 3])]]);
  const feeds = { x: tensor('f32', [2, 3]), labels: tensor('i32', [2], [1, 2]) };

  it('names a missing weight and what the graph expects', () => {
    expect(() => runGraph(g, feeds, noWeights)).toThrow(
      /while executing %1 = param in \(top level\): missing weight 'model\.fc\.weight' \(the graph expects f32\[4,3\]\)/,
    );
  });

  it('names a missing feed, and a feed of the wrong shape or dtype', () => {
    expect(() => runGraph(g, { x: feeds.x }, weights)).toThrow(
      /missing feed for input 'labels' \(the graph expects i32\[2\]\)/,
    );
    expect(() => runGraph(g, { ...feeds, x: tensor('f32', [3, 2]) }, weights)).toThrow(
      /feed for input 'x' is f32\[3,2\] but the graph expects f32\[2,3\]/,
    );
    expect(() => runGraph(g, { ...feeds, labels: tensor('f32', [2]) }, weights)).toThrow(
      /feed for input 'labels' is f32\[2\] but the graph expects i32\[2\]/,
    );
  });

  it('names the node and scope of a runtime error', () => {
    expect(() => runGraph(g, { ...feeds, labels: tensor('i32', [2], [1, 9]) }, weights)).toThrow(
      `while executing %${loss.id} = cross_entropy in loss: cross_entropy label 9 in row 1 is outside [0, 4)`,
    );
  });

  it('names the position of an out-of-range index', () => {
    const b2 = new GraphBuilder();
    const table = b2.input('table', 'f32', [3, 2]);
    const ids = b2.input('ids', 'i32', [4]);
    const g2 = b2.build({ y: b2.withScope('model.embed_tokens', () => b2.embedding(table, ids)) });
    expect(() =>
      runGraph(g2, { table: tensor('f32', [3, 2]), ids: tensor('i32', [4], [0, 2, 3, 1]) }, noWeights),
    ).toThrow(
      'while executing %2 = embedding in model.embed_tokens: embedding id 3 at position 2 is outside [0, 3)',
    );
  });

  it('names an unknown output', () => {
    expect(() => runGraph(g, feeds, weights, { outputs: ['nope'] })).toThrow(
      /no output 'nope' \(outputs: loss\)/,
    );
  });
});

describe('CpuBackend', () => {
  function counterGraph() {
    const b = new GraphBuilder();
    const w = b.param('w', 'f32', [2], 'state');
    const x = b.input('x', 'f32', [2]);
    return b.build({ y: b.mul(w, x), 'assign:w': b.add(w, b.const(1)) });
  }

  it('writes assign: outputs back to their params, returns only what was asked', async () => {
    const given = new MapWeightStore([['w', tensor('f32', [2], [1, 2])]]);
    const exe = await new CpuBackend().compile(counterGraph(), given);
    const x = tensor('f32', [2], [10, 100]);
    expect(Object.keys(await exe.run({ feeds: { x } }))).toEqual(['y']);
    const r = await exe.run({ feeds: { x } });
    expect(Array.from(r.y.data)).toEqual([20, 300]); // ran with w = [2, 3]
    expect(Array.from((await exe.readParam('w')).data)).toEqual([3, 4]);
    expect(Array.from(given.get('w')?.data ?? [])).toEqual([1, 2]); // the caller's store is untouched
    const both = await exe.run({ feeds: { x }, outputs: ['assign:w'] });
    expect(Array.from(both['assign:w'].data)).toEqual([4, 5]);
    await expect(exe.readParam('v')).rejects.toThrow(/no parameter 'v' \(params: w\)/);
  });

  it('refuses to compile without every weight', async () => {
    await expect(new CpuBackend().compile(counterGraph(), noWeights)).rejects.toThrow(
      /missing weight 'w' \(the graph expects f32\[2\]\)/,
    );
  });
});

describe('dropout', () => {
  function run(p: number, seed: number, step?: number, n = 20000): Tensor {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [n]);
    const s = step === undefined ? undefined : b.input('step', 'u32', []);
    const g = b.build({ y: b.dropout(x, p, seed, s) });
    const feeds: Record<string, Tensor> = { x: tensor('f32', [n], new Float32Array(n).fill(1)) };
    if (step !== undefined) feeds.step = tensor('u32', [], [step]);
    return runGraph(g, feeds, noWeights).y;
  }

  it('is deterministic in (seed, step) and changes with either', () => {
    expect(run(0.3, 7, 1).data).toEqual(run(0.3, 7, 1).data);
    expect(run(0.3, 7, 1).data).not.toEqual(run(0.3, 7, 2).data);
    expect(run(0.3, 7, 1).data).not.toEqual(run(0.3, 8, 1).data);
    expect(run(0.3, 7).data).toEqual(run(0.3, 7, 0).data); // no step input = step 0
  });

  it('keeps about 1 - p of the elements, scaled by 1 / (1 - p), as dropoutKeep says', () => {
    for (const p of [0.1, 0.5, 0.9]) {
      const y = run(p, 42, 3);
      const kept = Array.from(y.data).filter((v) => v !== 0);
      const n = y.data.length;
      const sd = Math.sqrt(n * p * (1 - p));
      expect(Math.abs(kept.length - n * (1 - p))).toBeLessThan(4 * sd);
      expect(new Set(kept)).toEqual(new Set([Math.fround(1 / (1 - p))]));
      for (let i = 0; i < 200; i++) expect(y.data[i] !== 0).toBe(dropoutKeep(42, 3, i, p));
    }
  });

  it('is the identity at p = 0', () => {
    expect(Array.from(run(0, 5, 9, 100).data)).toEqual(new Array(100).fill(1));
  });
});

describe('extension and helpers', () => {
  it('runs an op registered outside the core with its registered kernel', () => {
    const def = registerOp(
      defineOp({
        name: 'test_double_plus',
        arity: 1,
        attrs: z.strictObject({ plus: z.number() }),
        infer: ([a]) => a,
        doc: '2x + plus',
      }),
    );
    registerCpuKernel(def.name, ([x], ctx) => {
      const out = empty(ctx, x.dtype, x.shape);
      for (let i = 0; i < x.data.length; i++) out.data[i] = 2 * x.data[i] + Number(ctx.node.attrs.plus);
      return out;
    });
    expect(() => registerCpuKernel('add', () => tensor('f32', []))).toThrow(/already registered/);
    const b = new GraphBuilder();
    const g = b.build({ y: b.emit('test_double_plus', [b.input('x', 'f32', [2])], { plus: 1 }) });
    expect(Array.from(runGraph(g, { x: tensor('f32', [2], [1, 2]) }, noWeights).y.data)).toEqual([3, 5]);
  });

  it('erf matches tabulated values to 1e-14', () => {
    const table: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [1.99, 0.995111413199617],
      [2, 0.9953222650189527],
      [2.01, 0.9955248493552482],
      [2.9, 0.9999589021219005],
      [3.5, 0.9999992569016276],
      [5, 0.9999999999984626],
      [-1.5, -0.9661051464753108],
    ];
    for (const [x, e] of table) expect(Math.abs(erf(x) - e)).toBeLessThan(1e-14);
  });
});
