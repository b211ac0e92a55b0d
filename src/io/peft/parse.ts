// adapter_config.json of any type peftc reads, by its peft_type: LoRA's schema
// (config.ts) or AdaLoRA's (adalora.ts). Which method turns a config into a graph is the
// method registry's business (methods/registry.ts peftLoader); this file only parses.
import { type AdaLoraAdapterConfig, parseAdaLoraConfig } from './adalora.ts';
import { type LoraAdapterConfig, parseLoraConfig } from './config.ts';

/** A parsed adapter_config.json of any type peftc reads. */
export type PeftAdapterConfig = LoraAdapterConfig | AdaLoraAdapterConfig;

/** Validates an adapter_config.json by its peft_type; `file` is named in errors. */
export function parsePeftConfig(json: unknown, file = 'adapter_config.json'): PeftAdapterConfig {
  const type = json && typeof json === 'object' ? (json as { peft_type?: unknown }).peft_type : undefined;
  return type === 'ADALORA' ? parseAdaLoraConfig(json, file) : parseLoraConfig(json, file);
}

/** Whether a parsed config is AdaLoRA's (its rank_pattern holds masks, not ranks). */
export function isAdaLoraConfig(c: PeftAdapterConfig): c is AdaLoraAdapterConfig {
  return c.peft_type === 'ADALORA';
}
