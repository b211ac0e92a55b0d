// MaLoRA options (the seed's reading, ../../../shared/METHODS.md "MaLoRA"): LoRA whose rank
// is allocated per attention head or per weight matrix, from a rule or a parameter budget.
// The LoRA keys keep PEFT's names and defaults; the allocation keys are peftc's own.
import { z } from 'zod';
import {
  adapterKeys,
  checkTargetKeys,
  loraDropout,
  moduleNames as names,
  posInt,
  targetKeys,
} from '../lora/adapter-keys.ts';

export const maloraOptions = z
  .strictObject({
    /**
     * 'matrix': one rank per targeted weight matrix (plain PEFT LoRA with rank_pattern);
     * 'head': q_proj / k_proj / v_proj get one rank per head of their output, o_proj one
     * per head of its input; other targets (the MLP) one rank per matrix.
     */
    granularity: z.enum(['head', 'matrix'], { error: 'expected "head" or "matrix"' }),
    /** The nominal rank: each unit's rank without a budget, and the scale's denominator (lora_alpha / r). */
    r: posInt('a positive integer').default(8),
    lora_alpha: z.number().positive().default(8),
    lora_dropout: loraDropout,
    target_modules: names.default(['q_proj', 'k_proj', 'v_proj', 'o_proj']),
    ...targetKeys,
    /** LoRA's inits: true (kaiming A, zero B), 'gaussian', false (both random: tests), 'given' (loading). */
    init_lora_weights: z.union([z.boolean(), z.enum(['gaussian', 'given'])]).default(true),
    /**
     * The most adapter parameters to train (the free ones: a head's masked zeros are not
     * counted, allocate.ts). null: every unit gets rank r scaled by its importance.
     */
    budget: posInt('a positive whole number of parameters').nullable().default(null),
    /**
     * Importance per module (keys matched as PEFT's rank_pattern keys: a module name or a
     * regex of its end); a number for the module (every head of it), or, with granularity
     * 'head', one number per head of a q/k/v/o module. Unlisted units weigh 1.
     */
    importance: z
      .record(z.string(), z.union([z.number().nonnegative(), z.array(z.number().nonnegative()).min(1)]))
      .default({}),
    r_min: posInt('a positive integer').default(1),
    /** The largest rank of a unit; null: the unit's full rank (min of its input and output sizes). */
    r_max: posInt('a positive integer').nullable().default(null),
    /** Size of one head; null: read from the graph's attention op (the q input's last dim). */
    head_dim: posInt('a positive integer').nullable().default(null),
    ...adapterKeys,
  })
  .superRefine((o, ctx) => {
    if (o.r_max !== null && o.r_max < o.r_min)
      ctx.addIssue({ code: 'custom', path: ['r_max'], message: `must be at least r_min (${o.r_min})` });
    if (o.granularity === 'matrix')
      for (const [k, v] of Object.entries(o.importance))
        if (Array.isArray(v))
          ctx.addIssue({
            code: 'custom',
            path: ['importance', k],
            message: 'a list of per-head importances needs granularity "head"; give one number per matrix',
          });
    checkTargetKeys(o, ctx);
  });

export type MaloraOptions = z.output<typeof maloraOptions>;
