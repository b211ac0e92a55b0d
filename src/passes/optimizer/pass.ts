// `optimizer` as a named pass for pipelines (the train phase, passes/phases.ts): the
// optimizer as a recipe states it, and param groups by param name, so the options are
// plain data (printable, checked by a schema) rather than closures.
import { z } from 'zod';
import type { PassDef } from '../pass.ts';
import { adamw8bit, paged } from './adamw8bit.ts';
import { appendOptimizer } from './index.ts';
import { adamw, sgd } from './rules.ts';
import type { UpdateObserver, UpdateRule } from './types.ts';

export const optimizerSpecSchema = z.strictObject({
  type: z.enum(['adamw', 'sgd', 'adamw8bit', 'paged_adamw', 'paged_adamw8bit']),
  lr: z.number().positive(),
  betas: z.tuple([z.number(), z.number()]).readonly().optional(),
  eps: z.number().optional(),
  weight_decay: z.number().optional(),
  momentum: z.number().optional(),
  dampening: z.number().optional(),
  nesterov: z.boolean().optional(),
  /** 8-bit AdamW: params with fewer elements keep 32-bit state (bitsandbytes' default 4096). */
  min_8bit_size: z.number().int().min(0).optional(),
  /** Each update right after its gradient is final (per-layer.ts). */
  per_layer: z.boolean().optional(),
});

/** The optimizer as a recipe's `optimizer` key states it (omitted keys: PyTorch's defaults). */
export type OptimizerSpec = z.infer<typeof optimizerSpecSchema>;

/** PyTorch defaults: AdamW betas (0.9, 0.999), eps 1e-8, weight_decay 0.01; SGD weight_decay 0. */
export function updateRule(o: OptimizerSpec): UpdateRule {
  if (o.type === 'sgd')
    return sgd({ momentum: o.momentum ?? 0, dampening: o.dampening, nesterov: o.nesterov });
  const adam = { betas: o.betas ?? ([0.9, 0.999] as const), eps: o.eps ?? 1e-8 };
  // paged_*: the same update with its state marked paged (kept on the host by the WebGPU backend).
  if (o.type === 'adamw') return adamw(adam);
  if (o.type === 'paged_adamw') return paged(adamw(adam));
  const eight = adamw8bit({ ...adam, minEightBitSize: o.min_8bit_size });
  return o.type === 'paged_adamw8bit' ? paged(eight) : eight;
}

export function defaultWeightDecay(o: OptimizerSpec): number {
  return o.weight_decay ?? (o.type === 'sgd' ? 0 : 0.01);
}

const groupSchema = z.strictObject({
  name: z.string().min(1),
  lrScale: z.number().min(0),
  weightDecay: z.number().min(0),
  /** Trainable param names in this group; a param listed by two groups goes to the first. */
  params: z.array(z.string()),
  /** An update of its own (ParamGroup.rule); the one option that is code, not data. */
  rule: z.custom<UpdateRule>((v) => typeof v === 'function', 'an update rule function').optional(),
});

export type ParamGroupSpec = z.infer<typeof groupSchema>;

const options = z.strictObject({
  optimizer: optimizerSpecSchema,
  groups: z.array(groupSchema).default([]),
  maxGradNorm: z.number().positive().optional(),
  accumulate: z.number().int().positive().default(1),
  keepGrads: z.boolean().default(false),
  /** Methods that watch each param's update (MethodTraining.observe); code, like a group's rule. */
  observers: z
    .array(z.custom<UpdateObserver>((v) => typeof v === 'function', 'an update observer function'))
    .default([]),
});

export type OptimizerStepOptions = z.input<typeof options>;

export const optimizerPass: PassDef<z.infer<typeof options>> = {
  name: 'optimizer',
  description:
    'global-norm clipping and the per-param update appended after autodiff (assign:<param> outputs)',
  options,
  run: (g, { options: o }) =>
    appendOptimizer(g, {
      rule: updateRule(o.optimizer),
      defaultGroup: { name: 'default', lrScale: 1, weightDecay: defaultWeightDecay(o.optimizer) },
      groups: o.groups.map(({ params, ...group }) => {
        const names = new Set(params);
        return { ...group, match: (p) => names.has(String(p.attrs.name)) };
      }),
      maxGradNorm: o.maxGradNorm,
      accumulate: o.accumulate,
      keepGrads: o.keepGrads,
      observers: o.observers,
      perLayer: o.optimizer.per_layer,
    }),
};
