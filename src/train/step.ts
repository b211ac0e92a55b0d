// The training step as a compiler pipeline over a forward graph with a `loss`
// output: autodiff (gradients only for trainable params) -> activation
// checkpointing (optional) -> optimizer update appended in the graph. The result
// runs as one backend executable per step; params and optimizer state are updated
// in place through `assign:` outputs.
import type { Graph, Node } from '../ir/graph.ts';
import { autodiff } from '../passes/autodiff/index.ts';
import { checkpointActivations } from '../passes/checkpoint/index.ts';
import {
  adamw,
  adamw8bit,
  appendOptimizer,
  type ParamGroup,
  paged,
  sgd,
  type UpdateRule,
} from '../passes/optimizer/index.ts';

export interface OptimizerSpec {
  readonly type: 'adamw' | 'sgd' | 'adamw8bit' | 'paged_adamw' | 'paged_adamw8bit';
  readonly lr: number;
  readonly betas?: readonly [number, number];
  readonly eps?: number;
  readonly weight_decay?: number;
  readonly momentum?: number;
  readonly dampening?: number;
  readonly nesterov?: boolean;
  /** 8-bit AdamW: params with fewer elements keep 32-bit state (bitsandbytes' default 4096). */
  readonly min_8bit_size?: number;
}

export interface TrainStepSpec {
  readonly optimizer: OptimizerSpec;
  readonly maxGradNorm?: number;
  readonly checkpointing?: boolean;
  /** Extra param groups (LoRA+ and friends); first match wins. */
  readonly groups?: readonly (ParamGroup & { readonly match: (param: Node) => boolean })[];
  /** Micro-steps per optimizer step (gradient_accumulation_steps; default 1). */
  readonly accumulate?: number;
}

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

export function buildTrainStep(forward: Graph, spec: TrainStepSpec): Graph {
  let g = autodiff(forward, { loss: 'loss' });
  if (spec.checkpointing) g = checkpointActivations(g, { loss: 'loss' });
  return appendOptimizer(g, {
    rule: updateRule(spec.optimizer),
    defaultGroup: { name: 'default', lrScale: 1, weightDecay: defaultWeightDecay(spec.optimizer) },
    groups: spec.groups,
    maxGradNorm: spec.maxGradNorm,
    accumulate: spec.accumulate,
  });
}

/** Names of the optimizer state params a train-step graph declares (they start at zero). */
export function stateParams(step: Graph): Node[] {
  return step.params().filter((p) => p.attrs.role === 'state');
}
