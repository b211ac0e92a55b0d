// LoRA options: PEFT's LoraConfig keys (what a recipe's {"method": "lora", ...} holds),
// with PEFT's defaults, plus `adapter_name` (PEFT passes it beside the config).
import { z } from 'zod';
import { REFUSED_FIELDS, type RefusedFieldName, refusedField } from '../../io/peft/refused.ts';
import {
  adapterKeys,
  checkTargetKeys,
  loraDropout,
  moduleNames as names,
  targetKeys,
} from './adapter-keys.ts';

/**
 * LoraConfig fields peftc does not implement (DoRA, ...): a recipe may hold them "off"
 * (null / false / empty, as in a LoraConfig copied from PEFT); any other value is refused
 * by name below, not as an unknown key. init_lora_weights has its own schema here.
 */
type NotImplemented = Exclude<RefusedFieldName, 'init_lora_weights'>;
const notImplemented = Object.fromEntries(
  Object.keys(REFUSED_FIELDS)
    .filter((k) => k !== 'init_lora_weights')
    .map((k) => [k, z.unknown().optional()]),
) as Record<NotImplemented, z.ZodOptional<z.ZodUnknown>>;

export const loraOptions = z
  .strictObject({
    r: z
      .number({ error: 'expected a positive integer' })
      .int({ error: 'expected a positive integer' })
      .positive({ error: 'expected a positive integer' })
      .default(8),
    lora_alpha: z.number().positive().default(8),
    lora_dropout: loraDropout,
    /** List (suffix match), one regex string (full match), or "all-linear". PEFT's LLaMA default: q_proj, v_proj. */
    target_modules: names.default(['q_proj', 'v_proj']),
    bias: z.enum(['none', 'all', 'lora_only']).default('none'),
    use_rslora: z.boolean().default(false),
    /** DoRA: a trained magnitude per output row rescales W + s B A (PEFT's spelling). */
    use_dora: z.boolean().default(false),
    /**
     * How DoRA takes ||W + s B A||_row each step (peftc's option; PEFT has one form):
     * 'factored' from a frozen ||W||^2_row and [out, r], [r, r] products, never holding
     * W + s B A; 'dense' materialises it as PEFT does. Same values (a property test).
     */
    dora_norm: z.enum(['factored', 'dense']).default('factored'),
    /** true: kaiming-uniform A, zero B; 'gaussian': A ~ N(0, 1/r), zero B; false: both random (tests);
     * 'given': both must come from the weight store (loading an adapter);
     * 'pissa' / 'pissa_niter_<N>' / 'olora': A and B from the SVD / QR of the base weight,
     * which the residual W - s B A replaces (lora/residual-init.ts). */
    init_lora_weights: z
      .union([
        z.boolean(),
        z.enum(['gaussian', 'given', 'pissa', 'olora']),
        z.string().regex(/^pissa_niter_[0-9]+$/, 'pissa_niter_<N> takes a whole number of iterations'),
      ])
      .default(true),
    /**
     * How a trained PiSSA / OLoRA adapter is saved. 'lora' (default): converted to plain
     * LoRA for the ORIGINAL base weights (rank 2r; PEFT's
     * path_initial_model_for_weight_conversion), which PEFT loads on the untouched model;
     * 'residual': as trained, with its init in the config, so the loader recomputes the
     * residual as PEFT does.
     */
    save_as: z.enum(['lora', 'residual']).default('lora'),
    rank_pattern: z.record(z.string(), z.number().int().positive()).default({}),
    alpha_pattern: z.record(z.string(), z.number().positive()).default({}),
    ...targetKeys,
    modules_to_save: z.array(z.string().min(1)).nullable().default(null),
    ...adapterKeys,
    ...notImplemented,
  })
  .superRefine((o, ctx) => {
    const { init_lora_weights: _ownSchema, ...rest } = o;
    const refused = refusedField(rest);
    if (refused)
      ctx.addIssue({
        code: 'custom',
        path: [refused.field],
        message: `${refused.what} is not supported yet; remove it from the recipe or turn it off (false / null)`,
      });
    // Saving a PiSSA / OLoRA adapter converted to plain LoRA keeps lora_A and lora_B only
    // (as PEFT's conversion does): refuse what would be lost or mis-scaled.
    const residual =
      typeof o.init_lora_weights === 'string' &&
      (o.init_lora_weights === 'pissa' ||
        o.init_lora_weights === 'olora' ||
        o.init_lora_weights.startsWith('pissa_niter_'));
    if (residual && o.save_as === 'lora') {
      const lost: Array<[string, boolean, string]> = [
        ['use_dora', o.use_dora, 'the DoRA magnitudes'],
        ['modules_to_save', (o.modules_to_save?.length ?? 0) > 0, 'the modules_to_save copies'],
        ['bias', o.bias !== 'none', 'the trained biases'],
        [
          'use_rslora',
          o.use_rslora && (Object.keys(o.rank_pattern).length > 0 || Object.keys(o.alpha_pattern).length > 0),
          'the per-module scale (PEFT doubles alpha_pattern, which is wrong with rsLoRA)',
        ],
      ];
      for (const [field, hit, what] of lost)
        if (hit)
          ctx.addIssue({
            code: 'custom',
            path: [field],
            message: `with init_lora_weights "${o.init_lora_weights}", saving as plain LoRA (save_as "lora", PEFT's conversion) would drop ${what}; set "save_as": "residual" or turn this off`,
          });
    }
    // PEFT's LoraConfig.__post_init__ checks.
    checkTargetKeys(o, ctx);
  });

export type LoraOptions = z.output<typeof loraOptions>;
export type LoraOptionsInput = z.input<typeof loraOptions>;

/** s = alpha / r, or alpha / sqrt(r) with rsLoRA. */
export function loraScale(alpha: number, r: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}
