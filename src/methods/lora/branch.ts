// LoRA's adapter structure (methods/adapters/sites.ts). A branch is what inject.ts builds:
//   add(base, scale(linear(linear(dropout?(x), A), B)))         (linear modules)
//   add(base, scale(linear(embedding(transpose(A), ids), B)))   (embedding modules)
// identified by B's param name `<module>.lora_B.<adapter>.weight` (or
// `<module>.lora_embedding_B.<adapter>`). The scale may be gone (s = 1 after
// canonicalize). `base` may itself be another adapter's output: adapters stack.
import type { Graph, Node } from '../../ir/graph.ts';
import type { AdapterSite, AdapterStructure, Reader, SiteMatch } from '../adapters/sites.ts';

/** What LoRA's fold needs from a branch. */
export interface LoraData {
  readonly A: Node;
  readonly B: Node;
  readonly scale: number;
}

const B_NAME = /^(.*)\.lora_(embedding_)?B\.([A-Za-z0-9_-]+)(\.weight)?$/;

export function loraParamNames(module: string, adapter: string, kind: 'linear' | 'embedding') {
  return kind === 'linear'
    ? { A: `${module}.lora_A.${adapter}.weight`, B: `${module}.lora_B.${adapter}.weight` }
    : { A: `${module}.lora_embedding_A.${adapter}`, B: `${module}.lora_embedding_B.${adapter}` };
}

/**
 * The low-rank product `s * B(A(x))` whose scale (or, with s = 1, its linear) is `y`:
 * module, adapter, kind, A, B and s, or undefined. DoRA's structure reuses it.
 */
export function lowRankAt(
  g: Graph,
  y: Node,
): { module: string; adapter: string; kind: 'linear' | 'embedding'; data: LoraData } | undefined {
  let scale = 1;
  if (y.op === 'scale') {
    scale = Number(y.attrs.factor);
    y = g.node(y.inputs[0]);
  }
  if (y.op !== 'linear' || y.inputs.length !== 2) return undefined;
  const B = g.node(y.inputs[1]);
  const m = B.op === 'param' ? B_NAME.exec(String(B.attrs.name)) : null;
  if (!m) return undefined;
  const [, module, emb, adapter] = m;
  const h = g.node(y.inputs[0]);
  let A: Node | undefined;
  if (!emb && h.op === 'linear') A = g.node(h.inputs[1]);
  if (emb && h.op === 'embedding') {
    const t = g.node(h.inputs[0]);
    if (t.op === 'transpose') A = g.node(t.inputs[0]);
  }
  const kind = emb ? 'embedding' : 'linear';
  if (A?.op !== 'param' || A.attrs.name !== loraParamNames(module, adapter, kind).A) return undefined;
  return { module, adapter, kind, data: { A, B, scale } };
}

const paramNameSets = new WeakMap<Graph, Set<string>>();

/** The graph's param names (cached per graph: graphs are immutable values). */
export function paramNameSet(g: Graph): Set<string> {
  let s = paramNameSets.get(g);
  if (!s) paramNameSets.set(g, (s = new Set(g.params().map((p) => String(p.attrs.name)))));
  return s;
}

function at(g: Graph, n: Node): SiteMatch | undefined {
  if (n.op !== 'add' || n.inputs.length !== 2) return undefined;
  const lr = lowRankAt(g, g.node(n.inputs[1]));
  if (!lr) return undefined;
  // A branch with a magnitude vector is DoRA's (lora/dora.ts), whose structure contains this shape.
  if (paramNameSet(g).has(`${lr.module}.lora_magnitude_vector.${lr.adapter}.weight`)) return undefined;
  const { A, B } = lr.data;
  return { ...lr, below: g.node(n.inputs[0]), params: [String(A.attrs.name), String(B.attrs.name)] };
}

/**
 * W += k * delta with delta = B A (linear, W [out, in]) or (B A)^T (embedding, W [vocab,
 * dim]), in f64. DoRA's fold uses it too.
 */
export function addLowRank(site: AdapterSite, W: Float64Array, read: Reader, k: number): void {
  const { A: An, B: Bn } = site.data as LoraData;
  const A = read(String(An.attrs.name));
  const B = read(String(Bn.attrs.name));
  const [r, aCols] = A.shape;
  const outF = B.shape[0];
  const cols = site.kind === 'linear' ? aCols : outF;
  // linear: W[o, i] += k * sum_j B[o, j] A[j, i]; embedding: T[v, d] += k * sum_j B[d, j] A[j, v].
  for (let o = 0; o < outF; o++)
    for (let i = 0; i < aCols; i++) {
      let acc = 0;
      for (let j = 0; j < r; j++) acc += B.data[o * r + j] * A.data[j * aCols + i];
      const at = site.kind === 'linear' ? o * cols + i : i * cols + o;
      W[at] += k * acc;
    }
}

export const loraStructure: AdapterStructure = {
  name: 'lora',
  at,
  fold: (site, W, read) => {
    addLowRank(site, W, read, (site.data as LoraData).scale);
    return undefined;
  },
  unfold: (site, W, read) => addLowRank(site, W, read, -(site.data as LoraData).scale),
};
