// LoRA+ (Hayou et al. 2024) as PEFT 0.21 implements it: no graph rewrite, only the optimizer's
// param groups of `create_loraplus_optimizer` (peft/optimizers/loraplus.py). Recipe entry
// {"method": "loraplus", "loraplus_lr_ratio": 16, "loraplus_lr_embedding": 1e-6,
// "loraplus_weight_decay": 0.0}, after the adapter entries whose params it regroups.
// What PEFT's code does, rule by rule (checked against a PEFT run: scripts/reference/
// loraplus_groups.py -> test/fixtures/peft/loraplus-groups.json):
// - params held by a LoRA Embedding layer (lora_embedding_A/B) -> "embedding", at
//   loraplus_lr_embedding;
// - else "lora_B" in the name or a 1-D param (biases, norms, DoRA magnitudes) -> lr * ratio:
//   "groupB", or "groupB_no_decay" (decay 0) when the name holds "bias" (get_parameter_names
//   excludes only nn.LayerNorm params, and LLaMA's norms are RMSNorm);
// - everything else (lora_A, 2-D modules_to_save copies) -> "groupA" at lr.
// Every group but groupB_no_decay takes loraplus_weight_decay (default 0), never the
// optimizer's own weight decay: PEFT sets it per group.
import { z } from 'zod';
import { registerConflict } from '../conflicts.ts';
import {
  hasMethod,
  type MethodDef,
  MethodError,
  type ParamGroup,
  type ParamGroupContext,
  registerMethod,
} from '../registry.ts';

export const loraplusOptions = z.strictObject({
  /** lr of the B side over the optimizer's lr; required, as in PEFT (16 is the usual choice). */
  loraplus_lr_ratio: z.number().positive(),
  /** lr of the LoRA params of embedding layers. */
  loraplus_lr_embedding: z.number().positive().default(1e-6),
  /** Weight decay of every group but the B-side biases (PEFT's default 0, whatever the optimizer's). */
  loraplus_weight_decay: z.number().nonnegative().default(0),
});
export type LoraplusOptions = z.output<typeof loraplusOptions>;

/** PEFT's four groups, in its order; empty ones are dropped. */
export function loraplusGroups(
  params: readonly string[],
  o: LoraplusOptions,
  ctx: ParamGroupContext,
): ParamGroup[] {
  if (!params.some((n) => n.includes('.lora_')))
    throw new MethodError(
      'loraplus: no trainable LoRA param to regroup; put the loraplus entry after the lora entry it applies to',
    );
  const a: string[] = [];
  const emb: string[] = [];
  const b: string[] = [];
  const bNoDecay: string[] = [];
  for (const n of params) {
    if (n.includes('.lora_embedding_')) emb.push(n);
    else if (n.includes('lora_B') || ctx.shapeOf(n).length === 1) (n.includes('bias') ? bNoDecay : b).push(n);
    else a.push(n);
  }
  const high = ctx.lr * o.loraplus_lr_ratio;
  const wd = o.loraplus_weight_decay;
  const groups: ParamGroup[] = [
    { name: 'loraplus_A', params: a, lr: ctx.lr, weight_decay: wd },
    { name: 'loraplus_embedding', params: emb, lr: o.loraplus_lr_embedding, weight_decay: wd },
    { name: 'loraplus_B', params: b, lr: high, weight_decay: wd },
    { name: 'loraplus_B_no_decay', params: bNoDecay, lr: high, weight_decay: 0 },
  ];
  return groups.filter((g) => g.params.length > 0);
}

export const loraplus: MethodDef<LoraplusOptions> = {
  name: 'loraplus',
  description: 'LoRA+: lora_B and 1-D trainable params at lr * loraplus_lr_ratio (optimizer groups only)',
  options: loraplusOptions,
  apply: (g) => ({ graph: g }),
  // PEFT's optimizer takes every trainable param into its own groups: earlier method groups end here.
  paramGroups: (groups, o, ctx) =>
    loraplusGroups(
      groups.flatMap((g) => g.params),
      o,
      ctx,
    ),
  properties: {
    // It changes no output: only how the optimizer steps.
    identityAtInit: true,
    mergeEqualsForward: false,
    mergeUnmergeIdentity: false,
    addsTrainableParams: false,
    changesGraph: false,
  },
  fixtures: { options: () => ({ loraplus_lr_ratio: 16 }) },
};

if (!hasMethod('loraplus')) {
  registerMethod(loraplus);
  for (const later of ['lora', 'dora'])
    registerConflict({
      first: 'loraplus',
      later,
      reason: `loraplus regroups the params of the adapters before it, so the ${later} entry must come first; move the loraplus entry after it`,
    });
}
