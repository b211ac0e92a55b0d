// AdaLoRA as a registered method (PEFT 0.21, peft/tuners/adalora; facts in
// ../../../shared/METHODS.md "AdaLoRA"): SVD-form adapters (inject.ts), their structure
// for merge / disable / save (structure.ts), the rank allocator split between the compiled
// step and the host (allocator.ts, session.ts), and PEFT's ADALORA format (peft.ts).

import { LayeredWeightStore } from '../../ir/weights.ts';
import { foldSites, mergeAdapters, selectSites } from '../adapters/merge.ts';
import { registerStructure } from '../adapters/sites.ts';
import { registerConflict } from '../conflicts.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { importanceObserver } from './allocator.ts';
import { injectAdaLora } from './inject.ts';
import { type AdaLoraOptions, adaloraOptions } from './options.ts';
import { adaloraOptionsFromPeft, adaloraPeftAdapter } from './peft.ts';
import { startAllocation } from './session.ts';
import { adaloraStructure } from './structure.ts';

export { budgetSchedule, importanceObserver, maskThreshold, svdParam, tripletScores } from './allocator.ts';
export { injectAdaLora, keptIndices } from './inject.ts';
export { type AdaLoraOptions, adaloraOptions, adaloraScale } from './options.ts';
export { adaloraOptionsFromPeft, adaloraPeftAdapter } from './peft.ts';
export { adaloraModules, startAllocation } from './session.ts';
export { type AdaLoraData, adaloraParamNames, adaloraStructure } from './structure.ts';

export const adalora: MethodDef<AdaLoraOptions> = {
  name: 'adalora',
  description:
    'AdaLoRA: y = W x + b + B (A * E) dropout(x) * lora_alpha / (init_r + 1e-5), ranks pruned by importance (PEFT AdaLoraConfig keys)',
  options: adaloraOptions,
  apply: (g, o, ctx) => {
    // AdaLoraConfig.__post_init__ warns the same way.
    if (o.r !== 8) ctx.log(`note: adalora ignores r (${o.r}); init_r (${o.init_r}) is the initial rank`);
    return injectAdaLora(g, o, ctx.weights);
  },
  merge: (g, o, ctx) => {
    const { graph, weights } = mergeAdapters(g, ctx.weights, [o.adapter_name], 'adalora-merge');
    return { graph, weights };
  },
  // Re-adds the adapter (its tensors from the store) and takes its delta out of the base weights.
  unmerge: (g, o, ctx) => {
    const { graph } = injectAdaLora(g, o);
    const sites = selectSites(graph, [o.adapter_name], 'adalora-unmerge');
    const changed = foldSites(graph, sites, ctx.weights, -1, 'adalora-unmerge');
    return { graph, weights: ctx.weights ? new LayeredWeightStore([changed, ctx.weights]) : undefined };
  },
  peft: { peftType: 'ADALORA', fromConfig: adaloraOptionsFromPeft, toAdapter: adaloraPeftAdapter },
  train: {
    observe: importanceObserver,
    start: startAllocation,
  },
  properties: { identityAtInit: true, mergeEqualsForward: true, mergeUnmergeIdentity: true },
  fixtures: {
    options: ({ r, alpha, init }) => ({
      init_r: r,
      target_r: r - 1,
      total_step: 10,
      lora_alpha: alpha,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      init_lora_weights: init === 'identity',
    }),
  },
};

if (!hasMethod('adalora')) {
  registerStructure(adaloraStructure);
  registerMethod(adalora);
  registerConflict({
    first: 'adalora',
    later: 'adalora',
    reason:
      'PEFT trains one AdaLoRA adapter per model ("AdaLoraModel supports only 1 trainable adapter"); keep one adalora entry',
  });
  for (const other of ['lora', 'dora'])
    registerConflict({
      first: 'adalora',
      later: other,
      eitherOrder: true,
      reason: `PEFT cannot put ${other === 'dora' ? 'DoRA (a LoRA adapter with use_dora)' : 'LoRA'} and AdaLoRA adapters in one model ("Cannot combine adapters with different peft types"); use one of them${other === 'dora' ? ' (AdaLoRA refuses DoRA too)' : ''}`,
    });
  registerConflict({
    first: 'adalora',
    later: 'qlora',
    reason:
      'qlora quantizes the base weights, so it must come before adalora (the adapter sits in full precision over the 4-bit base); move the qlora entry first',
  });
  registerConflict({
    first: 'loraplus',
    later: 'adalora',
    reason:
      'loraplus regroups the params of the adapters before it, so the adalora entry must come first; move the loraplus entry after it',
  });
}
