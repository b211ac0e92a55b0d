// AdaLoRA options: PEFT 0.21's AdaLoraConfig keys (peft/tuners/adalora/config.py) with its
// defaults, the LoraConfig keys it inherits that peftc implements for it, plus
// `adapter_name`. What PEFT refuses is refused here with its reason.
import { z } from 'zod';
import {
  adapterKeys,
  checkTargetKeys,
  loraDropout,
  moduleNames as names,
  targetKeys,
} from '../lora/adapter-keys.ts';

const int = (min: number) =>
  z
    .number({ error: `expected an integer >= ${min}` })
    .int({ error: `expected an integer >= ${min}` })
    .min(min, { error: `expected an integer >= ${min}` });
/** RankAllocator asserts 0 < beta < 1 (layer.py). */
const beta = z
  .number({ error: 'expected a number in (0, 1)' })
  .gt(0, { error: 'expected a number in (0, 1)' })
  .lt(1, { error: 'expected a number in (0, 1)' })
  .default(0.85);

/** A LoraConfig key PEFT accepts but peftc does not implement for AdaLoRA: only its "off" value passes. */
const off = <T extends z.ZodTypeAny>(t: T, what: string) =>
  t.optional().refine((v) => v === undefined || v === null || v === false || v === 'none', {
    error: `${what} is not supported with adalora yet; remove it from the recipe`,
  });

export const adaloraOptions = z
  .strictObject({
    /** Initial rank of every adapted module (PEFT creates every SVDLinear with init_r). */
    init_r: int(1).default(12),
    /** Target average rank: the final budget is target_r x the number of adapted modules. */
    target_r: int(0).default(8),
    /** Steps of full budget before the budget shrinks. */
    tinit: int(0).default(0),
    /** Steps at the end with the final budget fixed. */
    tfinal: int(0).default(0),
    /** Steps between two allocations (masking) while the budget shrinks. */
    deltaT: int(1).default(1),
    beta1: beta,
    beta2: beta,
    orth_reg_weight: z
      .number()
      .min(0, { error: 'should be >= 0 (PEFT refuses a negative weight)' })
      .default(0.5),
    /** Required, as in PEFT 0.21 (ValueError when None): the step the schedule counts to. */
    total_step: z
      .number({ error: 'AdaLoRA needs total_step (an integer > 0), as PEFT does' })
      .int()
      .positive(),
    /**
     * `<module>.lora_E` -> boolean mask over init_r, as PEFT saves it. Used when an adapter is
     * loaded (init_lora_weights 'given'): the kept triplets come from the file. A training
     * run starts every module at init_r, as PEFT does, and saves its own allocation here.
     */
    rank_pattern: z.record(z.string(), z.array(z.boolean())).nullable().default(null),
    /** LoraConfig's r: unused by AdaLoRA (PEFT warns when it is not 8); init_r is the rank. */
    r: z.number().int().positive().default(8),
    /** scaling = lora_alpha (> 0), else the module's rank (PEFT update_layer). */
    lora_alpha: z.number().default(8),
    lora_dropout: loraDropout,
    /** PEFT's AdaLoRA default for LLaMA: q_proj, v_proj (TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING). */
    target_modules: names.default(['q_proj', 'v_proj']),
    ...targetKeys,
    /** true: E = 0, A and B ~ N(0, 0.02) (reset_lora_parameters); false: all three ~ N(0, 1) (torch.randn); 'given': from the weight store. */
    init_lora_weights: z.union([z.boolean(), z.literal('given')]).default(true),
    /** AdaLoRA's scaling is lora_alpha / ranknum whatever use_rslora says (PEFT ignores it too). */
    use_rslora: z.boolean().default(false),
    /** PEFT: "ADALORA does not support DoRA." (AdaLoraConfig.__post_init__). */
    use_dora: z
      .boolean()
      .default(false)
      .refine((v) => !v, {
        error:
          'AdaLoRA cannot be combined with DoRA: PEFT refuses it (AdaLoraConfig raises "ADALORA does not support DoRA"; its SVD layers have no magnitude vector)',
      }),
    /** PEFT: "ADALORA does not support LOFTQ." */
    loftq_config: z
      .unknown()
      .optional()
      .refine(
        (v) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0),
        {
          error:
            'AdaLoRA cannot be combined with LoftQ: PEFT refuses it (AdaLoraConfig raises "ADALORA does not support LOFTQ")',
        },
      ),
    bias: z
      .enum(['none', 'all', 'lora_only'])
      .default('none')
      .refine((v) => v === 'none', {
        error: "bias other than 'none' is not supported with adalora yet; remove it or set 'none'",
      }),
    modules_to_save: off(z.array(z.string()).nullable(), 'modules_to_save'),
    fan_in_fan_out: off(z.boolean(), 'fan_in_fan_out'),
    ...adapterKeys,
    inference_mode: z.boolean().optional(),
  })
  .superRefine((o, ctx) => {
    // AdaLoraConfig.__post_init__, in its order.
    checkTargetKeys(o, ctx);
    if (o.tinit >= o.total_step - o.tfinal)
      ctx.addIssue({
        code: 'custom',
        path: ['tinit'],
        message: `tinit ${o.tinit} >= total_step ${o.total_step} - tfinal ${o.tfinal} leaves no budgeting phase (PEFT refuses it); decrease tfinal / tinit or increase total_step`,
      });
    // PEFT does not check this up front, but its RankAllocator then fails at the first
    // allocation (torch.kthvalue with k = init budget - budget <= 0). A loaded adapter is not allocated.
    if (o.init_lora_weights !== 'given' && o.target_r >= o.init_r)
      ctx.addIssue({
        code: 'custom',
        path: ['target_r'],
        message: `target_r ${o.target_r} must be below init_r ${o.init_r}: AdaLoRA prunes each module from init_r triplets down to an average of target_r`,
      });
  });

export type AdaLoraOptions = z.output<typeof adaloraOptions>;

/** PEFT's scale: lora_alpha (or the rank when lora_alpha <= 0) / (ranknum + 1e-5), ranknum = init_r. */
export function adaloraScale(o: AdaLoraOptions, rank: number): number {
  return (o.lora_alpha > 0 ? o.lora_alpha : rank) / (o.init_r + 1e-5);
}
