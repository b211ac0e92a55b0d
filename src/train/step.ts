// The training step as a compiler pipeline over a forward graph with a `loss`
// output: the `train` phase (passes/phases.ts): autodiff (gradients only for
// trainable params) -> activation checkpointing (optional) -> optimizer update
// appended in the graph -> 4-bit fusion. The result runs as one backend executable
// per step; params and optimizer state are updated in place through `assign:` outputs.
import type { Graph, Node } from '../ir/graph.ts';
import { type PipelineOptions, phasePasses, runPipeline, type TrainSettings } from '../passes/index.ts';
import type { ParamGroup } from '../passes/optimizer/index.ts';
import type { OptimizerSpec } from '../passes/optimizer/pass.ts';

export { defaultWeightDecay, type OptimizerSpec, updateRule } from '../passes/optimizer/pass.ts';

export interface TrainStepSpec {
  readonly optimizer: OptimizerSpec;
  readonly maxGradNorm?: number;
  readonly checkpointing?: boolean;
  /** Extra param groups (LoRA+ and friends); first match wins. */
  readonly groups?: readonly (ParamGroup & { readonly match: (param: Node) => boolean })[];
  /** Micro-steps per optimizer step (gradient_accumulation_steps; default 1). */
  readonly accumulate?: number;
}

/** The train phase's settings for a spec whose groups are predicates (the TS API). */
export function stepSettings(forward: Graph, spec: TrainStepSpec): TrainSettings {
  const { groups, ...rest } = spec;
  if (!groups?.length) return rest;
  const byName = new Map(forward.params().map((p) => [String(p.attrs.name), p]));
  return {
    ...rest,
    groups: (trainable) =>
      groups.map(({ match, ...g }) => ({
        ...g,
        params: trainable.filter((n) => match(byName.get(n) as Node)),
      })),
  };
}

/** forward -> the train phase (passes/phases.ts); the graph the trainer runs each step. */
export function buildTrainStep(forward: Graph, spec: TrainStepSpec, opts: PipelineOptions = {}): Graph {
  return runPipeline(forward, phasePasses('train', { train: stepSettings(forward, spec) }), opts).graph;
}

/** Names of the optimizer state params a train-step graph declares (they start at zero). */
export function stateParams(step: Graph): Node[] {
  return step.params().filter((p) => p.attrs.role === 'state');
}
