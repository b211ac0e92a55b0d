// `optimizer` pass: appends global-norm clipping and per-param updates to a graph
// that carries `grad:<param>` outputs (from autodiff).

import { ASSIGN_PREFIX } from '../../backends/backend.ts';
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import type { Graph, GraphOutput, Node } from '../../ir/graph.ts';
import { GRAD_PREFIX, type ParamGroup, stateName, type UpdateRule } from './types.ts';

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
}

export function appendOptimizer(g: Graph, opts: OptimizerPassOptions): Graph {
  const grads = g.outputs.filter((o) => o.name.startsWith(GRAD_PREFIX));
  if (grads.length === 0)
    throw new Error('optimizer pass: the graph has no grad:<param> outputs; run autodiff first');
  const b = GraphBuilder.from(g);
  const params = new Map(g.params().map((p) => [String(p.attrs.name), p]));
  const lr = b.input('lr', 'f32', []);
  // The 1-based step count: an existing scalar `step` input (the training graph's, which
  // also drives dropout masks) or a new f32 one.
  const existing = g.inputs().find((n) => n.attrs.name === 'step');
  if (existing && existing.type.shape.length !== 0)
    throw new Error("optimizer pass: input 'step' must be a scalar");
  const step = !existing
    ? b.input('step', 'f32', [])
    : existing.type.dtype === 'f32'
      ? b.value(existing.id)
      : b.cast(b.value(existing.id), 'f32');
  const outputs: GraphOutput[] = g.outputs.filter((o) => opts.keepGrads || !o.name.startsWith(GRAD_PREFIX));
  const out = (name: string, v: Value) => outputs.push({ name, id: v.id });

  let gradValues = grads.map((o) => b.value(o.id));
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
      const glr = group.lrScale === 1 ? lr : b.scale(lr, group.lrScale);
      const states = new Map<string, Value>();
      const value = b.value(param.id);
      return rule({
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
        assignState(kind, nextState) {
          out(`${ASSIGN_PREFIX}${stateName(kind, name)}`, nextState);
        },
      });
    });
    out(`${ASSIGN_PREFIX}${name}`, next);
  });
  return b.build(outputs.map((o) => [o.name, b.value(o.id)] as const));
}
