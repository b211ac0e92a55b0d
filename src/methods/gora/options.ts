// GoRA's recipe entry: the official flags (MyTransformers common/parser.py) without the
// `gora-` prefix. Defaults: the paper's setting where it states one (importance = mean of
// |W * G|, the pseudo-inverse "compress" init, ranks in [r/2, 4r]; recalled, see
// docs/DECISIONS.md), else the official code's.
import { z } from 'zod';
import { IMPORTANCE_TYPES } from './importance.ts';

const count = z
  .number({ error: 'expected a whole number' })
  .int({ error: 'expected a whole number' })
  .nonnegative({ error: 'expected a whole number' });

export const goraOptions = z
  .strictObject({
    /** Calibration batches whose gradients are averaged (no update). */
    n_steps: count.positive({ error: 'expected a positive whole number' }).default(8),
    importance_type: z.enum(IMPORTANCE_TYPES).default('union_mean'),
    /** Lower rank bound; null: r / 2 (at least 1), the paper's. 0 lets a weight go without an adapter. */
    min_rank: count.nullable().default(null),
    /** Upper rank bound; null: 4 r, the paper's. */
    max_rank: count.positive({ error: 'expected a positive whole number' }).nullable().default(null),
    /** Normalize importances with a softmax of their min-max scaled values over temperature. */
    softmax_importance: z.boolean().default(false),
    temperature: z.number().positive().default(0.5),
    /** Scale alpha / r_i instead of alpha / r (the nominal rank). */
    dynamic_scaling: z.boolean().default(false),
    /** gamma = lr / sqrt(r_i / in) * scale rank instead of stable_gemma. */
    scale_by_lr: z.boolean().default(false),
    /** The lr of scale_by_lr (official gora-lr). */
    lr: z.number().positive().default(1e-3),
    /** gamma of the compress init (official gora-stable-gemma, spelled so). */
    stable_gemma: z.number().positive().default(0.02),
    /** 'compress': B from the pseudo-inverse of A (the paper's); 'vanilla': LoRA's own init, ranks only. */
    init_method: z.enum(['compress', 'vanilla']).default('compress'),
  })
  .superRefine((o, ctx) => {
    if (o.min_rank !== null && o.max_rank !== null && o.min_rank > o.max_rank)
      ctx.addIssue({
        code: 'custom',
        path: ['min_rank'],
        message: `min_rank ${o.min_rank} is above max_rank ${o.max_rank}; lower it or raise max_rank`,
      });
  });

export type GoraOptions = z.output<typeof goraOptions>;

/** The rank bounds for nominal rank r. */
export function rankBounds(o: GoraOptions, r: number): { minRank: number; maxRank: number } {
  const minRank = o.min_rank ?? Math.max(1, Math.floor(r / 2));
  const maxRank = o.max_rank ?? 4 * r;
  return { minRank: Math.min(minRank, maxRank), maxRank };
}
