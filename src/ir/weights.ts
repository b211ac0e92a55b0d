// Weight stores: parameters are bound by name at run time, so graphs stay small and
// a 7B graph can be built and planned without reading a byte of weights.
import { Rng } from '../util/rng.ts';
import type { Graph, Node } from './graph.ts';
import type { InitSpec } from './ops/index.ts';
import { formatShape, numel, sameShape } from './shape.ts';
import { type Tensor, tensor } from './tensor.ts';

export interface WeightStore {
  get(name: string): Tensor | undefined;
  has(name: string): boolean;
  names(): Iterable<string>;
}

export class MapWeightStore implements WeightStore {
  readonly map: Map<string, Tensor>;
  constructor(entries?: Iterable<readonly [string, Tensor]> | Map<string, Tensor>) {
    this.map = new Map(entries ?? []);
  }
  get(name: string): Tensor | undefined {
    return this.map.get(name);
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  names(): Iterable<string> {
    return this.map.keys();
  }
  set(name: string, t: Tensor): this {
    this.map.set(name, t);
    return this;
  }
}

/** Several stores seen as one; earlier stores win (e.g. an adapter over a base model). */
export class LayeredWeightStore implements WeightStore {
  constructor(readonly layers: readonly WeightStore[]) {}
  get(name: string): Tensor | undefined {
    for (const l of this.layers) {
      const t = l.get(name);
      if (t) return t;
    }
    return undefined;
  }
  has(name: string): boolean {
    return this.layers.some((l) => l.has(name));
  }
  *names(): Iterable<string> {
    const seen = new Set<string>();
    for (const l of this.layers)
      for (const n of l.names()) {
        if (!seen.has(n)) {
          seen.add(n);
          yield n;
        }
      }
  }
}

/** Creates a tensor for a param node from its init spec (seeded per param name). */
export function initTensor(node: Node, rng: Rng): Tensor {
  const init = node.attrs.init as InitSpec;
  const { dtype, shape } = node.type;
  const name = String(node.attrs.name);
  const t = tensor(dtype, shape);
  const d = t.data;
  const r = rng.fork(name);
  switch (init.kind) {
    case 'zeros':
      break;
    case 'ones':
      d.fill(1);
      break;
    case 'normal':
      for (let i = 0; i < d.length; i++) d[i] = r.normal(init.mean ?? 0, init.std);
      break;
    case 'uniform':
      for (let i = 0; i < d.length; i++) d[i] = r.uniform(init.low, init.high);
      break;
    case 'kaiming_uniform': {
      // torch.nn.init.kaiming_uniform_(w, a): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
      const fanIn = shape.length >= 2 ? numel(shape.slice(1)) : shape[0];
      const bound = Math.sqrt(2 / (1 + init.a * init.a)) * Math.sqrt(3 / fanIn);
      for (let i = 0; i < d.length; i++) d[i] = r.uniform(-bound, bound);
      break;
    }
    case 'given':
      throw new Error(
        `parameter '${name}' ${formatShape(shape)} must come from the weight store (checkpoint or adapter) but is missing`,
      );
  }
  return t;
}

/**
 * A store holding every param of `g`: taken from `given` when present (checked for shape),
 * otherwise created from the param's init spec with a seeded generator.
 */
export function bindParams(g: Graph, given: WeightStore, seed = 0): MapWeightStore {
  const rng = new Rng(seed);
  const out = new MapWeightStore();
  for (const n of g.params()) {
    const name = String(n.attrs.name);
    const t = given.get(name);
    if (t) {
      if (!sameShape(t.shape, n.type.shape)) {
        throw new Error(
          `weight '${name}' has shape ${formatShape(t.shape)} but the graph expects ${formatShape(n.type.shape)}`,
        );
      }
      out.set(name, t);
    } else out.set(name, initTensor(n, rng));
  }
  return out;
}
