// The layer-wise update (GaLore's `*_per_layer` optimizers: a post-accumulate-grad hook per
// param runs its optimizer step and frees its gradient). In a compiled step the same thing
// is an ordering: the nodes the optimizer pass added are moved to the earliest point where
// their inputs exist, so each param's update runs right after its gradient is final and the
// gradient's last reader comes early; liveness then frees the gradient buffer there instead
// of holding every gradient until the last backward node. The WebGPU backend completes it by
// writing each new value into its param's buffer as soon as the old value's last reader has
// run (Backend compile option `inPlaceAssigns`), so new values do not pile up either.
// The order changes nothing in what is computed (same nodes, a topological order).
import type { Graph, Node } from '../../ir/graph.ts';

/**
 * The graph with the nodes `added` names (the optimizer's) placed as early as their inputs
 * allow; the others keep their order. An added node without inputs (its lr input, a state
 * param, a constant) is placed just before its first added reader.
 */
export function placeUpdatesEarly(g: Graph, added: (n: Node) => boolean): Graph {
  const users = g.users();
  const isSource = (n: Node) => n.inputs.length === 0;
  // Unplaced inputs of each added node that are not added sources (those come along with it).
  const waiting = new Map<number, number>();
  const ready: Node[] = [];
  for (const n of g.nodes) {
    if (!added(n) || isSource(n)) continue;
    const count = new Set(n.inputs.filter((i) => !(added(g.node(i)) && isSource(g.node(i))))).size;
    waiting.set(n.id, count);
    if (count === 0) ready.push(n);
  }
  const order: Node[] = [];
  const placed = new Set<number>();
  const place = (n: Node) => {
    if (placed.has(n.id)) return;
    for (const i of n.inputs) {
      const src = g.node(i);
      if (added(src) && isSource(src)) place(src);
    }
    order.push(n);
    placed.add(n.id);
    // An added source is not counted in its readers' waits (it comes along with them).
    if (added(n) && isSource(n)) return;
    // Each reader once (users() lists a reader once per input slot that reads n).
    for (const u of new Set(users.get(n.id) ?? [])) {
      const left = waiting.get(u);
      if (left === undefined) continue;
      waiting.set(u, left - 1);
      if (left === 1) ready.push(g.node(u));
    }
  };
  const drain = () => {
    while (ready.length) place(ready.shift() as Node);
  };
  drain();
  for (const n of g.nodes) {
    if (added(n)) continue;
    place(n);
    drain();
  }
  // Added sources nobody reads (none in practice) keep a place at the end.
  for (const n of g.nodes) if (!placed.has(n.id)) place(n);
  return g.with(order);
}
