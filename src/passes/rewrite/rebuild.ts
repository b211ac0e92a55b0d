// Graph copying for passes: walk the source graph in order, let a visitor replace
// nodes, copy the rest through GraphBuilder (every new node is checked; a copy whose inputs
// keep their types keeps its checked attrs and type), and remap
// old ids to new Values. Plus dead-code removal with dense renumbering.
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import { Graph, type GraphOutput, type Node } from '../../ir/graph.ts';
import { sameShape } from '../../ir/shape.ts';

export interface Rebuilder {
  readonly source: Graph;
  readonly b: GraphBuilder;
  /** The new Value standing for an old node id (that node must already have been visited). */
  value(oldId: number): Value;
}

/**
 * Returns the replacement for `n` (its inputs already mapped to `inputs`), or undefined
 * to copy it unchanged. New nodes emitted by the visitor get the builder's current
 * scope, which `rebuild` sets to `n.scope`.
 */
export type Visit = (n: Node, inputs: readonly Value[], r: Rebuilder) => Value | undefined;

export function rebuild(g: Graph, visit: Visit): Graph {
  const b = new GraphBuilder();
  const map = new Map<number, Value>();
  const value = (id: number): Value => {
    const v = map.get(id);
    if (!v) throw new Error(`rebuild: %${id} has not been visited yet (passes must visit in graph order)`);
    return v;
  };
  const r: Rebuilder = { source: g, b, value };
  for (const n of g.nodes) {
    const inputs = n.inputs.map(value);
    const out = b.atScope(n.scope, () => visit(n, inputs, r));
    if (out) map.set(n.id, out);
    else {
      // Unchanged inputs (types): the node as it was, without re-checking it.
      const same = inputs.every((v, k) => sameType(v.type, g.node(n.inputs[k]).type));
      map.set(n.id, same ? b.copySameTypes(n, inputs) : b.copy(n, inputs));
    }
  }
  const outputs: GraphOutput[] = g.outputs.map((o) => ({ name: o.name, id: value(o.id).id }));
  return new Graph(b.built, outputs);
}

function sameType(a: Value['type'], b: Value['type']): boolean {
  return a.dtype === b.dtype && sameShape(a.shape, b.shape);
}

/** Ids of the nodes the outputs depend on; `input` nodes always count as live (they are the interface). */
export function liveIds(g: Graph): Set<number> {
  const live = new Set<number>(g.outputs.map((o) => o.id));
  for (let p = g.nodes.length - 1; p >= 0; p--) {
    const n = g.nodes[p];
    if (n.op === 'input') live.add(n.id);
    if (live.has(n.id)) for (const i of n.inputs) live.add(i);
  }
  return live;
}

/** Renumbers ids densely (0, 1, ...) in graph order; keeps only `keep` when given. */
export function compact(g: Graph, keep?: ReadonlySet<number>): Graph {
  const ids = new Map<number, number>();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (keep && !keep.has(n.id)) continue;
    ids.set(n.id, nodes.length);
    nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => ids.get(i)!) });
  }
  return new Graph(
    nodes,
    g.outputs.map((o) => ({ name: o.name, id: ids.get(o.id)! })),
  );
}

/** Drops nodes no output depends on (graph inputs stay); returns `g` itself when nothing is dead. */
export function removeDead(g: Graph): Graph {
  const live = liveIds(g);
  if (live.size === g.nodes.length) return g;
  return compact(g, live);
}
