// GaLoreProjector.get_orthogonal_matrix on the host: the thin SVD of the gradient in
// float64 (the step graph cannot take an SVD), sliced as the official code slices it:
// right P = Vh[:r] [r, n], left P = U[:, :r] [m, r], full both. Rows/columns of a thin
// SVD are orthonormal, so P P^T = I (right) and P^T P = I (left).
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { svd } from '../pissa/linalg.ts';
import type { Projection } from './options.ts';

/** The projector matrices of `p` for a gradient `g` [m, n], in projectorKinds order. */
export function projectorsOf(g: Tensor, p: Projection): Tensor[] {
  const [m, n] = g.shape;
  const d = svd(Float64Array.from(g.data), m, n);
  const { r } = p;
  const left = () => {
    const a = new Float32Array(m * r);
    for (let i = 0; i < m; i++) for (let j = 0; j < r; j++) a[i * r + j] = d.U[i * d.k + j];
    return tensor('f32', [m, r], a);
  };
  const right = () => tensor('f32', [r, n], Float32Array.from(d.Vt.subarray(0, r * n)));
  if (p.side === 'right') return [right()];
  if (p.side === 'left') return [left()];
  return [left(), right()];
}
