// GoRA's numerics (methods/gora): the allocation keeps the budget up to its stated rounding,
// ranks rise with importance and respect the bounds; the compress init puts the gradient,
// projected onto A's row space, into B A, with the sign of a descent step.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allocateRanks,
  compressInit,
  importanceOf,
  normalizeImportances,
} from '../../src/methods/gora/index.ts';
import { matmul, qr, svd } from '../../src/methods/pissa/index.ts';
import { Rng } from '../../src/util/rng.ts';

const arbTargets = fc
  .record({
    shapes: fc.array(fc.tuple(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 })), {
      minLength: 1,
      maxLength: 12,
    }),
    imps: fc.array(fc.double({ min: 1e-6, max: 1e3, noNaN: true }), { minLength: 12, maxLength: 12 }),
    r: fc.integer({ min: 1, max: 16 }),
    minRank: fc.integer({ min: 0, max: 4 }),
    span: fc.integer({ min: 0, max: 40 }),
    softmax: fc.boolean(),
    temperature: fc.double({ min: 0.1, max: 2, noNaN: true }),
  })
  .map(({ shapes, imps, r, minRank, span, softmax, temperature }) => ({
    targets: shapes.map(([i, o], k) => ({
      module: `m${k}`,
      inFeatures: i,
      outFeatures: o,
      importance: imps[k],
    })),
    o: { r, minRank, maxRank: minRank + span, softmax, temperature },
  }));

describe('gora allocation', () => {
  it('keeps the budget up to rounding (half a parameter per weight) plus the min_rank lift', () => {
    fc.assert(
      fc.property(arbTargets, ({ targets, o }) => {
        const a = allocateRanks(targets, o);
        const noFloor = allocateRanks(targets, { ...o, minRank: 0, maxRank: Number.MAX_SAFE_INTEGER });
        // Unclamped: within total + n / 2.
        expect(noFloor.params).toBeLessThanOrEqual(noFloor.budget + targets.length / 2);
        // Clamped: only the min_rank floor can add parameters.
        let lift = 0;
        for (const t of targets) {
          const raw = noFloor.ranks.get(t.module) ?? 0;
          lift += Math.max(0, o.minRank - raw) * (t.inFeatures + t.outFeatures);
        }
        expect(a.params).toBeLessThanOrEqual(a.budget + targets.length / 2 + lift);
        expect(a.budget).toBe(targets.reduce((s, t) => s + (t.inFeatures + t.outFeatures) * o.r, 0));
      }),
    );
  });

  it('bounds hold and ranks are monotone in importance (same shape)', () => {
    fc.assert(
      fc.property(arbTargets, ({ targets, o }) => {
        const same = targets.map((t) => ({ ...t, inFeatures: 16, outFeatures: 24 }));
        const a = allocateRanks(same, o);
        for (const t of same) {
          const r = a.ranks.get(t.module) ?? -1;
          expect(r).toBeGreaterThanOrEqual(o.minRank);
          expect(r).toBeLessThanOrEqual(o.maxRank);
        }
        for (const x of same)
          for (const y of same)
            if ((x.importance as number) < (y.importance as number))
              expect(a.ranks.get(x.module)).toBeLessThanOrEqual(a.ranks.get(y.module) as number);
      }),
    );
  });

  it('shares sum to one; softmax follows the official min-max / temperature form', () => {
    const p = normalizeImportances([1, 2, 3], false, 0.5);
    expect(p).toEqual([1 / 6, 2 / 6, 3 / 6]);
    const s = normalizeImportances([1, 2, 3], true, 0.5);
    const e = [0, 1, 2].map((x) => Math.exp(x));
    const z = e[0] + e[1] + e[2];
    s.forEach((v, i) => {
      expect(v).toBeCloseTo(e[i] / z, 12);
    });
  });

  it('equal importances and shapes give every weight the nominal rank', () => {
    const t = ['a', 'b', 'c'].map((m) => ({ module: m, inFeatures: 8, outFeatures: 8, importance: 2 }));
    const a = allocateRanks(t, { r: 4, minRank: 1, maxRank: 16, softmax: false, temperature: 0.5 });
    expect([...a.ranks.values()]).toEqual([4, 4, 4]);
    expect(a.params).toBe(a.budget);
  });
});

describe('gora compress init', () => {
  it('s B A = -(gamma / scale_rank) G P_A (descent sign), against a float64 QR reference', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 12 }),
        fc.integer({ min: 2, max: 12 }),
        fc.integer({ min: 1, max: 6 }),
        fc.nat(1000),
        (out, inF, r0, seed) => {
          const r = Math.min(r0, inF);
          const rng = new Rng(seed);
          const G = Float64Array.from({ length: out * inF }, () => rng.normal());
          const alpha = 16;
          const scaleRank = 8;
          const gamma = 0.02;
          const { A, B } = compressInit(G, out, inF, r, gamma / alpha, rng.fork('A'));
          const s = alpha / scaleRank;
          const BA = matmul(B, A, out, r, inF);
          // P_A = Q Q^T with Q an orthonormal basis of A's rows (QR of A^T).
          const At = new Float64Array(inF * r);
          for (let i = 0; i < r; i++) for (let j = 0; j < inF; j++) At[j * r + i] = A[i * inF + j];
          const { Q, k } = qr(At, inF, r);
          const P = matmul(Q, Q, inF, k, inF, { transB: true });
          const GP = matmul(G, P, out, inF, inF);
          let err = 0;
          let ref = 0;
          for (let i = 0; i < GP.length; i++) {
            const want = -(gamma / scaleRank) * GP[i];
            err = Math.max(err, Math.abs(s * BA[i] - want));
            ref = Math.max(ref, Math.abs(want));
          }
          // The official 1e-8 ridge on A A^T is the only difference from the exact projection:
          // it moves B by about 1e-8 / sigma_min(A)^2 relative.
          const smin = svd(A, r, inF).S[r - 1];
          expect(err).toBeLessThanOrEqual((1e-6 + 1e-7 / (smin * smin)) * ref + 1e-12);
        },
      ),
    );
  });

  it('full rank A: s B A is the whole gradient step -(gamma / scale_rank) G', () => {
    const rng = new Rng(3);
    const G = Float64Array.from({ length: 4 * 3 }, () => rng.normal());
    const { A, B } = compressInit(G, 4, 3, 3, 0.5, rng);
    const BA = matmul(B, A, 4, 3, 3);
    BA.forEach((v, i) => {
      expect(v).toBeCloseTo(-0.5 * G[i], 5);
    });
  });
});

describe('gora importance', () => {
  it('union_mean is the mean of |W * G|; the pair types average two numbers', () => {
    const W = Float64Array.from([1, -2, 3, 4]);
    const G = Float64Array.from([0.5, 0.5, -1, 0]);
    expect(importanceOf('union_mean', W, G, 2, 2, { estRank: 2, label: 'x' })).toBeCloseTo(
      (0.5 + 1 + 3) / 4,
      12,
    );
    expect(importanceOf('grad_frobenius_norm', W, G, 2, 2, { estRank: 2, label: 'x' })).toBeCloseTo(
      1.5 ** 0.5,
      12,
    );
    expect(
      Array.isArray(importanceOf('union_mean_grad_nuc_norm', W, G, 2, 2, { estRank: 2, label: 'x' })),
    ).toBe(true);
  });
});
