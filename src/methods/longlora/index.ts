// LongLoRA (Chen et al. 2024; dvlab-research/LongLoRA fine-tune.py) as one recipe entry:
// {"method": "longlora", "group_size_ratio": 0.25, "variant": "no_wrap" | "roll",
//  "trainable_params": ["embed", "norm"], <LoraConfig keys>}. The official script applies
// LoRA itself (low_rank_training: r 8, alpha 16, dropout 0.05 on q/k/v/o: the defaults
// here), makes the embeddings and norms trainable, and trains with shifted sparse
// attention (s2-attn.ts) while inference keeps full attention: the S2 rewrite is a
// train-only pass (`longlora-train`), the rest is LoRA's. Trainable embeddings and norms
// become modules_to_save (PEFT's endswith match: "norm" covers every *norm module), so
// the saved adapter is a PEFT LoRA adapter PEFT loads with them.
// `model_max_length` above the model's max_position_embeddings sets linear RoPE
// interpolation with the official factor (rope.ts), in every graph of the run, and the
// saved adapter config carries it.
import { z } from 'zod';
import { registerConflict } from '../conflicts.ts';
import { lora } from '../lora/index.ts';
import { type LoraOptions, loraOptions } from '../lora/options.ts';
import { hasMethod, type MethodDef, MethodError, registerMethod } from '../registry.ts';
import { ropeFactor, ropeScalingOf, withRopeScaling } from './rope.ts';
import { applyS2Attn, type S2Variant } from './s2-attn.ts';

export { parseRopeScaling, type RopeScaling, ropeFactor, ropeScalingOf, withRopeScaling } from './rope.ts';
export { applyS2Attn, S2AttnError, type S2Variant, s2Attention, s2AttnRules } from './s2-attn.ts';

/** The official flag's names -> module names (PEFT matches modules_to_save by endswith). */
const TRAINABLE = { embed: 'embed_tokens', norm: 'norm' } as const;

const own = {
  group_size_ratio: z
    .number()
    .gt(0, { error: 'expected a number in (0, 1]' })
    .lte(1, { error: 'expected a number in (0, 1]' })
    .default(0.25),
  variant: z.enum(['no_wrap', 'roll']).default('no_wrap'),
  trainable_params: z.array(z.enum(['embed', 'norm'])).default(['embed', 'norm']),
  model_max_length: z.number().int().positive().optional(),
};

export type LongloraOptions = LoraOptions & {
  readonly group_size_ratio: number;
  readonly variant: S2Variant;
  readonly trainable_params: readonly ('embed' | 'norm')[];
  readonly model_max_length?: number;
};

/** LongLoRA's keys checked here; the rest are LoraConfig's with the official script's defaults. */
export const longloraOptions = z.looseObject(own).transform((o, ctx): LongloraOptions => {
  const { group_size_ratio, variant, trainable_params, model_max_length, ...rest } = o;
  const saved = new Set([
    ...(((rest as { modules_to_save?: string[] | null }).modules_to_save ?? []) as string[]),
    ...trainable_params.map((p) => TRAINABLE[p]),
  ]);
  const r = loraOptions.safeParse({
    r: 8,
    lora_alpha: 16,
    lora_dropout: 0.05,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
    ...rest,
    modules_to_save: saved.size ? [...saved] : null,
  });
  if (!r.success) {
    for (const issue of r.error.issues)
      ctx.addIssue({ ...issue, code: 'custom', message: issue.message } as never);
    return z.NEVER;
  }
  return { ...r.data, group_size_ratio, variant, trainable_params, model_max_length };
}) as unknown as z.ZodType<LongloraOptions>;

export const longlora: MethodDef<LongloraOptions> = {
  ...(lora as unknown as MethodDef<LongloraOptions>),
  name: 'longlora',
  description:
    'LongLoRA: LoRA with trainable embeddings and norms, trained with shifted sparse attention (S2-Attn); full attention at inference',
  options: longloraOptions,
  apply: (g, o, ctx) => {
    const r = lora.apply(g, o, ctx);
    if (o.model_max_length === undefined) return r;
    const maxPos = ctx.model?.maxPositionEmbeddings;
    if (maxPos === undefined)
      throw new MethodError(
        "longlora: model_max_length needs the model's max_position_embeddings, which this caller did not give",
      );
    const factor = ropeFactor(o.model_max_length, maxPos);
    if (factor === undefined) return r;
    ctx.log(
      `longlora: linear RoPE interpolation, factor ${factor} = ceil(model_max_length ${o.model_max_length} / max_position_embeddings ${maxPos})`,
    );
    return { ...r, graph: withRopeScaling(r.graph, factor) };
  },
  peft: {
    peftType: 'LORA',
    toAdapter: (g, o, read, baseModel) => {
      const a = lora.peft!.toAdapter(g, o, read, baseModel);
      const factor = ropeScalingOf(g);
      // The context extension the adapter was trained with, as LongLoRA's saved config has it.
      return o.model_max_length !== undefined && factor !== 1
        ? { ...a, config: { ...a.config, rope_scaling: { type: 'linear', factor } } }
        : a;
    },
  },
  train: {
    rewrite: (g, o) => applyS2Attn(g, { groupSizeRatio: o.group_size_ratio, variant: o.variant }),
  },
  fixtures: {
    options: (p) => ({ ...lora.fixtures.options(p), lora_dropout: 0, trainable_params: [] }),
  },
};

if (!hasMethod('longlora')) {
  registerMethod(longlora);
  registerConflict({
    first: 'longlora',
    later: 'qlora',
    reason: 'qlora quantizes the base weights, so it must come before longlora; move the qlora entry first',
  });
  for (const other of ['lora', 'dora'])
    registerConflict({
      first: 'longlora',
      later: other,
      eitherOrder: true,
      reason: `longlora applies LoRA itself (its entry takes the LoraConfig keys); put the ${other} settings into the longlora entry`,
    });
}
