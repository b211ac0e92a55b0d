// LoRA+ (Hayou et al. 2024) as PEFT implements it: no graph rewrite, only the optimizer's
// param groups of `create_loraplus_optimizer` (peft/optimizers/loraplus.py). Recipe entry
// {"method": "loraplus", "loraplus_lr_ratio": 16, "loraplus_lr_embedding": 1e-6}, after the
// adapter entries whose params it regroups. What PEFT's code does, rule by rule:
// - a trainable param goes to the B side if "lora_B" is in its name or it is 1-D (biases,
//   norms, DoRA magnitudes): lr * ratio. On that side, a name without "bias" keeps the
//   optimizer's weight decay ("groupB"; get_parameter_names excludes only nn.LayerNorm
//   params, and LLaMA's norms are RMSNorm), one with "bias" gets 0 ("groupB_no_decay").
// - everything else (lora_A, the LoRA embedding matrices, 2-D modules_to_save copies) is
//   "groupA" at lr with the optimizer's weight decay.
// - the "embedding" group at loraplus_lr_embedding never fills in PEFT: it tests
//   isinstance(attrgetter(name)(model), Embedding), and attrgetter of a parameter's name
//   returns the parameter, not its layer. `lora_embedding_B` does not contain "lora_B",
//   so embedding LoRA trains at lr in groupA. We do the same (a test says so) and keep
//   the key so recipes written for PEFT load.
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
  /** PEFT's embedding-group lr (its group stays empty there and here; see above). */
  loraplus_lr_embedding: z.number().positive().default(1e-6),
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
  const b: string[] = [];
  const bNoDecay: string[] = [];
  for (const n of params) {
    if (n.includes('lora_B') || ctx.shapeOf(n).length === 1) (n.includes('bias') ? bNoDecay : b).push(n);
    else a.push(n);
  }
  const high = ctx.lr * o.loraplus_lr_ratio;
  const groups: ParamGroup[] = [
    { name: 'loraplus_A', params: a, lr: ctx.lr, weight_decay: ctx.weightDecay },
    { name: 'loraplus_B', params: b, lr: high, weight_decay: ctx.weightDecay },
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
  registerConflict({
    first: 'loraplus',
    later: 'lora',
    reason:
      'loraplus regroups the params of the adapters before it, so the lora entry must come first; move the loraplus entry after it',
  });
}
