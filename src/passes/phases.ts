// Phases: the named pass lists that turn a model graph with a recipe's methods applied
// into what each use runs. `train`: gradients, checkpointing, the optimizer update and
// 4-bit fusion; `eval`: the same graph as model.eval() runs it; `serve`: inference
// (logits, generation, merge). The trainer, `peftc ir` and the inference commands all
// take their lists from here, so there is one definition of each phase.
//
// A phase lists passes by name (resolved in the pass registry when it runs), so a
// phase may name passes registered by layers above this one (`fuse-dequant` comes with
// the qlora method).
import type { Graph } from '../ir/graph.ts';
import type { OptimizerSpec, OptimizerStepOptions, ParamGroupSpec } from './optimizer/pass.ts';
import type { UpdateObserver } from './optimizer/types.ts';
import { PassError } from './pass.ts';
import type { PipelineStep } from './pipeline.ts';

/** What the train phase needs from a recipe. */
export interface TrainSettings {
  readonly optimizer: OptimizerSpec;
  readonly maxGradNorm?: number;
  readonly checkpointing?: boolean;
  /** Micro-steps per optimizer step (gradient_accumulation_steps; default 1). */
  readonly accumulate?: number;
  /**
   * Param groups of the trainable params (params with role 'trainable' in the graph the
   * optimizer pass receives, in graph order); called when that pass runs, since the
   * recipe's methods make those params. Default: one group (the optimizer's lr and decay).
   */
  /** Observers of each param's update in the step (the recipe's methods' MethodTraining.observe). */
  readonly observers?: readonly UpdateObserver[];
  /** Passes that rewrite the training graph only, run before autodiff (methods' `<name>-train` passes). */
  readonly rewrites?: readonly PipelineStep[];
  /** Keep the `grad:<param>` outputs in the step graph (a method's host side reads them). */
  readonly keepGrads?: boolean;
  readonly groups?: (
    trainable: readonly string[],
    shapeOf: (name: string) => readonly number[],
  ) => readonly ParamGroupSpec[];
}

export interface PhaseContext {
  /** Required by the train phase. */
  readonly train?: TrainSettings;
}

export interface PhaseDef {
  /** kebab-case, like pass names. */
  readonly name: string;
  readonly description: string;
  /** The passes after the recipe's methods (or after the adapters are attached, for serve). */
  readonly passes: (ctx: PhaseContext) => PipelineStep[];
}

const phases = new Map<string, PhaseDef>();

export function registerPhase(def: PhaseDef): PhaseDef {
  if (phases.has(def.name)) throw new PassError(`phase '${def.name}' is already registered`);
  phases.set(def.name, def);
  return def;
}

export function phaseNames(): string[] {
  return [...phases.keys()];
}

export function getPhase(name: string): PhaseDef {
  const def = phases.get(name);
  if (!def) throw new PassError(`unknown phase '${name}' (known: ${phaseNames().join(', ')})`);
  return def;
}

/** The passes phase `name` runs after the methods. */
export function phasePasses(name: string, ctx: PhaseContext = {}): PipelineStep[] {
  return getPhase(name).passes(ctx);
}

/** Shape of a param of `g` by name (for param-group rules that look at a param's rank). */
function paramShapes(g: Graph): (name: string) => readonly number[] {
  const shapes = new Map(g.params().map((p) => [String(p.attrs.name), p.type.shape]));
  return (name) => {
    const s = shapes.get(name);
    if (!s) throw new PassError(`no param named '${name}' in the graph`);
    return s;
  };
}

export function trainableNames(g: Graph): string[] {
  return g
    .params()
    .filter((p) => p.attrs.role === 'trainable')
    .map((p) => String(p.attrs.name));
}

// 4-bit weights (qlora, or a 4-bit checkpoint) are dequantized inside their matmuls;
// dropout is the identity outside training. Fusion comes first, as it always has;
// elementwise trees fuse last (after eval-mode removed the dropouts between them).
const inference: PipelineStep[] = [
  { name: 'fuse-dequant' },
  { name: 'eval-mode' },
  { name: 'fuse-rope-layout' },
  { name: 'fuse-elementwise' },
  { name: 'fuse-epilogue' },
];

const builtin: PhaseDef[] = [];

builtin.push({
  name: 'train',
  description:
    'autodiff of the loss, activation checkpointing (when asked), the optimizer update, 4-bit and elementwise fusion',
  passes: ({ train }) => {
    if (!train) throw new PassError("the 'train' phase needs the optimizer settings (PhaseContext.train)");
    const optimizer: PipelineStep = {
      name: 'optimizer',
      resolve: (g): OptimizerStepOptions => ({
        optimizer: train.optimizer,
        groups: train.groups ? [...train.groups(trainableNames(g), paramShapes(g))] : [],
        maxGradNorm: train.maxGradNorm,
        accumulate: train.accumulate,
        ...(train.observers?.length ? { observers: [...train.observers] } : {}),
        ...(train.keepGrads ? { keepGrads: true } : {}),
      }),
    };
    return [
      ...(train.rewrites ?? []),
      { name: 'autodiff', options: { loss: 'loss' } },
      ...(train.checkpointing ? [{ name: 'checkpoint', options: { loss: 'loss' } }] : []),
      optimizer,
      { name: 'fuse-dequant' },
      { name: 'fuse-rope-layout' },
      { name: 'fuse-elementwise' },
      { name: 'fuse-epilogue' },
      { name: 'fuse-dropout' },
      { name: 'fuse-operand-map' },
    ];
  },
});

builtin.push({
  name: 'eval',
  description: "the trainer's evaluation graph: 4-bit fusion, dropout off (model.eval())",
  passes: () => [...inference],
});

builtin.push({
  name: 'serve',
  description: 'inference (logits, generate, merge): 4-bit fusion, dropout off',
  passes: () => [...inference],
});

for (const def of builtin) if (!phases.has(def.name)) registerPhase(def);
