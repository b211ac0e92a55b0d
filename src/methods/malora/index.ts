// MaLoRA as a registered method, the seed's reading (../../../shared/METHODS.md "MaLoRA"):
// LoRA with its rank allocated per attention head or per weight matrix, from a rule or a
// parameter budget (allocate.ts). The branches are LoRA's (lora/inject.ts); a head-split
// module masks one factor to a block structure (inject.ts) that its own adapter structure
// recognises for merge / disable / save (structure.ts). Saved as plain PEFT LoRA
// (peft.ts): per matrix it is rank_pattern; per head, rank = sum of the head ranks with
// the masked zeros kept. (The mixture-of-experts MALoRA paper is a different method.)
import { LayeredWeightStore } from '../../ir/weights.ts';
import { foldSites, mergeAdapters, selectSites } from '../adapters/merge.ts';
import { registerStructure } from '../adapters/sites.ts';
import { type MethodEntry, registerConflict } from '../conflicts.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { injectMalora } from './inject.ts';
import { type MaloraOptions, maloraOptions } from './options.ts';
import { maloraPeftAdapter } from './peft.ts';
import { maloraHeadStructure } from './structure.ts';

export {
  type Allocation,
  allocateRanks,
  headSplit,
  type ModulePlan,
  maloraAllocation,
  modulePlanParams,
  type Split,
  unitCost,
} from './allocate.ts';
export { injectMalora, loraOptionsWithRanks, maloraLoraOptions, maskedParam } from './inject.ts';
export { type MaloraOptions, maloraOptions } from './options.ts';
export { maloraPeftAdapter } from './peft.ts';
export { constantValue, type MaskedLoraData, maloraHeadStructure, maskedFactors } from './structure.ts';

export const malora: MethodDef<MaloraOptions> = {
  name: 'malora',
  description:
    'MaLoRA (multi-head / matrix-wise rank allocation): LoRA with a rank per attention head (block-masked A/B) or per weight matrix, by rule or parameter budget',
  options: maloraOptions,
  apply: (g, o, ctx) => {
    const r = injectMalora(g, o, ctx.weights);
    const heads = r.allocation.modules.reduce((s, m) => s + m.ranks.length, 0);
    ctx.log(
      `malora: ${r.allocation.modules.length} modules, ${heads} ${o.granularity === 'head' ? 'heads/matrices' : 'matrices'}, ${r.allocation.params} adapter params${o.budget !== null ? ` (budget ${o.budget})` : ''}`,
    );
    return { graph: r.graph, weights: r.weights };
  },
  merge: (g, o, ctx) => {
    const { graph, weights } = mergeAdapters(g, ctx.weights, [o.adapter_name], 'malora-merge');
    return { graph, weights };
  },
  // Re-adds the adapter (its tensors from the store) and takes its delta out of the base weights.
  unmerge: (g, o, ctx) => {
    const { graph } = injectMalora(g, o);
    const sites = selectSites(graph, [o.adapter_name], 'malora-unmerge');
    const changed = foldSites(graph, sites, ctx.weights, -1, 'malora-unmerge');
    return { graph, weights: ctx.weights ? new LayeredWeightStore([changed, ctx.weights]) : undefined };
  },
  // Saved as plain LoRA: the lora method loads it back.
  peft: { peftType: 'LORA', toAdapter: maloraPeftAdapter },
  properties: { identityAtInit: true, mergeEqualsForward: true, mergeUnmergeIdentity: true },
  fixtures: {
    // head_dim 1: every q/k/v output row (o_proj input column) is a head, whatever the test dims.
    options: ({ r, alpha, init }) => ({
      granularity: 'head',
      head_dim: 1,
      r,
      lora_alpha: alpha,
      target_modules: ['q_proj', 'o_proj', 'down_proj'],
      init_lora_weights: init === 'identity',
    }),
  },
};

if (!hasMethod('malora')) {
  registerStructure(maloraHeadStructure);
  registerMethod(malora);
  const name = (e: MethodEntry) => String(e.adapter_name ?? 'default');
  registerConflict({
    first: 'malora',
    later: 'qlora',
    reason:
      'qlora quantizes the base weights, so it must come before malora (the adapter sits in full precision over the 4-bit base); move the qlora entry first',
  });
  for (const other of ['lora', 'dora', 'malora'])
    registerConflict({
      first: 'malora',
      later: other,
      eitherOrder: true,
      when: (a, b) => name(a) === name(b),
      reason: (a) =>
        `both add the adapter '${name(a)}' to the same model; give the second entry another adapter_name`,
    });
  registerConflict({
    first: 'malora',
    later: 'adalora',
    eitherOrder: true,
    reason:
      'PEFT cannot put LoRA (which malora saves as) and AdaLoRA adapters in one model ("Cannot combine adapters with different peft types"); use one of them',
  });
}
