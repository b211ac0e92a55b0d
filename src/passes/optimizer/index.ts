// `optimizer` pass: appends global-norm clipping and per-param updates to a graph
// that carries `grad:<param>` outputs (from autodiff), optionally accumulating the
// gradients of several micro-steps in device-resident state before each update.

import { ASSIGN_PREFIX } from '../../backends/backend.ts';
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import type { Graph, GraphOutput, Node } from '../../ir/graph.ts';
import { placeUpdatesEarly } from './per-layer.ts';
import {
  ACCUMULATOR_KIND,
  APPLY_INPUT,
  GRAD_PREFIX,
  OPT_STEP_INPUT,
  type ParamGroup,
  stateName,
  type UpdateContext,
  type UpdateObserver,
  type UpdateRule,
} from './types.ts';

export * from './adamw8bit.ts';
export * from './rules.ts';
export * from './types.ts';

export interface OptimizerPassOptions {
  /** The update for params whose group names no rule of its own. */
  readonly rule: UpdateRule;
  /** Group of each trainable param; first matching group wins, else `defaultGroup`. */
  readonly groups?: readonly (ParamGroup & { readonly match: (param: Node) => boolean })[];
  readonly defaultGroup: ParamGroup;
  /** Clip the global L2 norm of all gradients to this (torch.nn.utils.clip_grad_norm_). */
  readonly maxGradNorm?: number;
  /** Keep the `grad:` outputs (default false: gradients die inside the step). */
  readonly keepGrads?: boolean;
  /**
   * Gradient accumulation over this many micro-steps (default 1: no accumulator, every run
   * updates). With k > 1 each param gets a zero-initialized state `optimizer.grad_acc.<p>` and
   * the graph two scalar inputs: `apply` (non-zero on the last micro-step of an optimizer
   * step) and `opt_step` (the 1-based optimizer step t, which the update rules read instead of
   * `step`; `step` stays the micro-step counter that drives dropout). The update sees the
   * mean gradient acc + g/k (Hugging Face scales each micro-batch loss by 1/k), clipped as a
   * whole; params and states change only where `apply` is set, and the accumulator returns
   * to zero there.
   */
  readonly accumulate?: number;
  /** Called for every param after its update (methods that watch updates, e.g. AdaLoRA's importance EMAs). */
  readonly observers?: readonly UpdateObserver[];
  /**
   * Each update placed right after its gradient is final (per-layer.ts). Refused with
   * clipping or accumulation, whose updates wait for every gradient anyway.
   */
  readonly perLayer?: boolean;
}

export function appendOptimizer(g: Graph, opts: OptimizerPassOptions): Graph {
  const grads = g.outputs.filter((o) => o.name.startsWith(GRAD_PREFIX));
  if (grads.length === 0)
    throw new Error('optimizer pass: the graph has no grad:<param> outputs; run autodiff first');
  if (opts.perLayer && (opts.maxGradNorm !== undefined || (opts.accumulate ?? 1) > 1))
    throw new Error(
      'optimizer pass: per_layer updates cannot be combined with gradient clipping or accumulation (every update would wait for every gradient)',
    );
  const b = GraphBuilder.from(g);
  const params = new Map(g.params().map((p) => [String(p.attrs.name), p]));
  const lr = b.input('lr', 'f32', []);
  const k = opts.accumulate ?? 1;
  if (!Number.isInteger(k) || k < 1)
    throw new Error(`optimizer pass: accumulate must be a positive integer, got ${k}`);
  for (const name of k > 1 ? [APPLY_INPUT, OPT_STEP_INPUT] : []) {
    if (g.inputs().some((n) => n.attrs.name === name))
      throw new Error(`optimizer pass: the graph already has an input '${name}', which accumulation adds`);
  }
  // The 1-based step count: an existing scalar `step` input (the training graph's, which
  // also drives dropout masks) or a new f32 one. Accumulating, t comes from `opt_step` (of
  // the same dtype) and `step` is left to count micro-steps.
  const existing = g.inputs().find((n) => n.attrs.name === 'step');
  if (existing && existing.type.shape.length !== 0)
    throw new Error("optimizer pass: input 'step' must be a scalar");
  const stepDtype = existing?.type.dtype ?? 'f32';
  const stepIn =
    k > 1
      ? b.input(OPT_STEP_INPUT, stepDtype, [])
      : existing
        ? b.value(existing.id)
        : b.input('step', 'f32', []);
  const step = stepDtype === 'f32' ? stepIn : b.cast(stepIn, 'f32');
  const apply = k > 1 ? b.input(APPLY_INPUT, 'f32', []) : undefined;
  // Accumulating, a new value takes effect only on the micro-step that applies the update.
  const gated = (next: Value, old: Value) => (apply ? b.where(apply, next, old) : next);
  const outputs: GraphOutput[] = g.outputs.filter((o) => opts.keepGrads || !o.name.startsWith(GRAD_PREFIX));
  const out = (name: string, v: Value) => outputs.push({ name, id: v.id });

  let gradValues = grads.map((o) => b.value(o.id));
  if (apply) {
    gradValues = gradValues.map((v, i) => {
      const name = grads[i].name.slice(GRAD_PREFIX.length);
      return b.withScope(`optimizer.${name}`, () => {
        const sn = stateName(ACCUMULATOR_KIND, name);
        const acc = b.param(sn, v.type.dtype, v.type.shape, 'state', { kind: 'zeros' });
        const mean = b.add(acc, b.scale(v, 1 / k));
        out(`${ASSIGN_PREFIX}${sn}`, b.where(apply, b.const(0, [], v.type.dtype), mean));
        return mean;
      });
    });
  }
  if (opts.maxGradNorm !== undefined) {
    const total = b.withScope('optimizer.clip', () => {
      const sq = gradValues.map((v) =>
        b.sum(
          b.mul(v, v),
          v.type.shape.map((_, i) => i),
        ),
      );
      const norm = b.unary(
        'sqrt',
        sq.reduce((a, c) => b.add(a, c)),
      );
      // clip_grad_norm_: coef = min(max_norm / (norm + 1e-6), 1)
      const coef = b.minimum(b.div(b.const(opts.maxGradNorm!), b.add(norm, b.const(1e-6))), b.const(1));
      gradValues = gradValues.map((v) => b.mul(v, coef));
      return norm;
    });
    out('grad_norm', total);
  }

  // Scalars every update shares (bias corrections, a group's lr), built once: each is a
  // dispatch per step on a GPU, and there are several per param otherwise.
  const sharedValues = new Map<string, Value>();
  const shared = (key: string, make: () => Value): Value => {
    let v = sharedValues.get(key);
    if (!v) {
      v = b.atScope('optimizer', make);
      sharedValues.set(key, v);
    }
    return v;
  };

  grads.forEach((o, i) => {
    const name = o.name.slice(GRAD_PREFIX.length);
    const param = params.get(name);
    if (!param) throw new Error(`optimizer pass: output '${o.name}' names no param of the graph`);
    if (param.attrs.role !== 'trainable')
      throw new Error(
        `optimizer pass: '${name}' has a gradient but is ${String(param.attrs.role)}, not trainable`,
      );
    const group = opts.groups?.find((gr) => gr.match(param)) ?? opts.defaultGroup;
    const rule = group.rule ?? opts.rule;
    const next = b.withScope(`optimizer.${name}`, () => {
      const glr = group.lrScale === 1 ? lr : shared(`lr*${group.lrScale}`, () => b.scale(lr, group.lrScale));
      const states = new Map<string, Value>();
      const value = b.value(param.id);
      const ctx: UpdateContext = {
        b,
        param,
        value,
        grad: gradValues[i],
        group,
        lr: glr,
        step,
        state(kind, shape = param.type.shape, dtype = 'f32') {
          const sn = stateName(kind, name);
          let v = states.get(sn);
          if (!v) {
            v = b.param(sn, dtype, shape, 'state', { kind: 'zeros' });
            states.set(sn, v);
          }
          return v;
        },
        shared,
        assignState(kind, nextState) {
          const sn = stateName(kind, name);
          const old = states.get(sn);
          if (apply && !old)
            throw new Error(`optimizer pass: '${sn}' is assigned but was never declared with state()`);
          out(`${ASSIGN_PREFIX}${sn}`, old ? gated(nextState, old) : nextState);
        },
      };
      const next = rule(ctx);
      for (const observe of opts.observers ?? []) observe({ ...ctx, next });
      return gated(next, value);
    });
    out(`${ASSIGN_PREFIX}${name}`, next);
  });
  const built = b.build(outputs.map((o) => [o.name, b.value(o.id)] as const));
  if (!opts.perLayer) return built;
  const before = new Set(g.nodes.map((n) => n.id));
  return placeUpdatesEarly(built, (n) => !before.has(n.id));
}
