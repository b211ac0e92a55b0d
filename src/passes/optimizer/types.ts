// The optimizer as a graph pass: after autodiff, every trainable param p with an
// output `grad:<p>` gets its update appended to the graph, and the new values go
// out as `assign:<p>` (written back in place by the backend, see backends/backend.ts).
// The learning rate and the step count are runtime inputs (`lr`, `step`), so one
// compiled graph serves every step of a schedule; with gradient accumulation the same
// graph also serves every micro-step (inputs `apply`, `opt_step`; see appendOptimizer).
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { DType } from '../../ir/dtype.ts';
import type { Node } from '../../ir/graph.ts';

/** Hyper-parameters of one param group (LoRA+ puts lora_B in a group with a larger lr). */
export interface ParamGroup {
  readonly name: string;
  /** Multiplies the base `lr` input for params in this group. */
  readonly lrScale: number;
  readonly weightDecay: number;
  /** A rule of its own for this group (e.g. GaLore's projected AdamW); default: the pass's rule. */
  readonly rule?: UpdateRule;
}

export interface UpdateContext {
  readonly b: GraphBuilder;
  readonly param: Node;
  readonly value: Value;
  readonly grad: Value;
  readonly group: ParamGroup;
  /** Scalar f32: the group's learning rate this step. */
  readonly lr: Value;
  /** Scalar f32: the 1-based optimizer step number t (not the micro-step when accumulating). */
  readonly step: Value;
  /**
   * Declares an optimizer state tensor for this param (zeros at start) and returns its value;
   * default shape the param's, default dtype f32 (8-bit optimizers keep u8 codes).
   */
  state(kind: string, shape?: readonly number[], dtype?: DType): Value;
  /** Sets the next value of a state tensor declared with `state`. */
  assignState(kind: string, next: Value): void;
  /**
   * A value computed once per step graph and shared by every param's update (e.g. AdamW's
   * bias corrections 1 - beta^t): `key` must name everything it depends on.
   */
  shared(key: string, make: () => Value): Value;
}

/** One optimizer's update rule: returns the param's next value. */
export type UpdateRule = (ctx: UpdateContext) => Value;

/**
 * Watches one param's update (after its rule ran): `next` is the param's new value and
 * `grad` the gradient the rule used (clipped, and the accumulated mean when accumulating).
 * It may keep states of its own (state / assignState, gated like the optimizer's).
 */
export type UpdateObserver = (ctx: UpdateContext & { readonly next: Value }) => void;

export const GRAD_PREFIX = 'grad:';

export function stateName(kind: string, param: string): string {
  return `optimizer.${kind}.${param}`;
}

/** State kind of the gradient accumulators (`optimizer.grad_acc.<param>`) when accumulating. */
export const ACCUMULATOR_KIND = 'grad_acc';
/** Scalar f32 input of an accumulating step: non-zero on the micro-step that applies the update. */
export const APPLY_INPUT = 'apply';
/** Scalar input of an accumulating step: the 1-based optimizer step t (`step` counts micro-steps). */
export const OPT_STEP_INPUT = 'opt_step';
