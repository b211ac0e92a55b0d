// fuse-rope-layout (issue 21): attention wants q and k as [batch, heads, seq, head_dim],
// the projections make [batch, seq, heads, head_dim], so the model transposes them before
// rope, and the backward transposes rope's gradient back. A transpose of axes 1 and 2 whose
// only reader is a rope becomes the rope's `layout_in: 'bshd'`, and one that is the only
// reader of a rope its `layout_out: 'bshd'`: the rope reads (or writes) the other layout
// itself, and the transpose, a full copy and a dispatch, is gone. The values are the same
// bit for bit (a transpose only moves them).
import type { Graph, Node } from '../../ir/graph.ts';
import type { PassDef } from '../pass.ts';
import { rewrite } from '../rewrite/engine.ts';

/** A transpose of axes 1 and 2 of a rank-4 tensor (bhsd <-> bshd). */
function swapsHeadsAndSeq(n: Node): boolean {
  if (n.op !== 'transpose' || n.type.shape.length !== 4) return false;
  const axes = [Number(n.attrs.dim0), Number(n.attrs.dim1)].map((a) => (a < 0 ? a + 4 : a)).sort();
  return axes[0] === 1 && axes[1] === 2;
}

/** The graph with transposes next to ropes folded into the ropes' layouts (see the header). */
export function fuseRopeLayout(g: Graph): Graph {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const onlyReader = (v: Node, reader: Node) =>
    !outputs.has(v.id) && (users.get(v.id) ?? []).every((u) => u === reader.id);
  // Rope -> the transpose it reads through (folded in); transpose -> the rope it takes over.
  const foldIn = new Map<number, Node>();
  const foldOut = new Map<number, Node>();
  for (const n of g.nodes) {
    if (n.op !== 'rope') continue;
    const src = g.node(n.inputs[0]);
    if (n.attrs.layout_in !== 'bshd' && swapsHeadsAndSeq(src) && onlyReader(src, n)) foldIn.set(n.id, src);
    const readers = users.get(n.id) ?? [];
    const dst = readers.length === 1 ? g.node(readers[0]) : undefined;
    if (dst && n.attrs.layout_out !== 'bshd' && swapsHeadsAndSeq(dst) && onlyReader(n, dst))
      foldOut.set(dst.id, n);
  }
  if (foldIn.size === 0 && foldOut.size === 0) return g;
  // A rope its transpose takes over is emitted there, not also at its own place.
  const takenOver = new Set([...foldOut.values()].map((r) => r.id));
  return rewrite(
    g,
    [
      [
        { where: (n) => (foldIn.has(n.id) && !takenOver.has(n.id)) || foldOut.has(n.id) },
        // At a folded-out transpose: the rope that it reads, now writing bshd (the rope
        // itself, read only by the transpose, is then dead).
        (m, b) => {
          const rope = foldOut.get(m.node.id) ?? m.node;
          const through = foldIn.get(rope.id);
          const x = m.value(through ? g.node(through.inputs[0]) : g.node(rope.inputs[0]));
          return b.emit(
            'rope',
            [x, m.value(g.node(rope.inputs[1]))],
            {
              ...rope.attrs,
              ...(through ? { layout_in: 'bshd' } : {}),
              ...(foldOut.has(m.node.id) ? { layout_out: 'bshd' } : {}),
            },
            rope.scope,
          );
        },
        'fuse-rope-layout',
      ],
    ],
    { once: true },
  ).graph;
}

export const fuseRopeLayoutPass: PassDef = {
  name: 'fuse-rope-layout',
  description:
    "fold the transposes next to rope (attention's head layout) into rope's layout_in / layout_out",
  run: (g) => fuseRopeLayout(g),
};
