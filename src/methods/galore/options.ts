// GaLore's recipe entry: the per-group keys of the official GaLoreAdamW (jiaweizzhao/GaLore,
// galore_torch/adamw.py + galore_projector.py at 2cc66f8), plus the modules whose weights
// it trains (torchrun_main.py's --target_modules list: attn and mlp linears).
import { z } from 'zod';

export const PROJ_TYPES = ['std', 'reverse_std', 'right', 'left', 'full'] as const;
export type ProjType = (typeof PROJ_TYPES)[number];

export const galoreOptions = z.strictObject({
  /** Modules whose weights become full-rank trainable with projected gradients (PEFT's target rules). */
  target_modules: z.union([z.string(), z.array(z.string()).min(1)]),
  exclude_modules: z
    .union([z.string(), z.array(z.string())])
    .nullable()
    .default(null),
  /** Rank of the gradient projection (capped by the weight's smaller side, as the SVD slice is). */
  rank: z.number().int().positive().default(128),
  /** The projector is recomputed from the gradient every this many steps (step 0 included). */
  update_proj_gap: z.number().int().positive().default(200),
  /** Multiplies the projected-back update (the official alpha / scale). */
  scale: z.number().positive().default(0.25),
  proj_type: z.enum(PROJ_TYPES).default('std'),
});
export type GaloreOptions = z.output<typeof galoreOptions>;

/** How a weight [m, n] is projected: R = G P^T (right, P [r, n]), P^T G (left, P [m, r]), or both (full). */
export type Side = 'right' | 'left' | 'full';

/** GaLoreProjector.project's choice of side for proj_type and the gradient's shape [m, n]. */
export function projectionSide(projType: ProjType, m: number, n: number): Side {
  switch (projType) {
    case 'std':
      return m >= n ? 'right' : 'left';
    case 'reverse_std':
      return m >= n ? 'left' : 'right';
    default:
      return projType;
  }
}

export interface Projection {
  readonly side: Side;
  /** The rank actually kept: min(rank, m, n) (torch's U[:, :r] / Vh[:r] of a thin SVD). */
  readonly r: number;
  /** Shapes of the projector matrices: [r, n] (right), [m, r] (left), both for full (left first). */
  readonly projectors: readonly (readonly [number, number])[];
  /** Shape of the projected gradient and of the Adam moments. */
  readonly low: readonly [number, number];
}

export function projection(o: Pick<GaloreOptions, 'rank' | 'proj_type'>, m: number, n: number): Projection {
  const side = projectionSide(o.proj_type, m, n);
  const r = Math.min(o.rank, m, n);
  if (side === 'right') return { side, r, projectors: [[r, n]], low: [m, r] };
  if (side === 'left') return { side, r, projectors: [[m, r]], low: [r, n] };
  return {
    side,
    r,
    projectors: [
      [m, r],
      [r, n],
    ],
    low: [r, r],
  };
}
