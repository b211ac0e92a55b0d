// Float64 decompositions for the PiSSA / OLoRA inits: the thin SVD (ml-matrix, a port of
// JAMA's Golub-Kahan SVD), a thin Householder QR for any shape (ml-matrix's QR assumes
// rows >= cols; OLoRA takes the QR of wide weights too, as torch.linalg.qr does), and
// torch.svd_lowrank's randomized SVD. Matrices are row-major Float64Arrays.
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import type { Rng } from '../../util/rng.ts';

export interface Svd {
  /** [rows, k], orthonormal columns. */
  readonly U: Float64Array;
  /** [k], descending. */
  readonly S: Float64Array;
  /** [k, cols], orthonormal rows. */
  readonly Vt: Float64Array;
  readonly k: number;
}

const toMatrix = (W: Float64Array, rows: number, cols: number) =>
  new Matrix(Array.from({ length: rows }, (_, i) => Array.from(W.subarray(i * cols, (i + 1) * cols))));

/** Thin SVD W = U diag(S) Vt, k = min(rows, cols). */
export function svd(W: Float64Array, rows: number, cols: number): Svd {
  const d = new SingularValueDecomposition(toMatrix(W, rows, cols), { autoTranspose: true });
  const k = Math.min(rows, cols);
  const Um = d.leftSingularVectors;
  const Vm = d.rightSingularVectors;
  const order = [...d.diagonal.keys()].sort((a, b) => d.diagonal[b] - d.diagonal[a]).slice(0, k);
  const U = new Float64Array(rows * k);
  const Vt = new Float64Array(k * cols);
  const S = new Float64Array(k);
  order.forEach((c, j) => {
    S[j] = d.diagonal[c];
    for (let i = 0; i < rows; i++) U[i * k + j] = Um.get(i, c);
    for (let i = 0; i < cols; i++) Vt[j * cols + i] = Vm.get(i, c);
  });
  return { U, S, Vt, k };
}

/** Thin QR by Householder reflections: W = Q R, Q [rows, k] orthonormal, R [k, cols] upper triangular. */
export function qr(
  W: Float64Array,
  rows: number,
  cols: number,
): { Q: Float64Array; R: Float64Array; k: number } {
  const k = Math.min(rows, cols);
  const A = Float64Array.from(W);
  const vs: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    let norm = 0;
    for (let i = j; i < rows; i++) norm += A[i * cols + j] ** 2;
    norm = Math.sqrt(norm);
    const v = new Float64Array(rows);
    // LAPACK's choice: reflect onto -sign(a_jj) ||a|| e_j (no cancellation).
    const alpha = A[j * cols + j] >= 0 ? -norm : norm;
    for (let i = j; i < rows; i++) v[i] = A[i * cols + j];
    v[j] -= alpha;
    let vn = 0;
    for (let i = j; i < rows; i++) vn += v[i] ** 2;
    vs.push(v);
    if (vn === 0) continue;
    for (let c = j; c < cols; c++) {
      let dot = 0;
      for (let i = j; i < rows; i++) dot += v[i] * A[i * cols + c];
      const f = (2 * dot) / vn;
      for (let i = j; i < rows; i++) A[i * cols + c] -= f * v[i];
    }
  }
  const R = new Float64Array(k * cols);
  for (let i = 0; i < k; i++) for (let c = i; c < cols; c++) R[i * cols + c] = A[i * cols + c];
  // Q = H_0 H_1 ... H_{k-1} applied to the first k columns of the identity.
  const Q = new Float64Array(rows * k);
  for (let i = 0; i < k; i++) Q[i * k + i] = 1;
  for (let j = k - 1; j >= 0; j--) {
    const v = vs[j];
    let vn = 0;
    for (let i = j; i < rows; i++) vn += v[i] ** 2;
    if (vn === 0) continue;
    for (let c = 0; c < k; c++) {
      let dot = 0;
      for (let i = j; i < rows; i++) dot += v[i] * Q[i * k + c];
      const f = (2 * dot) / vn;
      for (let i = j; i < rows; i++) Q[i * k + c] -= f * v[i];
    }
  }
  return { Q, R, k };
}

/** C = A B for row-major A [m, n], B [n, p]; transposes on request. */
export function matmul(
  A: Float64Array,
  B: Float64Array,
  m: number,
  n: number,
  p: number,
  opts: { transA?: boolean; transB?: boolean } = {},
): Float64Array {
  const C = new Float64Array(m * p);
  const a = (i: number, l: number) => (opts.transA ? A[l * m + i] : A[i * n + l]);
  const b = (l: number, j: number) => (opts.transB ? B[j * n + l] : B[l * p + j]);
  for (let i = 0; i < m; i++)
    for (let l = 0; l < n; l++) {
      const x = a(i, l);
      if (x === 0) continue;
      for (let j = 0; j < p; j++) C[i * p + j] += x * b(l, j);
    }
  return C;
}

/**
 * torch.svd_lowrank(W, q, niter) (Halko, Martinsson, Tropp 2011, algorithm 4.4, as
 * torch._lowrank implements it): a Gaussian sketch of width q, niter subspace iterations
 * with QR re-orthonormalisation, then the SVD of the small projection. Returns the top q
 * triplets. Randomized: the values depend on the generator, not on torch's.
 */
export function svdLowrank(
  W: Float64Array,
  rows: number,
  cols: number,
  q: number,
  niter: number,
  rng: Rng,
): Svd {
  // torch works on the transpose of a wide matrix.
  if (rows < cols) {
    const Wt = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) Wt[j * rows + i] = W[i * cols + j];
    const t = svdLowrank(Wt, cols, rows, q, niter, rng);
    // W^T = U S Vt  =>  W = Vt^T S U^T.
    const U = new Float64Array(rows * t.k);
    const Vt = new Float64Array(t.k * cols);
    for (let j = 0; j < t.k; j++) {
      for (let i = 0; i < rows; i++) U[i * t.k + j] = t.Vt[j * rows + i];
      for (let i = 0; i < cols; i++) Vt[j * cols + i] = t.U[i * t.k + j];
    }
    return { U, S: t.S, Vt, k: t.k };
  }
  const Rg = Float64Array.from({ length: cols * q }, () => rng.normal());
  let Q = qr(matmul(W, Rg, rows, cols, q), rows, q).Q;
  for (let i = 0; i < niter; i++) {
    const Z = qr(matmul(W, Q, cols, rows, q, { transA: true }), cols, q).Q;
    Q = qr(matmul(W, Z, rows, cols, q), rows, q).Q;
  }
  const B = matmul(Q, W, q, rows, cols, { transA: true }); // [q, cols]
  const small = svd(B, q, cols);
  return { U: matmul(Q, small.U, rows, q, small.k), S: small.S, Vt: small.Vt, k: small.k };
}
