// The adapter structure of MaLoRA's head-split branches (methods/adapters/sites.ts). A
// branch is LoRA's with one factor masked (inject.ts):
//   add(base, scale(linear(linear(dropout?(x), A'), B')))   A' = A or mul(A, MA), B' = B or mul(B, MB)
// at least one of them masked (an unmasked branch is LoRA's, lora/branch.ts, whose
// structure never claims this one: its B must feed the outer linear directly). The masks
// are constant subgraphs (equal(const, const), or one const once folded); fold evaluates
// them with the CPU interpreter and folds s (B * MB)(A * MA) into W.
import { runGraph } from '../../backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { MapWeightStore } from '../../ir/weights.ts';
import {
  type AdapterSite,
  type AdapterStructure,
  type Reader,
  type SiteMatch,
  twoFactorBranch,
} from '../adapters/sites.ts';
import { loraParamNames } from '../lora/branch.ts';
import { MethodError } from '../registry.ts';

export interface MaskedLoraData {
  readonly A: Node;
  readonly B: Node;
  /** The mask nodes of A and B (undefined: that factor is not masked). */
  readonly maskA?: Node;
  readonly maskB?: Node;
  readonly scale: number;
  /** The graph the site is in (fold evaluates the masks there). */
  readonly graph: Graph;
}

const B_NAME = /^(.*)\.lora_B\.([A-Za-z0-9_-]+)\.weight$/;
const MASK_OPS = new Set(['equal', 'const']);

/** A param `name`, or mul(param `name`, mask) in either order: [param, mask?]. */
function maskedFactor(
  g: Graph,
  n: Node,
  isName: (name: string) => boolean,
): [Node, Node | undefined] | undefined {
  if (n.op === 'param') return isName(String(n.attrs.name)) ? [n, undefined] : undefined;
  if (n.op !== 'mul' || n.inputs.length !== 2) return undefined;
  const [a, b] = n.inputs.map((id) => g.node(id));
  for (const [p, m] of [
    [a, b],
    [b, a],
  ])
    if (p.op === 'param' && isName(String(p.attrs.name)) && MASK_OPS.has(m.op) && sameShape(p, m))
      return [p, m];
  return undefined;
}

function sameShape(a: Node, b: Node): boolean {
  const [x, y] = [a.type.shape, b.type.shape];
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

function at(g: Graph, n: Node): SiteMatch | undefined {
  const br = twoFactorBranch(g, n);
  if (!br) return undefined;
  const { scale } = br;
  let module = '';
  let adapter = '';
  const b = maskedFactor(g, br.b, (name) => {
    const m = B_NAME.exec(name);
    if (m) [, module, adapter] = m;
    return !!m;
  });
  if (!b) return undefined;
  const names = loraParamNames(module, adapter, 'linear');
  const a = maskedFactor(g, br.a, (name) => name === names.A);
  if (!a || (!a[1] && !b[1])) return undefined;
  const data: MaskedLoraData = { A: a[0], B: b[0], maskA: a[1], maskB: b[1], scale, graph: g };
  return {
    module,
    adapter,
    kind: 'linear',
    below: br.below,
    params: [names.A, names.B],
    data,
  };
}

const evaluated = new WeakMap<Graph, Map<number, Tensor>>();

/** The value of a constant subgraph (a mask), by the CPU interpreter; cached per graph. */
export function constantValue(g: Graph, n: Node): Tensor {
  let cache = evaluated.get(g);
  if (!cache) evaluated.set(g, (cache = new Map()));
  const hit = cache.get(n.id);
  if (hit) return hit;
  const b = new GraphBuilder();
  const copied = new Map<number, Value>();
  const copy = (x: Node): Value => {
    const done = copied.get(x.id);
    if (done) return done;
    if (x.op === 'param' || x.op === 'input')
      throw new MethodError(
        `malora: the mask at node %${n.id} (${n.scope}) depends on the ${x.op} ${String(x.attrs.name)}; masks are constants`,
      );
    const v = b.copy(
      x,
      x.inputs.map((id) => copy(g.node(id))),
    );
    copied.set(x.id, v);
    return v;
  };
  const t = runGraph(b.build({ out: copy(n) }), {}, new MapWeightStore(), { precision: 'f64' }).out;
  cache.set(n.id, t);
  return t;
}

/** A factor's tensor with its mask applied (f64). */
function masked(g: Graph, param: Node, mask: Node | undefined, read: Reader): Float64Array {
  const t = read(String(param.attrs.name));
  const out = Float64Array.from(t.data);
  if (!mask) return out;
  const m = constantValue(g, mask).data;
  // A masked entry is +0 exactly (x * 0 would give -0 for a negative x).
  for (let i = 0; i < out.length; i++) if (m[i] === 0) out[i] = 0;
  return out;
}

/** The masked A [r, in] and B [out, r] of a site of this structure, in f64. */
export function maskedFactors(site: AdapterSite, read: Reader): { A: Float64Array; B: Float64Array } {
  const d = site.data as MaskedLoraData;
  return { A: masked(d.graph, d.A, d.maskA, read), B: masked(d.graph, d.B, d.maskB, read) };
}

function addDelta(site: AdapterSite, W: Float64Array, read: Reader, k: number): void {
  const d = site.data as MaskedLoraData;
  const { A, B } = maskedFactors(site, read);
  const [r, inF] = d.A.type.shape;
  const outF = d.B.type.shape[0];
  for (let o = 0; o < outF; o++)
    for (let j = 0; j < r; j++) {
      const bv = B[o * r + j];
      if (bv === 0) continue;
      for (let i = 0; i < inF; i++) W[o * inF + i] += k * bv * A[j * inF + i];
    }
}

export const maloraHeadStructure: AdapterStructure = {
  name: 'malora-head',
  at,
  fold: (site, W, read) => {
    addDelta(site, W, read, (site.data as MaskedLoraData).scale);
    return undefined;
  },
  unfold: (site, W, read) => addDelta(site, W, read, -(site.data as MaskedLoraData).scale),
};
