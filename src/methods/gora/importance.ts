// GoRA's importance of a weight from W and its accumulated gradient G (official
// compute_importance). The paper reports the mean of |W * G| ("union_mean", its default
// here); the code's default flag is the Frobenius norm of W * G. The "est_nuc" types use a
// randomized low-rank SVD (sum of log1p of the top singular values), as the code does.
import { Rng, seedOf } from '../../util/rng.ts';
import { svd, svdLowrank } from '../pissa/index.ts';

export const IMPORTANCE_TYPES = [
  'union_mean',
  'union_frobenius_norm',
  'union_2ord_norm',
  'union_nuc_norm',
  'union_est_nuc_norm',
  'grad_mean',
  'grad_frobenius_norm',
  'grad_nuc_norm',
  'grad_est_nuc_norm',
  'union_mean_grad_nuc_norm',
  'union_mean_union_nuc_norm',
  'grad_mean_grad_nuc_norm',
] as const;
export type ImportanceType = (typeof IMPORTANCE_TYPES)[number];

const meanAbs = (x: Float64Array) => x.reduce((a, v) => a + Math.abs(v), 0) / x.length;
const frob = (x: Float64Array) => Math.sqrt(x.reduce((a, v) => a + v * v, 0));
const nuc = (x: Float64Array, rows: number, cols: number) => svd(x, rows, cols).S.reduce((a, s) => a + s, 0);

function estNuc(x: Float64Array, rows: number, cols: number, rank: number, label: string): number {
  const q = Math.min(rank, rows, cols);
  const { S } = svdLowrank(x, rows, cols, q, 8, new Rng(seedOf(label)));
  return S.slice(0, q).reduce((a, s) => a + Math.log1p(s), 0);
}

/** Mean over rows of each row's 2-norm (torch.linalg.norm(x, dim=1).mean()). */
function rowNormMean(x: Float64Array, rows: number, cols: number): number {
  let s = 0;
  for (let i = 0; i < rows; i++) {
    let r = 0;
    for (let j = 0; j < cols; j++) r += x[i * cols + j] ** 2;
    s += Math.sqrt(r);
  }
  return s / rows;
}

/**
 * The importance of W [rows, cols] with gradient G; `estRank` is the official sketch width
 * (max_rank, or 4 r); `scale` takes the square root (official gora_scale_importance).
 */
export function importanceOf(
  type: ImportanceType,
  W: Float64Array,
  G: Float64Array,
  rows: number,
  cols: number,
  opts: { estRank: number; label: string; sqrt?: boolean },
): number | [number, number] {
  const WG = Float64Array.from(W, (w, i) => w * G[i]);
  const est = (x: Float64Array) => estNuc(x, rows, cols, opts.estRank, opts.label);
  const v: number | [number, number] = (() => {
    switch (type) {
      case 'union_mean':
        return meanAbs(WG);
      case 'union_frobenius_norm':
        return frob(WG);
      case 'union_2ord_norm':
        return rowNormMean(WG, rows, cols);
      case 'union_nuc_norm':
        return nuc(WG, rows, cols);
      case 'union_est_nuc_norm':
        return est(WG);
      case 'grad_mean':
        return meanAbs(G);
      case 'grad_frobenius_norm':
        return frob(G);
      case 'grad_nuc_norm':
        return nuc(G, rows, cols);
      case 'grad_est_nuc_norm':
        return est(G);
      case 'union_mean_grad_nuc_norm':
        return [meanAbs(WG), est(G)];
      case 'union_mean_union_nuc_norm':
        return [meanAbs(WG), est(WG)];
      case 'grad_mean_grad_nuc_norm':
        return [meanAbs(G), est(G)];
    }
  })();
  if (!opts.sqrt) return v;
  return typeof v === 'number' ? Math.sqrt(v) : [Math.sqrt(v[0]), Math.sqrt(v[1])];
}
