// malora-moe: the MALoRA paper's mixture of asymmetric low-rank experts (Wang et al.,
// "MALoRA: Mixture of Asymmetric Low-Rank Adaptation for Enhanced Multi-Task Learning",
// Findings of NAACL 2025), as a registered method: on each targeted linear, E experts
// share one down-projection subspace S, keep small private projections P_t and their own
// up-projections U_t, and a router weighs the top_k of them per token (inject.ts). Not
// the seed's per-head rank allocation, which is `malora` (../malora/). No merge: the
// routing depends on the token (structure.ts). Saved in peftc's MALORA_MOE format (peft.ts).
import { registerStructure } from '../adapters/sites.ts';
import { type MethodEntry, registerConflict } from '../conflicts.ts';
import { hasMethod, type MethodDef, MethodError, registerMethod } from '../registry.ts';
import { injectMaloraMoe } from './inject.ts';
import { type MaloraMoeOptions, maloraMoeOptions, moeModuleParams, moloraModuleParams } from './options.ts';
import { maloraMoeAdapter, maloraMoeFromConfig } from './peft.ts';
import { maloraMoeStructure } from './structure.ts';

export { injectMaloraMoe } from './inject.ts';
export { moeParamNames } from './names.ts';
export { type MaloraMoeOptions, maloraMoeOptions, moeModuleParams, moloraModuleParams } from './options.ts';
export { maloraMoeAdapter, maloraMoeFromConfig } from './peft.ts';
export { maloraMoeStructure } from './structure.ts';

export const maloraMoe: MethodDef<MaloraMoeOptions> = {
  name: 'malora-moe',
  description:
    'MALoRA (mixture of asymmetric low-rank experts, NAACL Findings 2025): per module, experts share a down-projection subspace, keep small private projections and their own up-projections, and a top-k router mixes them per token',
  options: maloraMoeOptions,
  apply: (g, o, ctx) => {
    const r = injectMaloraMoe(g, o);
    const params = r.modules.reduce((s, m) => s + moeModuleParams(o, m.inF, m.outF), 0);
    const molora = r.modules.reduce((s, m) => s + moloraModuleParams(o, m.inF, m.outF), 0);
    ctx.log(
      `malora-moe: ${r.modules.length} modules x ${o.num_experts} experts (top ${o.top_k}, r ${o.r}, shared ${o.shared_rank}): ` +
        `${params} adapter params, ${(100 * (1 - params / molora)).toFixed(1)}% fewer than a symmetric mixture of rank-${o.r} LoRA experts (${molora})`,
    );
    return { graph: r.graph };
  },
  merge: (_g, o) => {
    throw new MethodError(
      `malora-moe adapter '${o.adapter_name}' cannot be merged: its router weighs the experts per token, so no single weight update equals the mixture; keep it unmerged`,
    );
  },
  peft: { peftType: 'MALORA_MOE', fromConfig: maloraMoeFromConfig, toAdapter: maloraMoeAdapter },
  properties: { identityAtInit: true, mergeEqualsForward: false, mergeUnmergeIdentity: false },
  fixtures: {
    options: ({ r, alpha, init }) => ({
      num_experts: 3,
      top_k: 2,
      r,
      shared_rank: r + 1,
      lora_alpha: alpha,
      target_modules: ['q_proj', 'o_proj', 'down_proj'],
      init_lora_weights: init === 'identity',
    }),
  },
};

if (!hasMethod('malora-moe')) {
  registerStructure(maloraMoeStructure);
  registerMethod(maloraMoe);
  const name = (e: MethodEntry) => String(e.adapter_name ?? 'default');
  registerConflict({
    first: 'malora-moe',
    later: 'qlora',
    reason:
      'qlora quantizes the base weights, so it must come before malora-moe (the experts sit in full precision over the 4-bit base); move the qlora entry first',
  });
  for (const other of ['lora', 'dora', 'malora', 'adalora', 'malora-moe'])
    registerConflict({
      first: 'malora-moe',
      later: other,
      eitherOrder: true,
      when: (a, b) => other === 'adalora' || name(a) === name(b),
      reason: (a) =>
        other === 'adalora'
          ? 'an adapter folder holds one peft_type; AdaLoRA and a MALoRA mixture cannot be saved as one adapter'
          : `both add the adapter '${name(a)}' to the same model; give the second entry another adapter_name`,
    });
}
