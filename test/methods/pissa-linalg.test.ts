// The float64 decompositions behind PiSSA / OLoRA (methods/pissa): reconstruction and
// orthogonality over random shapes (tall, wide, square, rank-deficient), and the inits'
// promises: residual + s B A = W; PiSSA's s B A is the best rank-r approximation.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { matmul, oloraInit, pissaInit, qr, svd, svdLowrank } from '../../src/methods/pissa/index.ts';
import { Rng } from '../../src/util/rng.ts';

const arbMatrix = fc
  .record({
    rows: fc.integer({ min: 1, max: 20 }),
    cols: fc.integer({ min: 1, max: 20 }),
    seed: fc.nat(10_000),
    lowRank: fc.boolean(),
  })
  .map(({ rows, cols, seed, lowRank }) => {
    const rng = new Rng(seed);
    let W: Float64Array = Float64Array.from({ length: rows * cols }, () => rng.normal());
    if (lowRank && Math.min(rows, cols) > 2) {
      // rank 2: a product of thin factors
      const L = Float64Array.from({ length: rows * 2 }, () => rng.normal());
      const R = Float64Array.from({ length: 2 * cols }, () => rng.normal());
      W = matmul(L, R, rows, 2, cols);
    }
    return { rows, cols, W, seed };
  });

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function gram(M: Float64Array, rows: number, k: number): Float64Array {
  return matmul(M, M, k, rows, k, { transA: true });
}

const eye = (k: number) => Float64Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? 1 : 0));
const TOL = 1e-10;

describe('float64 decompositions', () => {
  it('svd: U S Vt = W, orthonormal U columns and Vt rows, S descending and >= 0', () => {
    fc.assert(
      fc.property(arbMatrix, ({ rows, cols, W }) => {
        const { U, S, Vt, k } = svd(W, rows, cols);
        const US = Float64Array.from(U, (u, i) => u * S[i % k]);
        expect(maxAbs(matmul(US, Vt, rows, k, cols), W)).toBeLessThan(TOL * (1 + S[0]));
        for (let j = 1; j < k; j++) expect(S[j]).toBeLessThanOrEqual(S[j - 1] + 1e-12);
        expect(Math.min(...S)).toBeGreaterThanOrEqual(-1e-12);
        // Singular vectors of zero singular values are free; check the rest.
        const full = S.every((s) => s > 1e-9);
        if (full) {
          expect(maxAbs(gram(U, rows, k), eye(k))).toBeLessThan(1e-9);
          expect(maxAbs(matmul(Vt, Vt, k, cols, k, { transB: true }), eye(k))).toBeLessThan(1e-9);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('qr: Q R = W, Q^T Q = I, R upper triangular, for tall and wide W', () => {
    fc.assert(
      fc.property(arbMatrix, ({ rows, cols, W }) => {
        const { Q, R, k } = qr(W, rows, cols);
        expect(maxAbs(matmul(Q, R, rows, k, cols), W)).toBeLessThan(
          1e-10 * (1 + Math.max(...W.map(Math.abs))) * 10,
        );
        expect(maxAbs(gram(Q, rows, k), eye(k))).toBeLessThan(1e-10);
        for (let i = 0; i < k; i++)
          for (let c = 0; c < Math.min(i, cols); c++) expect(R[i * cols + c]).toBe(0);
      }),
      { numRuns: 60 },
    );
  });

  it('svdLowrank: with q = min(rows, cols) and a few iterations it reconstructs W; on rank 2 it finds the top 2', () => {
    fc.assert(
      fc.property(arbMatrix, ({ rows, cols, W, seed }) => {
        const k = Math.min(rows, cols);
        const d = svdLowrank(W, rows, cols, k, 2, new Rng(seed));
        const US = Float64Array.from(d.U, (u, i) => u * d.S[i % d.k]);
        const exact = svd(W, rows, cols);
        expect(maxAbs(matmul(US, d.Vt, rows, d.k, cols), W)).toBeLessThan(1e-8 * (1 + exact.S[0]));
        expect(maxAbs(d.S, exact.S)).toBeLessThan(1e-8 * (1 + exact.S[0]));
      }),
      { numRuns: 40 },
    );
  });
});

describe('PiSSA / OLoRA inits', () => {
  const arbInit = arbMatrix.chain((m) =>
    fc.record({
      m: fc.constant(m),
      r: fc.integer({ min: 1, max: Math.min(m.rows, m.cols) }),
      s: fc.double({ min: 0.25, max: 4, noNaN: true }),
    }),
  );

  it('residual + s B A = W for pissa, pissa_niter and olora', () => {
    fc.assert(
      fc.property(arbInit, ({ m: { rows, cols, W, seed }, r, s }) => {
        for (const res of [
          pissaInit(W, rows, cols, r, s),
          pissaInit(W, rows, cols, r, s, { niter: 2, seed }),
          oloraInit(W, rows, cols, r, s),
        ]) {
          const BA = matmul(res.B, res.A, rows, r, cols);
          expect(
            maxAbs(
              Float64Array.from(res.residual, (x, i) => x + s * BA[i]),
              W,
            ),
          ).toBeLessThan(1e-9 * (1 + Math.max(...W.map(Math.abs))));
        }
      }),
      { numRuns: 40 },
    );
  });

  it('pissa: s B A is the best rank-r approximation U_r S_r V_r^T, and A, B split sqrt(S_r / s) as PEFT', () => {
    fc.assert(
      fc.property(arbInit, ({ m: { rows, cols, W }, r, s }) => {
        const res = pissaInit(W, rows, cols, r, s);
        const { U, S, Vt, k } = svd(W, rows, cols);
        const best = new Float64Array(rows * cols);
        for (let i = 0; i < rows; i++)
          for (let j = 0; j < cols; j++)
            for (let l = 0; l < r; l++) best[i * cols + j] += U[i * k + l] * S[l] * Vt[l * cols + j];
        const BA = matmul(res.B, res.A, rows, r, cols);
        expect(
          maxAbs(
            Float64Array.from(BA, (x) => s * x),
            best,
          ),
        ).toBeLessThan(1e-9 * (1 + S[0]));
        // Row norms of A are sqrt(S_j / s).
        for (let j = 0; j < r; j++) {
          let n = 0;
          for (let i = 0; i < cols; i++) n += res.A[j * cols + i] ** 2;
          expect(Math.sqrt(n)).toBeCloseTo(Math.sqrt(S[j] / s), 8);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('olora: B has orthonormal columns and A = B^T W (A upper triangular in its first r columns)', () => {
    fc.assert(
      fc.property(arbInit, ({ m: { rows, cols, W }, r, s }) => {
        const res = oloraInit(W, rows, cols, r, s);
        expect(maxAbs(gram(res.B, rows, r), eye(r))).toBeLessThan(1e-10);
        expect(maxAbs(matmul(res.B, W, r, rows, cols, { transA: true }), res.A)).toBeLessThan(
          1e-9 * (1 + Math.max(...W.map(Math.abs))),
        );
      }),
      { numRuns: 40 },
    );
  });

  it('r above min(out, in) is an error naming both', () => {
    expect(() => pissaInit(new Float64Array(6), 2, 3, 3, 1)).toThrow(
      /PiSSA needs r <= min\(out, in\) = 2, got r = 3/,
    );
  });
});
