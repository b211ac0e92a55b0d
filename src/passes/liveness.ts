// Liveness of values in graph order: when each value dies, and the peak bytes of
// intermediates alive at once. Backends free (or pool) a buffer after its last
// use; this is the figure that activation checkpointing lowers.
import { byteSize } from '../ir/dtype.ts';
import type { Graph, Node } from '../ir/graph.ts';
import { numel } from '../ir/shape.ts';

/** Leaves whose storage is owned by the caller (weights, feeds), not by the run. */
export function isLeaf(n: Node): boolean {
  return n.op === 'param' || n.op === 'input' || n.op === 'const';
}

export function valueBytes(n: Node): number {
  return byteSize(n.type.dtype, numel(n.type.shape));
}

/** Position of the last node that reads each value (outputs live to the end). */
export function lastUses(g: Graph): Map<number, number> {
  const last = new Map<number, number>();
  g.nodes.forEach((n, i) => {
    for (const id of n.inputs) last.set(id, i);
  });
  for (const o of g.outputs) last.set(o.id, g.nodes.length);
  return last;
}

/** Peak bytes of non-leaf values alive at once, executing nodes in graph order. */
export function peakLiveBytes(g: Graph): number {
  const last = lastUses(g);
  const dying = new Map<number, number[]>();
  for (const [id, at] of last) {
    const list = dying.get(at);
    if (list) list.push(id);
    else dying.set(at, [id]);
  }
  let live = 0;
  let peak = 0;
  g.nodes.forEach((n, i) => {
    if (!isLeaf(n)) live += valueBytes(n);
    peak = Math.max(peak, live);
    for (const id of dying.get(i) ?? []) {
      const d = g.node(id);
      if (!isLeaf(d)) live -= valueBytes(d);
    }
    // A value nobody reads dies at once.
    if (!last.has(n.id) && !isLeaf(n)) live -= valueBytes(n);
  });
  return peak;
}
