// The optimizer pass against a hand-written PyTorch AdamW / SGD (float64 reference).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { adamw, appendOptimizer, sgd } from '../../src/passes/optimizer/index.ts';

/** A graph whose gradient for param p is simply the fed input `g` (so we control gradients). */
function gradGraph(n: number) {
  const b = new GraphBuilder();
  const p = b.param('p', 'f32', [n], 'trainable', { kind: 'zeros' });
  const q = b.param('q', 'f32', [n], 'trainable', { kind: 'zeros' });
  const g = b.input('g', 'f32', [n]);
  const h = b.input('h', 'f32', [n]);
  return b.build([
    ['out', b.add(p, q)],
    ['grad:p', g],
    ['grad:q', h],
  ]);
}

function refAdamW(
  p: number[],
  grads: number[][],
  lr: number[],
  b1: number,
  b2: number,
  eps: number,
  wd: number,
) {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  p = [...p];
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] -= lr[k] * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      p[i] -= (lr[k] / (1 - b1 ** t)) * (m[i] / denom);
    }
  });
  return p;
}

const vec = (n: number) =>
  fc.array(fc.double({ min: -2, max: 2, noNaN: true }), { minLength: n, maxLength: n });

describe('optimizer pass', () => {
  it('AdamW matches PyTorch semantics over several steps, with param groups', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 5 })
          .chain((n) => fc.tuple(vec(n), fc.array(fc.tuple(vec(n), vec(n)), { minLength: 1, maxLength: 4 }))),
        fc.double({ min: 1e-4, max: 1e-1, noNaN: true }),
        fc.constantFrom(0, 0.01, 0.1),
        async ([p0, steps], lr, wd) => {
          const n = p0.length;
          const g = appendOptimizer(gradGraph(n), {
            rule: adamw({ betas: [0.9, 0.999], eps: 1e-8 }),
            defaultGroup: { name: 'default', lrScale: 1, weightDecay: wd },
            groups: [{ name: 'q', lrScale: 16, weightDecay: 0, match: (x) => x.attrs.name === 'q' }],
          });
          const store = new MapWeightStore()
            .set('p', tensor('f32', [n], p0))
            .set('q', tensor('f32', [n], p0))
            .set('optimizer.exp_avg.p', tensor('f32', [n]))
            .set('optimizer.exp_avg_sq.p', tensor('f32', [n]))
            .set('optimizer.exp_avg.q', tensor('f32', [n]))
            .set('optimizer.exp_avg_sq.q', tensor('f32', [n]));
          const exe = await new CpuBackend().compile(g, store);
          for (let k = 0; k < steps.length; k++) {
            await exe.run({
              feeds: {
                g: tensor('f32', [n], steps[k][0]),
                h: tensor('f32', [n], steps[k][1]),
                lr: tensor('f32', [], [lr]),
                step: tensor('f32', [], [k + 1]),
              },
            });
          }
          const wantP = refAdamW(
            p0,
            steps.map((s) => s[0]),
            steps.map(() => lr),
            0.9,
            0.999,
            1e-8,
            wd,
          );
          const wantQ = refAdamW(
            p0,
            steps.map((s) => s[1]),
            steps.map(() => lr * 16),
            0.9,
            0.999,
            1e-8,
            0,
          );
          const gotP = Array.from((await exe.readParam('p')).data);
          const gotQ = Array.from((await exe.readParam('q')).data);
          gotP.forEach((x, i) => {
            expect(x).toBeCloseTo(wantP[i], 4);
          });
          gotQ.forEach((x, i) => {
            expect(x).toBeCloseTo(wantQ[i], 3);
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('SGD with momentum and weight decay matches PyTorch', async () => {
    const g = appendOptimizer(gradGraph(2), {
      rule: sgd({ momentum: 0.9 }),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0.1 },
    });
    const store = new MapWeightStore()
      .set('p', tensor('f32', [2], [1, -2]))
      .set('q', tensor('f32', [2], [0, 0]))
      .set('optimizer.momentum_buffer.p', tensor('f32', [2]))
      .set('optimizer.momentum_buffer.q', tensor('f32', [2]));
    const exe = await new CpuBackend().compile(g, store);
    const grads = [
      [0.5, 1],
      [-1, 0.25],
    ];
    let p = [1, -2];
    let buf = [0, 0];
    for (let k = 0; k < 2; k++) {
      await exe.run({
        feeds: {
          g: tensor('f32', [2], grads[k]),
          h: tensor('f32', [2], [0, 0]),
          lr: tensor('f32', [], [0.1]),
          step: tensor('f32', [], [k + 1]),
        },
      });
      const d = p.map((x, i) => grads[k][i] + 0.1 * x);
      buf = k === 0 ? d : buf.map((x, i) => 0.9 * x + d[i]);
      p = p.map((x, i) => x - 0.1 * buf[i]);
    }
    Array.from((await exe.readParam('p')).data).forEach((x, i) => {
      expect(x).toBeCloseTo(p[i], 5);
    });
  });

  it('clips the global gradient norm like clip_grad_norm_ and reports it', async () => {
    const g = appendOptimizer(gradGraph(2), {
      rule: sgd({ momentum: 0 }),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
      maxGradNorm: 1,
    });
    const store = new MapWeightStore()
      .set('p', tensor('f32', [2], [0, 0]))
      .set('q', tensor('f32', [2], [0, 0]));
    const exe = await new CpuBackend().compile(g, store);
    const out = await exe.run({
      feeds: {
        g: tensor('f32', [2], [3, 0]),
        h: tensor('f32', [2], [0, 4]),
        lr: tensor('f32', [], [1]),
        step: tensor('f32', [], [1]),
      },
    });
    expect(out.grad_norm.data[0]).toBeCloseTo(5, 5);
    const p = Array.from((await exe.readParam('p')).data);
    expect(p[0]).toBeCloseTo(-3 / (5 + 1e-6), 5);
  });

  it('refuses a graph without gradients, and a gradient for a frozen param', () => {
    const b = new GraphBuilder();
    const p = b.param('p', 'f32', [2], 'frozen');
    const g0 = b.build({ out: p });
    const opts = { rule: sgd({ momentum: 0 }), defaultGroup: { name: 'd', lrScale: 1, weightDecay: 0 } };
    expect(() => appendOptimizer(g0, opts)).toThrow(/run autodiff first/);
    const g1 = b.build([['grad:p', p]]);
    expect(() => appendOptimizer(g1, opts)).toThrow(/'p' has a gradient but is frozen/);
  });
});

describe('SGD variants (torch.optim.SGD)', () => {
  for (const v of [
    { momentum: 0.9, dampening: 0.5, nesterov: false },
    { momentum: 0.8, dampening: 0, nesterov: true },
  ]) {
    it(`momentum ${v.momentum}, dampening ${v.dampening}, nesterov ${v.nesterov}`, async () => {
      const g = appendOptimizer(gradGraph(2), {
        rule: sgd(v),
        defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0.05 },
      });
      const store = new MapWeightStore()
        .set('p', tensor('f32', [2], [1, -2]))
        .set('q', tensor('f32', [2], [0, 0]))
        .set('optimizer.momentum_buffer.p', tensor('f32', [2]))
        .set('optimizer.momentum_buffer.q', tensor('f32', [2]));
      const exe = await new CpuBackend().compile(g, store);
      const grads = [
        [0.5, 1],
        [-1, 0.25],
        [2, -0.5],
      ];
      let p = [1, -2];
      let buf: number[] = [];
      for (let k = 0; k < grads.length; k++) {
        await exe.run({
          feeds: {
            g: tensor('f32', [2], grads[k]),
            h: tensor('f32', [2], [0, 0]),
            lr: tensor('f32', [], [0.1]),
            step: tensor('f32', [], [k + 1]),
          },
        });
        // torch/optim/sgd.py, _single_tensor_sgd
        const d = p.map((x, i) => grads[k][i] + 0.05 * x);
        buf = k === 0 ? d : buf.map((x, i) => v.momentum * x + (1 - v.dampening) * d[i]);
        const dir = v.nesterov ? d.map((x, i) => x + v.momentum * buf[i]) : buf;
        p = p.map((x, i) => x - 0.1 * dir[i]);
      }
      Array.from((await exe.readParam('p')).data).forEach((x, i) => {
        expect(x).toBeCloseTo(p[i], 5);
      });
    });
  }

  it('refuses nesterov without momentum, as PyTorch does', () => {
    expect(() => sgd({ momentum: 0, nesterov: true })).toThrow(/nesterov momentum requires momentum > 0/);
  });
});
