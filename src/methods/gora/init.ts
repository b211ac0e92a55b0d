// GoRA's "compress" init (official grad_compress_init), in float64:
//   A  ~ kaiming_uniform(a = sqrt 5) [r, in]  (U(-1/sqrt(in), 1/sqrt(in)), as LoRA's A)
//   B  = -(gamma / alpha) G A^T (A A^T + 1e-8 I)^+          [out, r]
// so that with LoRA's scale s = alpha / scale_rank
//   s B A = -(gamma / scale_rank) G P_A,   P_A = A^T (A A^T)^+ A,
// the gradient projected onto the row space of A: the adapter starts as one compressed
// gradient-descent step. Sign: the paper's (a descent step); the official code writes B
// without the minus, an ascent step at init, which we do not copy (docs/DECISIONS.md).
// gamma is stable_gemma, or with scale_by_lr lr / sqrt(r / in) * scale_rank.
import { Matrix, pseudoInverse } from 'ml-matrix';
import type { Rng } from '../../util/rng.ts';
import { matmul } from '../pissa/index.ts';

export interface CompressInit {
  /** [r, in] */
  readonly A: Float64Array;
  /** [out, r] */
  readonly B: Float64Array;
}

/** The gamma of the official code: stable_gemma, or the lr rule of scale_by_lr. */
export function goraGamma(o: {
  stableGemma: number;
  scaleByLr: boolean;
  lr: number;
  r: number;
  inFeatures: number;
  scaleRank: number;
}): number {
  return o.scaleByLr ? (o.lr / Math.sqrt(o.r / o.inFeatures)) * o.scaleRank : o.stableGemma;
}

/** LoRA's A init (kaiming_uniform, a = sqrt 5): U(-1/sqrt(in), 1/sqrt(in)). */
export function kaimingA(r: number, inF: number, rng: Rng): Float64Array {
  const bound = 1 / Math.sqrt(inF);
  return Float64Array.from({ length: r * inF }, () => rng.uniform(-bound, bound));
}

/** B for a given A and mean gradient G [out, in]: -(gamma / alpha) G A^T (A A^T + 1e-8 I)^+. */
export function compressB(
  G: Float64Array,
  A: Float64Array,
  out: number,
  inF: number,
  r: number,
  gammaOverAlpha: number,
): Float64Array {
  const AAt = matmul(A, A, r, inF, r, { transB: true });
  for (let i = 0; i < r; i++) AAt[i * r + i] += 1e-8;
  const rows = Array.from({ length: r }, (_, i) => Array.from(AAt.subarray(i * r, (i + 1) * r)));
  const inv = Float64Array.from(pseudoInverse(new Matrix(rows)).to1DArray());
  const GAt = matmul(G, A, out, inF, r, { transB: true }); // [out, r]
  const B = matmul(GAt, inv, out, r, r);
  for (let i = 0; i < B.length; i++) B[i] *= -gammaOverAlpha;
  return B;
}

export function compressInit(
  G: Float64Array,
  out: number,
  inF: number,
  r: number,
  gammaOverAlpha: number,
  rng: Rng,
): CompressInit {
  const A = kaimingA(r, inF, rng);
  return { A, B: compressB(G, A, out, inF, r, gammaOverAlpha) };
}
