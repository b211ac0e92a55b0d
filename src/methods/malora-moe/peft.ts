// A MALoRA mixture saved and loaded in peftc's own adapter format (io/peft/malora-moe.ts:
// peft_type MALORA_MOE, LoraConfig's fields plus num_experts / top_k / shared_rank, the
// four tensors per module under PEFT-style keys). PEFT has no mixture type and refuses
// the folder by its peft_type; peftc's logits / train --init-adapter load it.
import { FormatError } from '../../io/errors.ts';
import { isMaloraMoeConfig, type PeftAdapterConfig } from '../../io/peft/index.ts';
import type { Graph } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { adapterSites } from '../adapters/sites.ts';
import { optionsFromConfig, sharedConfigFields } from '../lora/peft.ts';
import { MethodError, type PeftAdapterData } from '../registry.ts';
import { type MaloraMoeOptions, maloraMoeOptions } from './options.ts';
import { maloraMoeStructure } from './structure.ts';

export function maloraMoeAdapter(
  g: Graph,
  o: MaloraMoeOptions,
  read: (name: string) => Tensor,
  baseModel: string | null,
): PeftAdapterData {
  const sites = adapterSites(g).filter(
    (s) => s.structure === maloraMoeStructure && s.adapter === o.adapter_name,
  );
  if (sites.length === 0)
    throw new MethodError(`malora-moe: the graph has no mixture adapter named '${o.adapter_name}' to save`);
  const weights = new Map<string, Tensor>();
  for (const s of sites) for (const p of s.params) weights.set(p, read(p));
  const config = {
    peft_type: 'MALORA_MOE',
    ...sharedConfigFields(o, baseModel, g),
    num_experts: o.num_experts,
    top_k: o.top_k,
    shared_rank: o.shared_rank,
  };
  return { adapterName: o.adapter_name, config, weights };
}

/** The options a saved mixture's adapter_config.json stands for (its tensors then bind by name). */
export function maloraMoeFromConfig(
  c: PeftAdapterConfig,
  adapterName: string,
  file: string,
): MaloraMoeOptions {
  if (!isMaloraMoeConfig(c))
    throw new FormatError(
      file,
      `peft_type '${c.peft_type}' is not a MALoRA mixture (MALORA_MOE)`,
      'peft_type',
    );
  if (c.target_modules === null) throw new FormatError(file, 'target_modules is missing', 'target_modules');
  return optionsFromConfig(
    maloraMoeOptions,
    {
      num_experts: c.num_experts,
      top_k: c.top_k,
      r: c.r,
      shared_rank: c.shared_rank,
      lora_alpha: c.lora_alpha,
      lora_dropout: c.lora_dropout,
      target_modules: c.target_modules,
      exclude_modules: c.exclude_modules,
      layers_to_transform: c.layers_to_transform,
      layers_pattern: c.layers_pattern,
      init_lora_weights: 'given',
      adapter_name: adapterName,
    },
    file,
  );
}
