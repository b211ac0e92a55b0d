// Random, numerically tame values for a graph's inputs and params: floats uniform
// in [-1, 1], integer inputs inside the index range their users accept. Seeded per
// tensor name, so a value does not change when other inputs are added.

import { isFloat } from '../../src/ir/dtype.ts';
import type { Graph, Node } from '../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { Rng } from '../../src/util/rng.ts';

/** Index bound used for an integer input nobody indexes with (e.g. rope positions). */
const DEFAULT_INT_BOUND = 8;

function randomTensor(n: Node, rng: Rng, intBound: number): Tensor {
  const t = tensor(n.type.dtype, n.type.shape);
  const r = rng.fork(String(n.attrs.name));
  const d = t.data;
  if (isFloat(n.type.dtype)) for (let i = 0; i < d.length; i++) d[i] = r.uniform(-1, 1);
  else for (let i = 0; i < d.length; i++) d[i] = Math.floor(r.next() * intBound);
  return t;
}

/**
 * The largest valid index (exclusive) for integer node `id`, from the ops that read it
 * directly: embedding vocab, gather axis size, one_hot depth, cross_entropy classes,
 * scatter_add size. Indices that flow through other ops first are not tracked.
 */
export function indexBound(g: Graph, id: number): number {
  let bound = Number.POSITIVE_INFINITY;
  for (const n of g.nodes) {
    const slot = n.inputs.indexOf(id);
    if (slot < 0) continue;
    const first = g.node(n.inputs[0]).type.shape;
    const rank = first.length;
    if (n.op === 'embedding' && slot === 1) bound = Math.min(bound, first[0]);
    else if (n.op === 'gather' && slot === 1) {
      const axis = Number(n.attrs.axis);
      bound = Math.min(bound, first[axis < 0 ? axis + rank : axis]);
    } else if (n.op === 'one_hot') bound = Math.min(bound, Number(n.attrs.depth));
    else if (n.op === 'cross_entropy' && slot === 1) bound = Math.min(bound, first[1]);
    else if (n.op === 'scatter_add' && slot === 1) bound = Math.min(bound, Number(n.attrs.size));
  }
  return Number.isFinite(bound) ? Math.max(1, bound) : DEFAULT_INT_BOUND;
}

/** A value for every `input` node of `g`, by input name. */
export function randomFeeds(g: Graph, seed = 0): Record<string, Tensor> {
  const rng = new Rng(seed);
  const feeds: Record<string, Tensor> = {};
  for (const n of g.inputs()) feeds[String(n.attrs.name)] = randomTensor(n, rng, indexBound(g, n.id));
  return feeds;
}

/** A store with every param of `g` (whatever its init spec), uniform in [-1, 1]. */
export function randomWeights(g: Graph, seed = 0): MapWeightStore {
  const rng = new Rng(seed ^ 0x5bd1e995);
  const store = new MapWeightStore();
  for (const n of g.params()) store.set(String(n.attrs.name), randomTensor(n, rng, DEFAULT_INT_BOUND));
  return store;
}
