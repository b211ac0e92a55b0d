// adapter_config.json of any type peftc reads, by its peft_type: LoRA's schema
// (config.ts), AdaLoRA's (adalora.ts) or a MALoRA mixture's (malora-moe.ts, peftc's own). Which method turns a config into a graph is the
// method registry's business (methods/registry.ts peftLoader); this file only parses.
import { type AdaLoraAdapterConfig, parseAdaLoraConfig } from './adalora.ts';
import { type LoraAdapterConfig, parseLoraConfig } from './config.ts';
import { type MaloraMoeAdapterConfig, parseMaloraMoeConfig } from './malora-moe.ts';

/** A parsed adapter_config.json of any type peftc reads. */
export type PeftAdapterConfig = LoraAdapterConfig | AdaLoraAdapterConfig | MaloraMoeAdapterConfig;

/** Validates an adapter_config.json by its peft_type; `file` is named in errors. */
export function parsePeftConfig(json: unknown, file = 'adapter_config.json'): PeftAdapterConfig {
  const type = json && typeof json === 'object' ? (json as { peft_type?: unknown }).peft_type : undefined;
  if (type === 'ADALORA') return parseAdaLoraConfig(json, file);
  if (type === 'MALORA_MOE') return parseMaloraMoeConfig(json, file);
  return parseLoraConfig(json, file);
}

/** Whether a parsed config is a MALoRA mixture's (peftc's own format, malora-moe.ts). */
export function isMaloraMoeConfig(c: PeftAdapterConfig): c is MaloraMoeAdapterConfig {
  return c.peft_type === 'MALORA_MOE';
}

/** Whether a parsed config is AdaLoRA's (its rank_pattern holds masks, not ranks). */
export function isAdaLoraConfig(c: PeftAdapterConfig): c is AdaLoraAdapterConfig {
  return c.peft_type === 'ADALORA';
}
