// Reverse-mode autodiff over the IR. Returns a new graph: the forward nodes as they
// were (same ids), then backward nodes, with the original outputs plus
// `grad:<param name>` per differentiated param.
//
// Only values on a path from a wanted param to the loss get a cotangent, so a frozen
// weight (and everything computed only from frozen weights and inputs) gets no
// backward node at all: that is where LoRA saves memory.
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import { isFloat } from '../../ir/dtype.ts';
import { type Graph, type Node, paramName, paramRole } from '../../ir/graph.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import { verify } from '../../ir/verify.ts';
import { passesTo, VjpRegistry, type VjpRule } from './rule.ts';
import { CORE_VJPS } from './rules/index.ts';

export const GRAD_PREFIX = 'grad:';

export class AutodiffError extends Error {
  override name = 'AutodiffError';
}

export interface AutodiffOptions {
  /** Output name of the scalar to differentiate. */
  readonly loss: string;
  /** Which params get gradients (default: role === 'trainable'). */
  readonly wrt?: (param: Node) => boolean;
  /** Param names whose gradient is wanted although `wrt` says no (e.g. GoRA's calibration of frozen weights). */
  readonly extraWrt?: readonly string[];
}

const registry = new VjpRegistry(CORE_VJPS);

/** Adds the VJP of an op registered outside the core (call it next to `registerOp`). */
export function registerVjp(op: string, rule: VjpRule): void {
  registry.register(op, rule);
}

export function hasVjp(op: string): boolean {
  return registry.has(op);
}

export function vjpRule(op: string): VjpRule {
  return registry.get(op, 'vjpRule');
}

function where(n: Node): string {
  return `%${n.id} ${n.op}${n.scope ? ` in ${n.scope}` : ''}`;
}

/** Params to differentiate, checked: they exist and are float. */
function wantedParams(g: Graph, opts: AutodiffOptions): Node[] {
  const wrt = opts.wrt ?? ((p: Node) => paramRole(p) === 'trainable');
  const extra = new Set(opts.extraWrt ?? []);
  const params = g.params();
  for (const name of extra) {
    if (!params.some((p) => paramName(p) === name)) {
      throw new AutodiffError(
        `autodiff: extraWrt names param '${name}', which the graph does not have (params: ${params.map(paramName).join(', ') || 'none'})`,
      );
    }
  }
  const wanted = params.filter((p) => wrt(p) || extra.has(paramName(p)));
  for (const p of wanted) {
    if (!isFloat(p.type.dtype)) {
      throw new AutodiffError(
        `autodiff: param '${paramName(p)}' is ${p.type.dtype}; only float params can have gradients (mark it frozen)`,
      );
    }
  }
  return wanted;
}

/** Ids of the nodes that depend on a wanted param through differentiable inputs and lead to the loss. */
function activeNodes(g: Graph, wanted: readonly Node[], lossId: number): Set<number> {
  const flows = new Set(wanted.map((p) => p.id));
  for (const n of g.nodes) {
    if (flows.has(n.id) || !isFloat(n.type.dtype) || !n.inputs.some((id) => flows.has(id))) continue;
    // Only ops a gradient could reach need a rule: ops used in frozen parts alone never do.
    const rule = registry.get(n.op, `autodiff: ${where(n)}`);
    if (n.inputs.some((id, i) => flows.has(id) && passesTo(rule, i))) flows.add(n.id);
  }
  const reaches = new Set<number>([lossId]);
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (reaches.has(n.id)) for (const id of n.inputs) reaches.add(id);
  }
  return new Set([...flows].filter((id) => reaches.has(id)));
}

export function autodiff(g: Graph, opts: AutodiffOptions): Graph {
  const loss = g.output(opts.loss);
  if (loss.type.shape.length !== 0 || !isFloat(loss.type.dtype)) {
    throw new AutodiffError(
      `autodiff: loss output '${opts.loss}' must be a float scalar, got ${loss.type.dtype}${formatShape(loss.type.shape)} (${where(loss)}); reduce it with sum or mean first`,
    );
  }
  const wanted = wantedParams(g, opts);
  const taken = new Set(g.outputs.map((o) => o.name));
  for (const p of wanted) {
    if (taken.has(GRAD_PREFIX + paramName(p))) {
      throw new AutodiffError(`autodiff: the graph already has an output '${GRAD_PREFIX}${paramName(p)}'`);
    }
  }
  const active = activeNodes(g, wanted, loss.id);
  const b = GraphBuilder.from(g);
  const cot = new Map<number, Value>();

  const accumulate = (id: number, grad: Value, scope: string): void => {
    const prev = cot.get(id);
    cot.set(id, prev ? b.atScope(scope, () => b.add(prev, grad)) : grad);
  };

  if (active.has(loss.id))
    cot.set(
      loss.id,
      b.atScope(loss.scope, () => b.const(1, [], loss.type.dtype)),
    );
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    const g_n = cot.get(n.id);
    if (!g_n || !active.has(n.id)) continue;
    const rule = registry.get(n.op, `autodiff: ${where(n)}`);
    if (rule.kind !== 'vjp') continue;
    const needs = n.inputs.map((id, k) => active.has(id) && passesTo(rule, k));
    if (!needs.some(Boolean)) continue;
    const inputs = n.inputs.map((id) => b.value(id));
    const grads = b.atScope(n.scope, () =>
      rule.vjp({ b, node: n, inputs, out: b.value(n.id), cot: g_n, needs }),
    );
    needs.forEach((need, k) => {
      if (!need) return;
      const gk = grads[k];
      const input = g.node(n.inputs[k]);
      if (!gk) throw new AutodiffError(`autodiff: the VJP of ${where(n)} gave no gradient for input ${k}`);
      if (gk.type.dtype !== input.type.dtype || !sameShape(gk.type.shape, input.type.shape)) {
        throw new AutodiffError(
          `autodiff: the VJP of ${where(n)} gave input ${k} a gradient ${gk.type.dtype}${formatShape(gk.type.shape)}, but the input is ${input.type.dtype}${formatShape(input.type.shape)}`,
        );
      }
      accumulate(n.inputs[k], gk, n.scope);
    });
  }

  // A wanted param that does not reach the loss gets a zero gradient (the optimizer still updates it).
  const outputs: [string, Value][] = g.outputs.map((o) => [o.name, b.value(o.id)]);
  for (const p of wanted) {
    const grad = cot.get(p.id) ?? b.atScope(p.scope, () => b.const(0, [...p.type.shape], p.type.dtype));
    outputs.push([GRAD_PREFIX + paramName(p), grad]);
  }
  return verify(b.build(outputs, { verify: false }), 'autodiff');
}
