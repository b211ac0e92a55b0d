// LoRA as a registered method (PEFT semantics, ../../../shared/METHODS.md), plus the
// multi-adapter passes: lora-merge-adapters, lora-set-active, lora-disable.
import { z } from 'zod';
import { hasPass, registerPass } from '../../passes/pass.ts';
import { disableAdapters, setActiveAdapters } from '../adapters/active.ts';
import { registerStructure } from '../adapters/sites.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { loraStructure } from './branch.ts';
import { doraStructure } from './dora.ts';
import { injectLora } from './inject.ts';
import { mergeLora, unmergeLora } from './merge.ts';
import { type LoraOptions, loraOptions } from './options.ts';
import { loraOptionsFromPeft, loraPeftAdapter } from './peft.ts';

export { disableAdapters, setActiveAdapters } from '../adapters/active.ts';
export { adapterNames } from '../adapters/sites.ts';
export { addLowRank, type LoraData, loraParamNames, loraStructure, lowRankAt } from './branch.ts';
export { type DoraNorm, doraDerived, doraParamNames, doraStructure, rowNorms } from './dora.ts';
export { type InjectResult, injectLora, isLoraTarget, LoraError, loraRules, seedOf } from './inject.ts';
export { mergeLora, unmergeLora } from './merge.ts';
export { type LoraOptions, type LoraOptionsInput, loraOptions, loraScale } from './options.ts';
export { adapterTensors, loraOptionsFromPeft, loraPeftAdapter, peftConfigFor } from './peft.ts';

export const lora: MethodDef<LoraOptions> = {
  name: 'lora',
  description: 'LoRA: y = W x + b + s * B A dropout(x) on the targeted modules (PEFT LoraConfig keys)',
  options: loraOptions,
  apply: (g, o, ctx) => injectLora(g, o, ctx.weights),
  merge: (g, o, ctx) => mergeLora(g, ctx.weights, [o.adapter_name]),
  unmerge: (g, o, ctx) => unmergeLora(g, o, ctx.weights),
  peft: { peftType: 'LORA', fromConfig: loraOptionsFromPeft, toAdapter: loraPeftAdapter },
  properties: { identityAtInit: true, mergeEqualsForward: true, mergeUnmergeIdentity: true },
  fixtures: {
    options: ({ r, alpha, init }) => ({
      r,
      lora_alpha: alpha,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      init_lora_weights: init === 'identity',
    }),
  },
};

const adapterList = z.array(z.string().min(1)).min(1);

if (!hasMethod('lora')) {
  registerStructure(loraStructure);
  registerStructure(doraStructure);
  registerMethod(lora);
  if (!hasPass('lora-merge-adapters')) {
    registerPass({
      name: 'lora-merge-adapters',
      description: 'merge LoRA adapters (default: all in the graph, in order) into the base weights',
      options: z.strictObject({ adapter_names: adapterList.optional() }),
      run: (g, ctx) => mergeLora(g, ctx.weights, ctx.options.adapter_names),
    });
    registerPass({
      name: 'lora-set-active',
      description: 'keep only the named adapters (drop the other branches)',
      options: z.strictObject({ adapters: adapterList }),
      run: (g, ctx) => setActiveAdapters(g, ctx.options.adapters),
    });
    registerPass({
      name: 'lora-disable',
      description: 'remove every adapter branch (the base model)',
      run: (g) => disableAdapters(g),
    });
  }
}
