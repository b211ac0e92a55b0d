// DoRA as a recipe entry of its own: {"method": "dora", <LoraConfig keys>} is
// {"method": "lora", ..., "use_dora": true} (PEFT has no DoRA config: it is LoraConfig's
// use_dora). Everything else is LoRA's: the rewrite (lora/dora.ts), merge, PEFT format.
import { z } from 'zod';
import { type MethodEntry, registerConflict } from '../conflicts.ts';
import { lora } from '../lora/index.ts';
import { type LoraOptions, loraOptions } from '../lora/options.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';

const doraOptions = z.preprocess(
  (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    return { ...v, use_dora: (v as { use_dora?: unknown }).use_dora ?? true };
  },
  loraOptions.refine((o) => o.use_dora, {
    path: ['use_dora'],
    message: 'method "dora" is LoRA with use_dora: true; for plain LoRA use {"method": "lora"}',
  }),
) as unknown as z.ZodType<LoraOptions>;

export const dora: MethodDef<LoraOptions> = {
  ...lora,
  name: 'dora',
  description:
    "DoRA: LoRA whose adapted weight is rescaled per output row to a trained magnitude (PEFT's use_dora)",
  options: doraOptions,
  // PEFT reads DoRA adapters as LORA adapters with use_dora: the lora method loads them.
  peft: { peftType: 'LORA', toAdapter: lora.peft!.toAdapter },
  fixtures: {
    options: (p) => ({ ...lora.fixtures.options(p), target_modules: ['q_proj', 'o_proj', 'down_proj'] }),
  },
};

if (!hasMethod('dora')) {
  registerMethod(dora);
  const name = (e: MethodEntry) => String(e.adapter_name ?? 'default');
  registerConflict({
    first: 'dora',
    later: 'qlora',
    reason:
      'qlora quantizes the base weights, so it must come before dora (QDoRA: the adapter and its magnitude sit over the 4-bit base); move the qlora entry first',
  });
  for (const [first, later] of [
    ['lora', 'dora'],
    ['dora', 'lora'],
    ['dora', 'dora'],
  ])
    registerConflict({
      first,
      later,
      when: (a, b) => name(a) === name(b),
      reason: (a) =>
        `both add the adapter '${name(a)}' to the same model; give the second entry another adapter_name`,
    });
}
