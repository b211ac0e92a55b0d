// malora-moe options: the MALoRA paper's mixture of asymmetric low-rank experts
// (Wang et al., Findings of NAACL 2025; ../../../shared/METHODS.md "MaLoRA"). LoRA's keys
// keep PEFT's names (r is each expert's rank); the mixture's keys are peftc's own, since
// no reference implementation with a config format was reachable (docs/DECISIONS.md).
import { z } from 'zod';
import {
  adapterKeys,
  checkTargetKeys,
  loraDropout,
  moduleNames as names,
  posInt,
  targetKeys,
} from '../lora/adapter-keys.ts';

export const maloraMoeOptions = z
  .strictObject({
    /** Experts per adapted module. */
    num_experts: posInt('a positive integer').default(4),
    /** Experts each token uses (the router's top-k; their weights renormalised to sum to 1). */
    top_k: posInt('a positive integer').default(2),
    /** Each expert's rank: the rows of its private projection and the columns of its up-projection. */
    r: posInt('a positive integer').default(8),
    /** Size of the down-projection subspace all experts of a module share. */
    shared_rank: posInt('a positive integer').default(16),
    lora_alpha: z.number().positive().default(16),
    lora_dropout: loraDropout,
    target_modules: names.default([
      'q_proj',
      'k_proj',
      'v_proj',
      'o_proj',
      'gate_proj',
      'up_proj',
      'down_proj',
    ]),
    ...targetKeys,
    /**
     * true: the subspace, private projections and router kaiming-uniform, up-projections
     * zero (the model starts unchanged); false: every part random (tests); 'given': loading.
     */
    init_lora_weights: z.union([z.boolean(), z.literal('given')]).default(true),
    ...adapterKeys,
  })
  .superRefine((o, ctx) => {
    if (o.top_k > o.num_experts)
      ctx.addIssue({
        code: 'custom',
        path: ['top_k'],
        message: `must be at most num_experts (${o.num_experts}): a token cannot use more experts than there are`,
      });
    checkTargetKeys(o, ctx);
  });

export type MaloraMoeOptions = z.output<typeof maloraMoeOptions>;

/** Trainable params the mixture adds to one module of `inF` -> `outF`. */
export function moeModuleParams(o: MaloraMoeOptions, inF: number, outF: number): number {
  const E = o.num_experts;
  return o.shared_rank * inF + E * o.r * o.shared_rank + outF * E * o.r + E * inF;
}

/** The same for a symmetric mixture of LoRA experts (MoLoRA: E private A [r, in], B [out, r]) with a router. */
export function moloraModuleParams(o: MaloraMoeOptions, inF: number, outF: number): number {
  return o.num_experts * (o.r * (inF + outF) + inF);
}
