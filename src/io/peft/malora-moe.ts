// adapter_config.json for a MALoRA mixture (peft_type MALORA_MOE): peftc's own format,
// since PEFT has no mixture-of-LoRA type. It is LoraConfig's fields (r = each expert's
// rank, lora_alpha, lora_dropout, target_modules, ...) plus the mixture's: num_experts,
// top_k, shared_rank. The tensors per adapted module, keys as PEFT would write them
// (base_model.model.<module>.<part>.weight, the adapter name removed):
//   lora_S      [shared_rank, in]            the down-projection subspace the experts share
//   lora_P      [num_experts * r, shared_rank]  the experts' private projections, stacked
//   lora_up     [out, num_experts * r]       the experts' up-projections, side by side
//   lora_router [num_experts, in]            the router
// docs/DECISIONS.md "MALoRA mixture" says why, and what PEFT does with such a folder
// (refuses it: unknown peft_type).
import { z } from 'zod';
import { formatShape } from '../../ir/shape.ts';
import { FormatError } from '../errors.ts';
import { loraConfigSchema, parseConfigFields } from './config.ts';
import { MOE_PARTS, type MoePart } from './keys.ts';
import type { KeyedTensor } from './validate.ts';

export const maloraMoeConfigSchema = loraConfigSchema.extend({
  peft_type: z.literal('MALORA_MOE').default('MALORA_MOE'),
  num_experts: z.number().int().positive().default(4),
  top_k: z.number().int().positive().default(2),
  shared_rank: z.number().int().positive().default(16),
});

export type MaloraMoeAdapterConfig = z.infer<typeof maloraMoeConfigSchema>;

export function parseMaloraMoeConfig(json: unknown, file: string): MaloraMoeAdapterConfig {
  const c = parseConfigFields(maloraMoeConfigSchema, json, file);
  if (c.top_k > c.num_experts)
    throw new FormatError(file, `top_k ${c.top_k} exceeds num_experts ${c.num_experts}`, 'top_k');
  return c;
}

/** Each adapted module holds all four parts, with the shapes the config gives. */
export function checkMoeShapes(
  file: string,
  config: MaloraMoeAdapterConfig,
  entries: readonly KeyedTensor[],
): void {
  const modules = new Map<string, Map<MoePart, KeyedTensor>>();
  for (const e of entries) {
    if (e.key.kind !== 'moe') continue;
    let m = modules.get(e.key.module);
    if (!m) modules.set(e.key.module, (m = new Map()));
    m.set(e.key.part, e);
  }
  const { num_experts: E, r, shared_rank: d } = config;
  for (const [module, parts] of modules) {
    const fail = (e: KeyedTensor, problem: string): never => {
      throw new FormatError(file, problem, e.name);
    };
    const lacking = MOE_PARTS.filter((p) => !parts.has(p));
    if (lacking.length)
      fail([...parts.values()][0], `has no matching ${lacking.join(' / ')} for module '${module}'`);
    const [S, P, U, R] = MOE_PARTS.map((p) => parts.get(p)!);
    for (const e of [S, P, U, R])
      if (e.tensor.shape.length !== 2) fail(e, `must have 2 dims, got ${formatShape(e.tensor.shape)}`);
    const inF = S.tensor.shape[1];
    const want = (e: KeyedTensor, rows: number | undefined, cols: number | undefined, why: string) => {
      const [a, b] = e.tensor.shape;
      if ((rows !== undefined && a !== rows) || (cols !== undefined && b !== cols))
        fail(e, `has shape ${formatShape(e.tensor.shape)}, but ${why} for module '${module}'`);
    };
    want(S, d, undefined, `shared_rank = ${d} gives [${d},in]`);
    want(P, E * r, d, `num_experts x r = ${E} x ${r} and shared_rank = ${d} give ${formatShape([E * r, d])}`);
    want(U, undefined, E * r, `num_experts x r = ${E} x ${r} gives [out,${E * r}]`);
    want(R, E, inF, `num_experts = ${E} and lora_S's input size give ${formatShape([E, inF])}`);
  }
}
