// `checkpoint` pass (activation checkpointing / rematerialisation), run after
// autodiff: for each segment (by default each decoder layer, `model.layers.N`),
// the backward no longer reads the segment's inner activations; it reads copies
// recomputed from the segment's inputs just before the backward first needs them.
// Forward activations inside a segment then die during the forward pass, so
// only segment boundaries (the residual stream) stay alive: memory O(layers)
// boundaries + one layer's activations, for one extra forward per segment.
// Dropout recomputes the same mask (same seed and step input), so gradients are
// unchanged.
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { isLeaf } from '../liveness.ts';

export interface CheckpointOptions {
  /** Name of the scalar loss output: forward nodes are exactly its ancestors. */
  readonly loss: string;
  /** Segment key of a forward node, or undefined when it is not checkpointed. Default: decoder layer. */
  readonly segmentOf?: (n: Node) => string | undefined;
}

const LAYER = /^(.*?\.layers\.\d+)(\.|$)/;

export function layerSegment(n: Node): string | undefined {
  return LAYER.exec(n.scope)?.[1];
}

function ancestors(g: Graph, root: number): Set<number> {
  const seen = new Set<number>([root]);
  for (let i = g.position(root); i >= 0; i--) {
    const n = g.nodes[i];
    if (!seen.has(n.id)) continue;
    for (const x of n.inputs) seen.add(x);
  }
  return seen;
}

export function checkpointActivations(g: Graph, opts: CheckpointOptions): Graph {
  const segmentOf = opts.segmentOf ?? layerSegment;
  const forward = ancestors(g, g.output(opts.loss).id);
  const seg = new Map<number, string>();
  for (const n of g.nodes) {
    if (!forward.has(n.id) || isLeaf(n)) continue;
    const s = segmentOf(n);
    if (s !== undefined) seg.set(n.id, s);
  }
  if (seg.size === 0) return g;

  const b = new GraphBuilder();
  const map = new Map<number, Value>();
  // Recomputed copies of segment nodes, made on first demand by the backward. Inputs
  // from outside the node's own segment are boundaries: the original values are used.
  const recomputed = new Map<number, Value>();
  const recompute = (id: number, segment: string): Value => {
    if (seg.get(id) !== segment) return map.get(id)!;
    const done = recomputed.get(id);
    if (done) return done;
    const n = g.node(id);
    const v = b.copy(
      n,
      n.inputs.map((x) => recompute(x, segment)),
    );
    recomputed.set(id, v);
    return v;
  };
  for (const n of g.nodes) {
    const isBackward = !forward.has(n.id);
    const inputs = n.inputs.map((x) => {
      const s = isBackward ? seg.get(x) : undefined;
      return s === undefined ? map.get(x)! : recompute(x, s);
    });
    map.set(n.id, b.copy(n, inputs));
  }
  return b.build(g.outputs.map((o) => [o.name, map.get(o.id)!] as const));
}
