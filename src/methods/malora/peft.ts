// MaLoRA's PEFT format: plain PEFT LoRA. Per matrix it is LoRA with rank_pattern as it
// stands; a head-split module is a LoRA of rank R = sum of its head ranks whose masked
// entries are zero, so it is saved as that LoRA with the zeros written (the masked A or B,
// exact). rank_pattern[m] = R_m and alpha_pattern[m] = lora_alpha R_m / r keep PEFT's
// scale alpha_m / r_m equal to peftc's lora_alpha / r. PEFT (and peftc's `lora` loader)
// loads it unchanged; the head structure itself is not in the file (a reload is plain LoRA,
// the same function; training it further would not keep the zeros).

import type { Graph } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { adapterSites } from '../adapters/sites.ts';
import { type LoraData, loraParamNames } from '../lora/branch.ts';
import { peftConfigFor } from '../lora/peft.ts';
import { MethodError, type PeftAdapterData } from '../registry.ts';
import { loraOptionsWithRanks } from './inject.ts';
import type { MaloraOptions } from './options.ts';
import { maloraHeadStructure, maskedFactors } from './structure.ts';

export function maloraPeftAdapter(
  g: Graph,
  o: MaloraOptions,
  read: (name: string) => Tensor,
  baseModel: string | null,
): PeftAdapterData {
  const sites = adapterSites(g).filter(
    (s) =>
      s.adapter === o.adapter_name && (s.structure === maloraHeadStructure || s.structure.name === 'lora'),
  );
  if (sites.length === 0)
    throw new MethodError(`malora: the graph has no adapter named '${o.adapter_name}' to save`);
  const weights = new Map<string, Tensor>();
  const ranks: Array<[string, number]> = [];
  for (const site of sites) {
    const names = loraParamNames(site.module, site.adapter, 'linear');
    const A0 = read(names.A);
    const B0 = read(names.B);
    ranks.push([site.module, A0.shape[0]]);
    if (site.structure === maloraHeadStructure) {
      const { A, B } = maskedFactors(site, read);
      weights.set(names.A, tensor(A0.dtype, A0.shape, Array.from(A)));
      weights.set(names.B, tensor(B0.dtype, B0.shape, Array.from(B)));
    } else {
      const d = site.data as LoraData;
      weights.set(String(d.A.attrs.name), A0);
      weights.set(String(d.B.attrs.name), B0);
    }
  }
  const config = peftConfigFor(loraOptionsWithRanks(o, ranks), baseModel, g);
  return { adapterName: o.adapter_name, config, weights };
}
