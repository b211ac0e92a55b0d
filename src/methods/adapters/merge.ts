// Merge and unmerge for any registered adapter structure (sites.ts): each adapter's own
// fold / unfold changes its module's weight in f64 (stored as the weight's dtype); merge
// then replaces the adapter's output by the output below it. Adapters on one weight fold
// in graph order (a stack bottom-up), as PEFT merges active adapters in order. The weights
// come back as a store layered over the old one, which keeps the adapter's tensors
// (unmerge needs them). 4-bit bases merge through qlora-merge, which uses the same folds.
import type { Graph, Node } from '../../ir/graph.ts';
import { tensor } from '../../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';
import { MethodError } from '../registry.ts';
import { type AdapterSite, baseWeightNode, checkAdapters, type Reader } from './sites.ts';

export function storeReader(w: WeightStore | undefined, what: string): Reader {
  return (name) => {
    const t = w?.get(name);
    if (!t)
      throw new MethodError(
        `${what} needs the weight '${name}', which is not in the weight store (bind the model's params first)`,
      );
    return t;
  };
}

/** The sites of the named adapters (default: all), every adapter param recognised; missing names are an error. */
export function selectSites(g: Graph, adapters: readonly string[] | undefined, what: string): AdapterSite[] {
  const sites = checkAdapters(g, what).filter((s) => !adapters || adapters.includes(s.adapter));
  if (adapters) {
    const present = new Set(sites.map((s) => s.adapter));
    const missing = adapters.filter((a) => !present.has(a));
    if (missing.length)
      throw new MethodError(
        `${what}: no adapter named ${missing.map((a) => `'${a}'`).join(', ')} in the graph`,
      );
  }
  return sites;
}

/** The graph with each site's output replaced by the output below it (the adapters gone). */
export function removeSites(g: Graph, sites: readonly AdapterSite[], rule: string): Graph {
  const below = new Map(sites.map((s) => [s.out.id, s.below]));
  let out = rewrite(g, [[{ where: (n) => below.has(n.id) }, (m) => m.value(below.get(m.node.id)!), rule]], {
    once: true,
  }).graph;
  for (const structure of new Set(sites.map((s) => s.structure)))
    if (structure.release)
      out = structure.release(
        out,
        sites.filter((s) => s.structure === structure),
      );
  return out;
}

function weightParam(g: Graph, site: AdapterSite, what: string): Node {
  const w = baseWeightNode(g, site);
  if (w.op !== 'param')
    throw new MethodError(
      `${what}: cannot merge adapter '${site.adapter}' into ${site.module}: its weight is a ${w.op}, not a param (a 4-bit base merges with qlora-merge)`,
    );
  return w;
}

/** Folds (sign 1) or unfolds (-1) the sites into their weights: the changed tensors. */
export function foldSites(
  g: Graph,
  sites: readonly AdapterSite[],
  weights: WeightStore | undefined,
  sign: 1 | -1,
  what: string,
): MapWeightStore {
  const changed = new MapWeightStore();
  const read = storeReader(new LayeredWeightStore([changed, ...(weights ? [weights] : [])]), what);
  const order = sign === 1 ? sites : [...sites].reverse();
  for (const site of order) {
    const name = String(weightParam(g, site, what).attrs.name);
    const old = read(name);
    const W = Float64Array.from(old.data);
    if (sign === 1) {
      const extras = site.structure.fold(site, W, read);
      for (const [k, t] of extras ?? []) changed.set(k, t);
    } else site.structure.unfold(site, W, read);
    changed.set(name, tensor(old.dtype, old.shape, W));
  }
  return changed;
}

/** Merges the given adapters (default: every adapter in the graph), in graph order. */
export function mergeAdapters(
  g: Graph,
  weights: WeightStore | undefined,
  adapters?: readonly string[],
  what = 'merge',
): PassResult & { merged: string[] } {
  const sites = selectSites(g, adapters, what);
  const changed = foldSites(g, sites, weights, 1, what);
  const merged = [...new Set(sites.map((s) => String(baseWeightNode(g, s).attrs.name)))];
  return {
    graph: removeSites(g, sites, `${what}-adapter`),
    weights: weights ? new LayeredWeightStore([changed, weights]) : undefined,
    merged,
  };
}
