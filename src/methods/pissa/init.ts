// PEFT 0.21's pissa_init and olora_init (tuners/lora/layer.py), in float64:
//   PiSSA:  W = V S Uh (thin SVD); S_r /= s; A = diag(sqrt(S_r)) Uh_r; B = V_r diag(sqrt(S_r));
//           "pissa_niter_<N>" takes V_r, S_r, U_r from torch.svd_lowrank(W, r, niter=N).
//   OLoRA:  Q, R = qr(W); B = Q[:, :r]; A = R[:r]  (no split of the scale)
//   both:   residual = W - s B A.
// SVD and QR signs are not unique, so A and B are not either; s B A and the residual are
// (for distinct singular values), which is what tests compare.
import { Rng } from '../../util/rng.ts';
import { matmul, qr, type Svd, svd, svdLowrank } from './linalg.ts';

export interface ResidualInitResult {
  /** [r, in] */
  readonly A: Float64Array;
  /** [out, r] */
  readonly B: Float64Array;
  /** [out, in]: W - s B A. */
  readonly residual: Float64Array;
}

function residualOf(
  W: Float64Array,
  A: Float64Array,
  B: Float64Array,
  out: number,
  inF: number,
  r: number,
  s: number,
) {
  const BA = matmul(B, A, out, r, inF);
  return Float64Array.from(W, (w, i) => w - s * BA[i]);
}

function checkRank(out: number, inF: number, r: number, what: string): void {
  if (r > Math.min(out, inF))
    throw new RangeError(`${what} needs r <= min(out, in) = ${Math.min(out, inF)}, got r = ${r}`);
}

export function pissaInit(
  W: Float64Array,
  out: number,
  inF: number,
  r: number,
  scale: number,
  opts: { niter?: number; seed?: number } = {},
): ResidualInitResult {
  checkRank(out, inF, r, 'PiSSA');
  const d: Svd =
    opts.niter === undefined
      ? svd(W, out, inF)
      : svdLowrank(W, out, inF, r, opts.niter, new Rng(opts.seed ?? 0));
  const A = new Float64Array(r * inF);
  const B = new Float64Array(out * r);
  for (let j = 0; j < r; j++) {
    const g = Math.sqrt(d.S[j] / scale);
    for (let i = 0; i < inF; i++) A[j * inF + i] = g * d.Vt[j * inF + i];
    for (let i = 0; i < out; i++) B[i * r + j] = d.U[i * d.k + j] * g;
  }
  return { A, B, residual: residualOf(W, A, B, out, inF, r, scale) };
}

export function oloraInit(
  W: Float64Array,
  out: number,
  inF: number,
  r: number,
  scale: number,
): ResidualInitResult {
  checkRank(out, inF, r, 'OLoRA');
  const { Q, R, k } = qr(W, out, inF);
  const A = R.slice(0, r * inF);
  const B = new Float64Array(out * r);
  for (let i = 0; i < out; i++) for (let j = 0; j < r; j++) B[i * r + j] = Q[i * k + j];
  return { A, B, residual: residualOf(W, A, B, out, inF, r, scale) };
}
