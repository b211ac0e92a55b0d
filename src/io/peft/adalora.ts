// adapter_config.json for AdaLoRA (peft_type ADALORA), as PEFT 0.21's AdaLoraConfig
// (peft/tuners/adalora/config.py) writes it: every LoraConfig field plus the rank
// allocator's, and `rank_pattern` in AdaLoRA's own form: module path + ".lora_E" -> a
// boolean mask over init_r (which singular triplets were kept), written by the training
// run's last allocation (model.py _get_adapter_state_dict strips the adapter name from
// the keys). Loading keeps sum(mask) triplets per module (resize_modules_by_rank_pattern);
// a module without a key keeps init_r.
import { z } from 'zod';
import { FormatError } from '../errors.ts';
import { loraConfigSchema, parseConfigFields } from './config.ts';

/** AdaLoraConfig's field defaults (total_step has none: PEFT refuses None). */
export const adaloraConfigSchema = loraConfigSchema.extend({
  peft_type: z.literal('ADALORA').default('ADALORA'),
  target_r: z.number().int().nonnegative().default(8),
  init_r: z.number().int().nonnegative().default(12),
  tinit: z.number().int().nonnegative().default(0),
  tfinal: z.number().int().nonnegative().default(0),
  deltaT: z.number().int().positive().default(1),
  beta1: z.number().default(0.85),
  beta2: z.number().default(0.85),
  orth_reg_weight: z.number().default(0.5),
  total_step: z.number().int().nullable().default(null),
  rank_pattern: z.record(z.string(), z.array(z.boolean())).nullable().default(null),
});

export type AdaLoraAdapterConfig = z.infer<typeof adaloraConfigSchema>;

export function parseAdaLoraConfig(json: unknown, file: string): AdaLoraAdapterConfig {
  const c = parseConfigFields(adaloraConfigSchema, json, file);
  for (const [key, mask] of Object.entries(c.rank_pattern ?? {})) {
    if (!key.endsWith('.lora_E'))
      throw new FormatError(
        file,
        "AdaLoRA's rank_pattern keys are '<module>.lora_E' (as PEFT writes them)",
        `rank_pattern.${key}`,
      );
    if (mask.length !== c.init_r)
      throw new FormatError(
        file,
        `a mask of ${mask.length} entries, but init_r is ${c.init_r} (one entry per initial triplet)`,
        `rank_pattern.${key}`,
      );
  }
  return c;
}

/** The mask of `module` (its HF path), or undefined: PEFT looks the module up by exact name. */
export function adaloraMask(config: AdaLoraAdapterConfig, module: string): readonly boolean[] | undefined {
  return config.rank_pattern?.[`${module}.lora_E`];
}

/** The rank a saved AdaLoRA adapter has on `module`, and why (for messages). */
export function adaloraRankFor(config: AdaLoraAdapterConfig, module: string): { r: number; why: string } {
  const mask = adaloraMask(config, module);
  if (!mask) return { r: config.init_r, why: `init_r = ${config.init_r}` };
  const r = mask.filter(Boolean).length;
  return { r, why: `rank_pattern['${module}.lora_E'] keeps ${r}` };
}
