// fuse-elementwise: every maximal tree of f32 elementwise nodes of one output shape whose
// inner nodes feed only that tree (and are no graph output) becomes one fused_map node:
// one dispatch instead of one per node, and no buffer for the inner values. A cheap inner
// value that several such trees read (the clipped gradient that AdamW's two moment
// updates share) is recomputed in each rather than kept as a kernel of its own. Runs last
// (after autodiff and the optimizer: fused_map has no VJP). Trees are grown from their
// root (the last node) towards the inputs; a tree keeps at most MAX_INPUTS external inputs
// so its kernel stays within WebGPU's default 8 storage buffers per stage.

import type { GraphBuilder } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { stepAttrs, stepOf } from '../../ir/ops/math.ts';
import type { PassDef } from '../pass.ts';
import { type Match, rewrite } from '../rewrite/engine.ts';
import { FUSABLE, type FusedMapAttrs, type FusedReduceAttrs, type FusedStep } from './fused-map.ts';
import './kernels.ts';
import { unfuseEpilogue } from './matmul-map.ts';

export const MAX_INPUTS = 6;
/** A shared elementwise value is recomputed by at most this many consumer trees. */
export const MAX_DUPLICATES = 3;

function sameShape(a: Node, b: Node): boolean {
  const x = a.type.shape;
  const y = b.type.shape;
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

interface Group {
  readonly members: readonly Node[];
  readonly externals: readonly number[];
}

function groups(g: Graph): Map<number, Group> {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const fusable = (n: Node) =>
    FUSABLE.has(n.op) && n.type.dtype === 'f32' && n.inputs.every((i) => g.node(i).type.dtype === 'f32');
  const duplicable = (p: Node, pUsers: readonly number[]) =>
    p.inputs.length <= 2 &&
    pUsers.length <= MAX_DUPLICATES &&
    pUsers.every((u) => {
      const n = g.node(u);
      return fusable(n) && sameShape(n, p);
    });
  // Nodes in a tree that owns them (exclusive members): no other tree may take them.
  const rootOf = new Map<number, number>();
  const out = new Map<number, Group>();
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const root = g.nodes[k];
    if (!fusable(root) || rootOf.has(root.id)) continue;
    rootOf.set(root.id, root.id);
    const members = new Set<number>([root.id]);
    const externals = new Set<number>(root.inputs);
    const stack = [root];
    while (stack.length) {
      const m = stack.pop() as Node;
      for (const i of new Set(m.inputs)) {
        const p = g.node(i);
        if (members.has(p.id) || rootOf.has(p.id) || outputs.has(p.id)) continue;
        if (!fusable(p) || !sameShape(p, root)) continue;
        const pUsers = users.get(p.id) ?? [];
        // Absorbed alone when the tree holds all its users; else recomputed in each consumer
        // (duplicated) when it is cheap to: few inputs, and every user is an elementwise op
        // of its shape that can take it in (so its own kernel and buffer usually disappear).
        const exclusive = pUsers.every((u) => members.has(u));
        if (!exclusive && !duplicable(p, pUsers)) continue;
        // Absorbing p trades it for its own inputs.
        const next = new Set(externals);
        next.delete(p.id);
        for (const j of p.inputs) if (!members.has(j)) next.add(j);
        if (next.size > MAX_INPUTS) continue;
        members.add(p.id);
        if (exclusive) rootOf.set(p.id, root.id);
        externals.clear();
        for (const j of next) externals.add(j);
        stack.push(p);
      }
    }
    if (members.size < 2) continue;
    const ordered = [...members].sort((a, b) => g.position(a) - g.position(b)).map((id) => g.node(id));
    out.set(root.id, { members: ordered, externals: [...externals].filter((e) => !members.has(e)) });
  }
  return out;
}

/** The graph with its elementwise trees fused, then reductions fused with their producers (see the header). */
export function fuseElementwise(g: Graph): Graph {
  return fuseReductions(fuseTrees(g));
}

const REDUCTIONS = new Set(['sum', 'mean', 'max']);

/**
 * A reduction of an f32 value that an elementwise node (a fused_map, or one fusable op)
 * makes for it alone becomes one fused_reduce: the program runs as the reduction loads.
 */
function fuseReductions(g: Graph): Graph {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const producerOf = (r: Node): Node | undefined => {
    if (!REDUCTIONS.has(r.op) || r.type.dtype !== 'f32') return undefined;
    const x = g.node(r.inputs[0]);
    if (outputs.has(x.id) || (users.get(x.id) ?? []).length !== 1) return undefined;
    if (x.op === 'fused_map') return x;
    const single =
      FUSABLE.has(x.op) && x.type.dtype === 'f32' && x.inputs.every((i) => g.node(i).type.dtype === 'f32');
    return single ? x : undefined;
  };
  // Reduction id -> the elementwise node it absorbs, decided once.
  const producer = new Map<number, Node>();
  for (const n of g.nodes) {
    const x = producerOf(n);
    if (x) producer.set(n.id, x);
  }
  if (producer.size === 0) return g;
  return rewrite(
    g,
    [
      [
        { where: (n) => producer.has(n.id) },
        (m, b) => {
          const x = producer.get(m.node.id) as Node;
          const steps: FusedStep[] =
            x.op === 'fused_map'
              ? (x.attrs as unknown as FusedMapAttrs).steps
              : [
                  stepOf(
                    x.op,
                    x.inputs.map((_, k) => k),
                    x.attrs,
                  ),
                ];
          const { axes, keepdims } = m.node.attrs as { axes: number[]; keepdims?: boolean };
          return b.emit(
            'fused_reduce',
            x.inputs.map((id) => m.value(g.node(id))),
            { steps, shape: [...x.type.shape], reduce: m.node.op, axes, keepdims: !!keepdims } as never,
            m.node.scope,
          );
        },
        'fuse-reduction',
      ],
    ],
    { once: true },
  ).graph;
}

function fuseTrees(g: Graph): Graph {
  const found = groups(g);
  if (found.size === 0) return g;
  return rewrite(
    g,
    [
      [
        { where: (n) => found.has(n.id) },
        (m, b) => {
          const { members, externals } = found.get(m.node.id) as Group;
          const slot = new Map<number, number>();
          externals.forEach((id, i) => {
            slot.set(id, i);
          });
          members.forEach((n, k) => {
            slot.set(n.id, externals.length + k);
          });
          const steps: FusedStep[] = members.map((n) =>
            stepOf(
              n.op,
              n.inputs.map((i) => slot.get(i) as number),
              n.attrs,
            ),
          );
          return b.emit(
            'fused_map',
            externals.map((id) => m.value(g.node(id))),
            { steps, shape: [...m.node.type.shape] } as never,
            m.node.scope,
          );
        },
        'fuse-elementwise',
      ],
    ],
    { once: true },
  ).graph;
}

export const fuseElementwisePass: PassDef = {
  name: 'fuse-elementwise',
  description: 'fuse trees of f32 elementwise ops of one shape into one fused_map kernel each',
  run: (g) => fuseElementwise(g),
};

/**
 * The inverse: every matmul_map split back (unfuseEpilogue), then every fused_map expanded
 * back into its ops (in the fused node's scope). For reading a fused graph op by op and
 * for differentiating one (neither has a VJP).
 */
export function unfuseElementwise(fused: Graph): Graph {
  const g = unfuseEpilogue(fused);
  if (!g.nodes.some((n) => n.op === 'fused_map' || n.op === 'fused_reduce')) return g;
  const expand = (m: Match, b: GraphBuilder) => {
    const { steps, shape } = m.node.attrs as unknown as FusedMapAttrs;
    const values = [...m.inputs];
    for (const s of steps) {
      values.push(
        b.emit(
          s.op,
          s.args.map((i) => values[i]),
          stepAttrs(s),
          m.node.scope,
        ),
      );
    }
    const out = values[values.length - 1];
    if (out.type.shape.join() !== shape.join()) throw new Error('unfuse: shape mismatch');
    return out;
  };
  return rewrite(
    g,
    [
      [{ op: 'fused_map' }, expand, 'unfuse-elementwise'],
      [
        { op: 'fused_reduce' },
        (m, b) => {
          const { reduce, axes, keepdims } = m.node.attrs as unknown as FusedReduceAttrs;
          return b.emit(reduce, [expand(m, b)], { axes, keepdims }, m.node.scope);
        },
        'unfuse-reduction',
      ],
    ],
    { once: true },
  ).graph;
}
